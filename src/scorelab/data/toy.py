"""Toy data sets by name.

Each generator takes ``(n, generator)`` and returns a float32 tensor [n, d].
Randomness comes from the ``torch.Generator`` only, so a seed fixes the data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from sklearn.datasets import make_swiss_roll
from torch import Tensor

ToyGenerator = Callable[[int, torch.Generator | None], Tensor]
DATASETS: dict[str, ToyGenerator] = {}


def register(name: str) -> Callable[[ToyGenerator], ToyGenerator]:
    """Add a generator to :data:`DATASETS` under ``name``."""

    def add(fn: ToyGenerator) -> ToyGenerator:
        DATASETS[name] = fn
        return fn

    return add


def numpy_seed(generator: torch.Generator | None) -> int:
    """An integer seed for numpy/scikit-learn, drawn from a torch generator."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


@register("swiss_roll")
def swiss_roll(n: int, generator: torch.Generator | None = None) -> Tensor:
    """The seed tutorial's swiss roll: ``make_swiss_roll(n, noise=1.0)``, columns [0, 2], / 10."""
    points, _ = make_swiss_roll(n, noise=1.0, random_state=numpy_seed(generator))
    return torch.from_numpy(points[:, [0, 2]] / 10.0).float()
