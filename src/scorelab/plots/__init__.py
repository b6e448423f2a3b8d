"""Figures: data, learned score fields, samples and sampler trajectories (images: :mod:`scorelab.plots.images`;
waveforms: :mod:`scorelab.plots.audio`).

The only module that imports matplotlib, so ``import scorelab`` stays light.
Every figure is rendered to memory first and then written atomically, so a
failed plot never leaves a half-written file over a good one.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from torch import Tensor  # noqa: E402

from scorelab.core.atomic import write_atomic  # noqa: E402
from scorelab.core.errors import ConfigError, require_positive_int  # noqa: E402
from scorelab.models import EnergyScore  # noqa: E402
from scorelab.plots.audio import AUDIO_FIGURES, plot_audio_run  # noqa: E402
from scorelab.plots.common import record_trajectories, save_figure  # noqa: E402
from scorelab.plots.images import IMAGE_FIGURES, plot_image_run  # noqa: E402
from scorelab.pretrained import require_writable  # noqa: E402
from scorelab.runs.trained import TrainedRun  # noqa: E402
from scorelab.runs.training import training_data  # noqa: E402
from scorelab.sampling import SAMPLERS  # noqa: E402

Bounds = tuple[float, float, float, float]
POINT_STYLE = {"s": 2, "alpha": 0.4, "linewidths": 0}


def data_bounds(x: Tensor, margin: float = 0.15) -> Bounds:
    """The bounding box of the first two coordinates of ``x``, widened by ``margin`` of its size."""
    low, high = x[:, :2].min(0).values, x[:, :2].max(0).values
    pad = (high - low) * margin
    return (float(low[0] - pad[0]), float(high[0] + pad[0]), float(low[1] - pad[1]), float(high[1] + pad[1]))


def _lattice(bounds: Bounds, grid: int) -> tuple[Tensor, Tensor, Tensor]:
    """A ``grid``×``grid`` lattice over ``bounds``: its x and y meshes and its points as rows [grid², 2]."""
    mesh_x, mesh_y = torch.meshgrid(torch.linspace(bounds[0], bounds[1], grid),
                                    torch.linspace(bounds[2], bounds[3], grid), indexing="xy")
    return mesh_x, mesh_y, torch.stack([mesh_x.reshape(-1), mesh_y.reshape(-1)], dim=1)


def score_on_lattice(score: Callable[[Tensor], Tensor], bounds: Bounds, grid: int = 32) -> tuple[Tensor, Tensor]:
    """The lattice points [grid², 2] of ``bounds`` and the 2-D score at each of them."""
    _, _, points = _lattice(bounds, grid)
    with torch.no_grad():
        return points, score(points).cpu()


def draw_score_field(axes: plt.Axes, points: Tensor, field: Tensor, bounds: Bounds, grid: int,
                     magnitude: Normalize | None = None) -> ScalarMappable | None:
    """Quiver plot of a score on the lattice of :func:`score_on_lattice`: unit arrows for its direction,
    coloured by log₁₀ ‖s‖ on the scale ``magnitude`` (light grey without one); returns the arrows to give
    a colour bar.

    The magnitude spans orders of magnitude (near data at noise level σ the score grows as 1/σ²), so
    arrow lengths could show it only squashed (the seed drew log(1 + ‖s‖)); one colour scale shared by the
    panels of a figure shows it whole.
    """
    norm = field.norm(dim=1).clamp_min(1e-12)
    direction = field / norm[:, None]
    cell = (bounds[1] - bounds[0]) / (grid - 1)  # each arrow spans 0.8 of a grid cell
    style = {"width": 0.005, "angles": "xy", "scale_units": "xy", "scale": 1 / (0.8 * cell)}
    if magnitude is None:
        axes.quiver(points[:, 0], points[:, 1], direction[:, 0], direction[:, 1], color="0.75", **style)
        arrows = None
    else:
        arrows = axes.quiver(points[:, 0], points[:, 1], direction[:, 0], direction[:, 1], norm.log10(),
                             cmap="viridis", norm=magnitude, **style)
    axes.set_xlim(bounds[0], bounds[1])
    axes.set_ylim(bounds[2], bounds[3])
    axes.set_aspect("equal")
    return arrows


def draw_log_density(axes: plt.Axes, log_density: Callable[[Tensor], Tensor], bounds: Bounds,
                     grid: int = 100) -> None:
    """Filled contours of an unnormalised density exp(log_density), scaled to peak 1."""
    mesh_x, mesh_y, points = _lattice(bounds, grid)
    with torch.no_grad():
        values = log_density(points).cpu().reshape(grid, grid)
    axes.contourf(mesh_x, mesh_y, (values - values.max()).exp(), levels=12, cmap="Greens", zorder=0)


def _panels(n: int, size: float = 4.0, columns: int = 5) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure with ``n`` square panels, at most ``columns`` per row."""
    rows, width = -(-n // columns), min(n, columns)
    figure, axes = plt.subplots(rows, width, figsize=(size * width, size * rows), squeeze=False)
    for spare in axes.flat[n:]:
        spare.set_visible(False)
    return figure, list(axes.flat[:n])


def plot_training_curve(steps: Sequence[int], losses: Sequence[float], path: str | Path) -> Path:
    """The logged training loss against the step (on a log scale where it is positive and spans a decade)."""
    figure, axes = plt.subplots(figsize=(7.0, 3.5))
    axes.plot(steps, losses, color="tab:blue", linewidth=1.2)
    if min(losses) > 0 and max(losses) > 10 * min(losses):
        axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("loss (mean over each logged interval)")
    axes.grid(alpha=0.3)
    return save_figure(figure, path)


def plot_data(x: Tensor, path: str | Path, title: str = "data") -> Path:
    """Scatter plot of the first two coordinates of ``x``."""
    figure, (axes,) = _panels(1)
    axes.scatter(x[:, 0], x[:, 1], color="tab:gray", **POINT_STYLE)
    axes.set_title(f"{title} (n = {len(x)})")
    axes.set_aspect("equal")
    return save_figure(figure, path)


def plot_score_fields(run: TrainedRun, x: Tensor, path: str | Path, max_panels: int = 10) -> Path:
    """The learned score at every training noise level (up to ``max_panels``), one σ per panel.

    (The seed drew a random level for every grid point, so each arrow belonged
    to a different σ; here every panel holds a single σ.)
    """
    sigmas = run.sigmas.tolist()
    conditional = run.noise_conditional
    if not conditional:
        sigmas = sigmas[-1:]
    picks = sorted({round(i * (len(sigmas) - 1) / max(max_panels - 1, 1)) for i in range(max_panels)})
    bounds = data_bounds(x)
    energy = isinstance(run.model, EnergyScore)  # an energy model also has a density to show
    fields = [score_on_lattice(lambda p, s=sigmas[index]: run.score(p.to(run.device), torch.full((len(p),), s)),
                               bounds, grid=20) for index in picks]
    magnitudes = torch.cat([field.norm(dim=1) for _, field in fields]).clamp_min(1e-12).log10()
    shared = Normalize(magnitudes.min().item(), magnitudes.max().item())  # one scale: the growth as σ falls shows
    figure, axes_list = _panels(len(picks), size=3.2)
    for axes, index, (points, field) in zip(axes_list, picks, fields):
        sigma = sigmas[index]
        if energy:
            draw_log_density(axes, lambda p: run.model.log_density(run.normalisation.to_model(p).to(run.device)),
                             bounds)
        arrows = draw_score_field(axes, points, field, bounds, grid=20, magnitude=shared)
        axes.scatter(x[:2000, 0], x[:2000, 1], color="tab:gray", **POINT_STYLE)
        axes.set_title(f"learned score, σ = {sigma:.3g}" if conditional else
                       "learned score and density exp(−E)" if energy else "learned score", fontsize=10)
    figure.colorbar(arrows, ax=axes_list, shrink=0.8, label="log₁₀ ‖s‖ (arrows: the score's direction)")
    return save_figure(figure, path)


def plot_samples(x: Tensor, samples: Tensor, path: str | Path, title: str = "samples") -> Path:
    """Data (left) and model samples (right) on the same axes limits."""
    bounds = data_bounds(torch.cat([x, samples]))
    figure, (left, right) = _panels(2)
    for axes, points, name, color in ((left, x, "data", "tab:gray"), (right, samples, title, "tab:red")):
        axes.scatter(points[:, 0], points[:, 1], color=color, **POINT_STYLE)
        axes.set_xlim(bounds[0], bounds[1])
        axes.set_ylim(bounds[2], bounds[3])
        axes.set_aspect("equal")
        axes.set_title(f"{name} (n = {len(points)})")
    return save_figure(figure, path)


def plot_suite_grid(panels: list[tuple[str, Tensor, Tensor]], path: str | Path, columns: int = 5) -> Path:
    """One panel per data set: data (grey) under model samples (red), on the data's bounds.

    ``panels`` holds (title, data, samples) triples; the grid has ``columns`` panels per row.
    """
    figure, axes_list = _panels(len(panels), size=3.2, columns=columns)
    for axes, (title, x, samples) in zip(axes_list, panels):
        bounds = data_bounds(x)
        axes.scatter(x[:, 0], x[:, 1], color="tab:gray", **POINT_STYLE)
        axes.scatter(samples[:, 0], samples[:, 1], color="tab:red", **POINT_STYLE)
        axes.set_xlim(bounds[0], bounds[1])
        axes.set_ylim(bounds[2], bounds[3])
        axes.set_aspect("equal")
        axes.set_xticks([])
        axes.set_yticks([])
        axes.set_title(title, fontsize=9)
    return save_figure(figure, path)


def plot_trajectories(run: TrainedRun, x: Tensor, path: str | Path, n: int = 8,
                      generator: torch.Generator | None = None, points_per_path: int = 40) -> Path:
    """Sampler paths of a few points, one state per noise level, over the score field at the smallest σ."""
    states, sigmas = record_trajectories(run, n, generator)
    # One state per noise level (its last), thinned to about points_per_path, so the drift
    # from noise to data shows through the Langevin jitter.
    level_ends = [i for i in range(len(sigmas)) if i + 1 == len(sigmas) or sigmas[i + 1] != sigmas[i]]
    stride = max(1, len(level_ends) // points_per_path)
    paths = states[[*level_ends[::stride], len(states) - 1]]
    # The data's box, not the paths': ODE starts sit at σ_max (hundreds for a DDPM chain).
    bounds = data_bounds(x, margin=0.5)
    path_sigmas = torch.tensor([sigmas[i] for i in [*level_ends[::stride], len(states) - 1]])
    figure, (axes,) = _panels(1, size=7.0)
    sigma_min = run.sigmas[-1].item()
    points, field = score_on_lattice(lambda p: run.score(p.to(run.device), torch.full((len(p),), sigma_min)),
                                     bounds, grid=24)
    draw_score_field(axes, points, field, bounds, grid=24)
    axes.scatter(x[:2000, 0], x[:2000, 1], color="tab:gray", **POINT_STYLE)
    # Each segment coloured by the noise level of its start, so the eye follows a path from noise to data.
    levels = path_sigmas.clamp_min(1e-12).log10()[:-1]
    segments = torch.stack([paths[:-1], paths[1:]], dim=2).transpose(0, 1).reshape(-1, 2, 2)  # [n·steps, 2, 2]
    lines = LineCollection(segments.numpy(), array=levels.repeat(n).numpy(), cmap="plasma", linewidths=1.0)
    axes.add_collection(lines)
    figure.colorbar(lines, ax=axes, shrink=0.6, label="log₁₀ σ of the sampler's step")
    axes.scatter(paths[0, :, 0], paths[0, :, 1], color="black", s=10, label="start, drawn from the prior")
    axes.scatter(paths[-1, :, 0], paths[-1, :, 1], color="tab:red", s=14, label="end: a sample")
    axes.legend(loc="upper left", bbox_to_anchor=(0.0, -0.06), ncol=2, frameon=False, fontsize=8)
    sampler = run.config.sampler.name
    axes.set_title(f"{n} paths from noise to data through the {sampler} sampler\n({SAMPLERS[sampler].help});\n"
                   f"grey arrows: the learned score's direction at the smallest level, σ = {sigma_min:.3g}",
                   fontsize=9)
    return save_figure(figure, path)


def animate_sampler(run: TrainedRun, x: Tensor, path: str | Path, n: int = 1000,
                    generator: torch.Generator | None = None, frames_per_level: int = 3,
                    fps: int = 6, sampler: str | None = None, max_levels: int = 40) -> Path:
    """A GIF of the run's sampler carrying ``n`` points from noise to the data, level by level.

    Each noise level contributes ``frames_per_level`` frames, evenly spaced and ending
    on its last step (the final frame is the denoised samples), drawn over the data in
    grey with σ in the title. Samplers with hundreds of levels (pc, ddpm) show
    ``max_levels`` of them, evenly spaced. Written with matplotlib's PillowWriter:
    no external binary.
    """
    require_positive_int("frames_per_level", frames_per_level)
    require_positive_int("fps", fps)
    states, step_sigmas = record_trajectories(run, n, generator, sampler)
    levels: dict[float, list[Tensor]] = {}
    for sigma, state in zip(step_sigmas, states):
        levels.setdefault(sigma, []).append(state)
    shown = list(levels)[:: max(1, -(-len(levels) // max_levels))]
    if shown[-1] != list(levels)[-1]:
        shown.append(list(levels)[-1])
    frames = [(sigma, levels[sigma][len(levels[sigma]) * (k + 1) // frames_per_level - 1])
              for sigma in shown for k in range(frames_per_level)]
    bounds = data_bounds(x, margin=0.5)
    figure, (axes,) = _panels(1, size=5.0)
    axes.scatter(x[:2000, 0], x[:2000, 1], color="tab:gray", **POINT_STYLE)
    cloud = axes.scatter(frames[0][1][:, 0], frames[0][1][:, 1], color="tab:red", s=3, linewidths=0)
    axes.set_xlim(bounds[0], bounds[1])
    axes.set_ylim(bounds[2], bounds[3])
    axes.set_aspect("equal")
    level_index = {sigma: i for i, sigma in enumerate(levels)}
    title = sampler or run.config.sampler.name

    def show(frame: int) -> None:
        sigma, points = frames[frame]
        cloud.set_offsets(points[:, :2].numpy())
        axes.set_title(f"{title}: level {level_index[sigma] + 1}/{len(levels)}, σ = {sigma:.3g}")

    animation = FuncAnimation(figure, show, frames=len(frames))
    with tempfile.TemporaryDirectory() as scratch:
        gif = Path(scratch) / "animation.gif"
        animation.save(gif, writer=PillowWriter(fps=fps), dpi=80)
        plt.close(figure)
        write_atomic(path, gif.read_bytes())
    return Path(path)


FIGURES = ("data", "score_field", "samples", "trajectories", "animation")
STANDARD_FIGURES = FIGURES[:4]


def plot_run(run: TrainedRun, out_dir: Path, figures: Sequence[str] = STANDARD_FIGURES, seed: int = 0,
             samples: Tensor | None = None) -> list[Path]:
    """Write the ``figures`` named (see :data:`FIGURES`) for ``run`` into ``out_dir``; the animation is
    named after the run's sampler (``ald.gif``). ``samples``, if given, are the run's samples drawn
    already (``run.sample(5000, generator=torch.Generator().manual_seed(seed))`` draws the same).

    An image run draws :data:`scorelab.plots.images.IMAGE_FIGURES` instead of the standard figures, and a
    waveform run :data:`scorelab.plots.audio.AUDIO_FIGURES` (:data:`RUN_FIGURES`, by the run's modality)."""
    require_writable(out_dir, "drawn into")
    return RUN_FIGURES[run.modality.name](run, out_dir, tuple(figures), seed, samples)


def _plot_waveform_run(run: TrainedRun, out_dir: Path, figures: tuple[str, ...], seed: int,
                       samples: Tensor | None) -> list[Path]:
    if figures != STANDARD_FIGURES:
        raise ConfigError(f"a waveform run draws {', '.join(AUDIO_FIGURES)}; trajectories and animations are "
                          "for points and images")
    return plot_audio_run(run, out_dir)


def _plot_image_run(run: TrainedRun, out_dir: Path, figures: tuple[str, ...], seed: int,
                    samples: Tensor | None) -> list[Path]:
    figures = IMAGE_FIGURES if figures == STANDARD_FIGURES else figures
    if "animation" in figures or "score_field" in figures:
        raise ConfigError("score fields and the animation draw 2-D points; an image run has "
                          f"{', '.join(IMAGE_FIGURES)}")
    return plot_image_run(run, out_dir, figures, seed)


def _plot_point_run(run: TrainedRun, out_dir: Path, figures: tuple[str, ...], seed: int,
                    samples: Tensor | None) -> list[Path]:
    x = training_data(run.config)[:5000]
    generator = torch.Generator().manual_seed(seed)
    sampler = run.config.sampler.name

    def drawn() -> Tensor:
        return run.sample(len(x), generator=generator) if samples is None else samples

    draw = {
        "data": lambda: plot_data(x, out_dir / "data.png", title=run.config.data.name),
        "score_field": lambda: plot_score_fields(run, x, out_dir / "score_field.png"),
        "samples": lambda: plot_samples(x, drawn(), out_dir / "samples.png", title=f"{sampler} samples"),
        "trajectories": lambda: plot_trajectories(run, x, out_dir / "trajectories.png", generator=generator),
        "animation": lambda: animate_sampler(run, x, out_dir / f"{sampler}.gif", generator=generator),
    }
    return [draw[name]() for name in figures]


# A run's figures by its modality (:attr:`scorelab.data.modality.Modality.name`).
RUN_FIGURES: dict[str, Callable[[TrainedRun, Path, tuple[str, ...], int, Tensor | None], list[Path]]] = {
    "points": _plot_point_run, "images": _plot_image_run, "waveforms": _plot_waveform_run}
