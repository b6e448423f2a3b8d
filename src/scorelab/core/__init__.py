"""The core: errors, the score callable, shapes, random numbers, registries, atomic files, noise grids and processes."""
