"""What the figures of every modality share: writing a figure, and recording a sampler's path."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt  # scorelab/plots/__init__.py, which runs first, has chosen the Agg backend
import torch
from torch import Tensor

from scorelab.core.atomic import write_atomic
from scorelab.runs.trained import TrainedRun
from scorelab.sampling import StepInfo


def save_figure(figure: plt.Figure, path: str | Path) -> Path:
    """Render ``figure`` as PNG and write it atomically to ``path``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    write_atomic(path, buffer.getvalue())
    return Path(path)


def record_trajectories(run: TrainedRun, n: int, generator: torch.Generator | None = None,
                        sampler: str | None = None) -> tuple[Tensor, list[float]]:
    """Sample ``n`` points and return every sampler state and the σ of each step.

    Returns the states [steps + 1, n, D] in data coordinates (the last is the
    returned sample) and one σ per state.
    """
    states: list[Tensor] = []
    sigmas: list[float] = []

    def record(info: StepInfo) -> None:
        states.append(run.normalisation.to_data(info.x.cpu()))
        sigmas.append(info.sigma)

    final = run.sample(n, sampler=sampler, generator=generator, callback=record)
    return torch.stack([*states[:-1], final]), sigmas
