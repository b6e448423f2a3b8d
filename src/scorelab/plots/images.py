"""Figures of an image run: sample grids, sampler trajectories as strips, nearest training neighbours,
and the classifier's label histogram of the samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from scorelab.evaluation.images import classifier_of, image_set_of
from scorelab.metrics.features import nearest_distances
from scorelab.plots.common import record_trajectories, save_figure
from scorelab.runs.sample_io import image_grid
from scorelab.runs.trained import TrainedRun

IMAGE_FIGURES = ("data", "samples", "trajectories", "neighbours", "classes")


def show_grid(axes: plt.Axes, images: Tensor, value_range: tuple[float, float], columns: int | None = None) -> None:
    grid = image_grid(images, *value_range, columns=columns)
    axes.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255,
                interpolation="nearest")
    axes.set_axis_off()


def plot_image_grid(images: Tensor, value_range: tuple[float, float], path: str | Path, title: str) -> Path:
    """Up to 100 images [n, C, H, W] in a 10-column grid."""
    figure, axes = plt.subplots(figsize=(6, 6.3))
    show_grid(axes, images[:100], value_range, columns=10)
    axes.set_title(title)
    return save_figure(figure, path)


def plot_image_trajectories(run: TrainedRun, path: str | Path, n: int = 6, frames: int = 10,
                            generator: torch.Generator | None = None) -> Path:
    """One strip per image: the sampler's state at ``frames`` evenly spaced steps, noise to sample.

    A state at noise level σ is shown divided by √(1 + σ²), which brings the VE state x + σz and the
    VP chain's y = x_t/√ᾱ_t alike back to the scale of an image.
    """
    states, sigmas = record_trajectories(run, n, generator)
    picks = torch.linspace(0, len(states) - 1, frames).round().long()
    shift = run.normalisation.shift.flatten()[0]
    shown = torch.stack([(states[i] - shift) / (1 + sigmas[i] ** 2) ** 0.5 + shift for i in picks.tolist()])
    strips = shown.transpose(0, 1).reshape(n * frames, *states.shape[2:])  # image by image, frame by frame
    figure, axes = plt.subplots(figsize=(frames * 0.7, n * 0.75))
    show_grid(axes, strips, run.value_range, columns=frames)
    axes.set_title(f"{run.config.sampler.name}: σ = {sigmas[picks[0]]:.3g} → {sigmas[picks[-2]]:.3g} → sample",
                   fontsize=9)
    return save_figure(figure, path)


def plot_neighbours(samples: Tensor, train: Tensor, value_range: tuple[float, float], path: str | Path,
                    n: int = 8) -> Path:
    """The first ``n`` samples (top) above their nearest training images in pixels (bottom)."""
    shown = samples[:n]
    distance = torch.cdist(shown.flatten(1).double(), train.flatten(1).double())
    nearest = train[distance.argmin(1)]
    figure, axes = plt.subplots(figsize=(n * 0.8, 2.0))
    show_grid(axes, torch.cat([shown, nearest]), value_range, columns=n)
    gaps = nearest_distances(shown.flatten(1), train.flatten(1))
    axes.set_title("samples (top) and their nearest training images; distances "
                   + ", ".join(f"{float(g):.0f}" for g in gaps), fontsize=8)
    return save_figure(figure, path)


def plot_class_histogram(fractions: Sequence[float], path: str | Path, title: str) -> Path:
    """The share of samples the classifier puts in each class, beside the uniform 1/K."""
    figure, axes = plt.subplots(figsize=(5, 3))
    axes.bar(range(len(fractions)), fractions, color="tab:blue")
    axes.axhline(1 / len(fractions), color="black", linewidth=0.8, linestyle="--", label="uniform")
    axes.set_xticks(range(len(fractions)))
    axes.set_xlabel("class (by the trained classifier)")
    axes.set_ylabel("share of samples")
    axes.legend()
    axes.set_title(title)
    return save_figure(figure, path)


def plot_image_run(run: TrainedRun, out_dir: Path, figures: Sequence[str] = IMAGE_FIGURES, seed: int = 0,
                   n: int = 1000) -> list[Path]:
    """Write the ``figures`` named (see :data:`IMAGE_FIGURES`) for an image run into ``out_dir``;
    ``classes`` needs a labelled data set and is skipped for others."""
    image_set = image_set_of(run)
    generator = torch.Generator().manual_seed(seed)
    sampler = run.config.sampler.name
    samples = run.sample(n, generator=generator) if {"samples", "neighbours", "classes"} & set(figures) else None

    def classes() -> Path:
        classifier = classifier_of(run)
        with torch.no_grad():
            labels = classifier(run.normalisation.to_model(samples)).argmax(1)
        counts = torch.bincount(labels, minlength=int(image_set.train_labels.max()) + 1)
        return plot_class_histogram((counts / counts.sum()).tolist(), out_dir / "classes.png",
                                    f"classes of {n} {sampler} samples")

    draw = {
        "data": lambda: plot_image_grid(image_set.train, run.value_range, out_dir / "data.png",
                                        f"{run.config.data.name}: training images"),
        "samples": lambda: plot_image_grid(samples, run.value_range, out_dir / "samples.png", f"{sampler} samples"),
        "trajectories": lambda: plot_image_trajectories(run, out_dir / "trajectories.png", generator=generator),
        "neighbours": lambda: plot_neighbours(samples, image_set.train, run.value_range, out_dir / "neighbours.png"),
        "classes": classes,
    }
    return [draw[name]() for name in figures if name != "classes" or image_set.labelled]
