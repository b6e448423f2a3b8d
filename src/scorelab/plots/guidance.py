"""Figures of guided sampling: a class-conditional image run's classes, one row each, at several guidance weights,
and 2-D samples of each class beside that class's data under several guidance settings."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from torch import Tensor

from scorelab.plots.common import save_figure
from scorelab.plots.images import show_grid

CLASS_COLOURS = plt.get_cmap("tab10")


def plot_class_rows(panels: dict[str, Tensor], value_range: tuple[float, float], path: str | Path,
                    columns: int) -> Path:
    """One panel per title in ``panels``: images [classes·columns, C, H, W], a row of ``columns`` per class."""
    figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for axis, (title, images) in zip(axes[0], panels.items()):
        show_grid(axis, images, value_range, columns=columns)
        axis.set_title(title, fontsize=10)
    return save_figure(figure, path)


def plot_class_points(data: tuple[Tensor, Tensor], panels: dict[str, tuple[Tensor, Tensor]],
                      path: str | Path) -> Path:
    """The labelled data (x [n, 2], labels [n]) and, beside it, one panel of labelled samples per title, each
    class in its own colour."""
    everything = {"data": data, **panels}
    figure, axes = plt.subplots(1, len(everything), figsize=(3.0 * len(everything), 3.2), squeeze=False,
                                sharex=True, sharey=True)
    for axis, (title, (x, labels)) in zip(axes[0], everything.items()):
        axis.scatter(x[:, 0], x[:, 1], c=[CLASS_COLOURS(int(label) % 10) for label in labels], s=1.5, alpha=0.5,
                     linewidths=0)
        axis.set_title(title, fontsize=9)
        axis.set_aspect("equal")
        axis.set_xticks([])
        axis.set_yticks([])
    return save_figure(figure, path)
