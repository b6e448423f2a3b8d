"""Guidance measured: classifier-free guidance on class-conditional image runs, and autoguidance against it on a
labelled 2-D density.

    python benchmarks/guidance.py [--runs DIR] [--datasets digits mnist5k] [--n 1000] [--gammas 0 1 2]
                                  [--per-class 10] [--two-d] [--timing digits mnist5k]

Images: the default run of each data set trained with ``--conditional`` (or reused from ``--runs``), its guide
kept at a quarter of its steps. For γ in :data:`GAMMAS`, over every σ and inside :data:`INTERVAL`, ``n`` samples
drawn class by class (sample i of class i mod 10, seed 1) are scored as ``scorelab evaluate --guidance γ`` scores
them: class agreement by the feature classifier, the FD ratio, precision and recall, the memorised share. Writes
the ``guidance_<dataset>`` section of BENCHMARKS.md and ``docs/images/<dataset>_guidance.png`` (a row per class at
three γ).

Timing (``--timing``, on a quiet machine): one guided network evaluation (one call on the doubled batch) against
an unguided one, each run's U-Net on a batch of 256, medians of 7 calls after a warm-up; the ``guidance_step``
section.

2-D (``--two-d``): the default flow-matching run of ``pinwheel`` trained with ``--conditional`` and its guide kept
at a tenth of its steps, sampled per arm with the conditional score, classifier-free guidance and autoguidance
(Karras et al. 2024, their Fig. 1 made on the 2-D suite), each scored by the W2 ratio against that arm's own data.
Writes the ``guidance_2d`` section and ``docs/images/autoguidance_2d.png``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
from report import (  # benchmarks/report.py, beside this script
    RUNS,
    markdown_table,
    median_seconds,
    write_section,
)

import scorelab as sl
from scorelab.core.guidance import GuidedScore
from scorelab.data.sources import data_part
from scorelab.evaluation.images import evaluate_images
from scorelab.metrics import w2_ratio
from scorelab.plots.guidance import plot_class_points, plot_class_rows
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import GUIDE_NAME

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
GAMMAS = (0.0, 1.0, 1.5, 2.0, 3.0, 4.0)
# Kynkäänniemi et al. 2024 guide EDM2-S on ImageNet-512 only for σ in (0.28, 5.42]; the same levels here, for data
# scaled to [-1, 1].
INTERVAL = "0.28,5.42"
FIGURE_GAMMAS = (1.0, 2.0, 4.0)


def conditional_run(runs: Path, dataset: str, guide_share: float) -> TrainedRun:
    """The data set's default run trained on its labels, with its guide kept at ``guide_share`` of its steps."""
    run_dir = runs / f"{dataset}_conditional"
    if not (run_dir / "model.safetensors").exists():
        steps = sl.Config(dataset=dataset).optim.steps
        sl.train(sl.Config(dataset=dataset, conditional=True, keep_guide_at=round(steps * guide_share)), run_dir,
                 progress=False, overwrite=True)
    return TrainedRun.load(run_dir, "cpu")


def step_times(run: TrainedRun, batch: int = 256) -> tuple[float, float]:
    """Median seconds of one unguided and one guided (γ = 2, one call on the doubled batch) network evaluation."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *run.shape, generator=generator)
    sigma = torch.full((batch,), 1.0)
    labels = torch.arange(batch) % run.classes
    guided = GuidedScore(run.model, 2.0)
    with torch.inference_mode():
        return (median_seconds(lambda: run.model(x, sigma, cond=labels)),
                median_seconds(lambda: guided(x, sigma, cond=labels)))


def image_rows(run: TrainedRun, n: int, gammas: tuple[float, ...]) -> list[list]:
    rows = []
    for gamma in gammas:
        for interval in ("", INTERVAL) if gamma != 1 else ("",):
            metrics = evaluate_images(run, n=n, seed=1, bits=False, guidance=gamma, guidance_interval=interval)
            agreements = [row["agreement"] for row in metrics["per_class"]]
            class_fd = [row["fd"]["ratio"] for row in metrics["per_class"]]
            rows.append([f"{gamma:g}", f"({interval.replace(',', ', ')}]" if interval else "every σ",
                         f"{metrics['agreement']:.1%}", f"{min(agreements):.1%}–{max(agreements):.1%}",
                         f"**{metrics['fd']['ratio']:.2f}**", f"{statistics.fmean(class_fd):.2f}",
                         f"{metrics['precision']['model']:.2f}", f"{metrics['recall']['model']:.2f}",
                         f"{metrics['memorisation']['fraction']:.1%}"])
    return rows


def class_figure(run: TrainedRun, dataset: str, per_class: int) -> Path:
    panels = {f"γ = {gamma:g}": run.class_grid_rows(0, per_class * run.classes, seed=0, per_class=per_class,
                                                    guidance=gamma) for gamma in FIGURE_GAMMAS}
    return plot_class_rows(panels, run.value_range, IMAGES / f"{dataset}_guidance.png", columns=per_class)


def images_section(runs: Path, dataset: str, n: int, gammas: tuple[float, ...], per_class: int) -> None:
    run = conditional_run(runs, dataset, guide_share=0.25)
    rows = image_rows(run, n, gammas)
    figure = class_figure(run, dataset, per_class)
    body = "\n".join([
        f"`python benchmarks/guidance.py --datasets {dataset}`: the default {dataset} run trained with `--conditional` "
        f"({run.step} steps, label dropout {run.config.data.label_dropout}), sampled with its own sampler "
        f"({run.config.sampler.name}, {run.config.sampler.settings.sample_steps} steps); {n} samples, class i mod 10 "
        "for sample i, seed 1. Agreement: the share of samples the feature classifier assigns to the class asked "
        "for, over all and per class (min–max). FD ratio: all samples against the test split, and the mean over "
        "classes of each class's samples against its own test images; precision and recall (k = 3) in the same "
        "features, against the test split; memorised: samples nearer a training image than 99% of test images are. "
        "γ = 0 is the network's unconditional score (the null class), γ = 1 its plain conditional score.",
        "",
        markdown_table(["γ", "guided where", "agreement", "per class", "FD ratio", "per-class FD ratio",
                        "precision", "recall", "memorised"], rows),
        "",
        f"Figure: `{figure.relative_to(IMAGES.parent.parent)}`, a row per class at γ = "
        f"{', '.join(f'{gamma:g}' for gamma in FIGURE_GAMMAS)}.",
    ])
    write_section(f"guidance_{dataset}", f"Guidance on {dataset}", body)


def timing_section(runs: Path, datasets: list[str]) -> None:
    rows = []
    for dataset in datasets:
        run = conditional_run(runs, dataset, guide_share=0.25)
        plain, guided = step_times(run)
        rows.append([dataset, f"{plain * 1e3:.1f}", f"{guided * 1e3:.1f}", f"**{guided / plain:.2f}**"])
    body = "\n".join([
        "`python benchmarks/guidance.py --timing ...`: one network evaluation of each conditional run's U-Net on a "
        "batch of 256 (inference mode, medians of 7 calls after a warm-up), unguided and guided with γ = 2 (one "
        "call on the doubled batch of 512), with nothing else running.",
        "",
        markdown_table(["run", "unguided ms", "guided ms", "ratio"], rows),
    ])
    write_section("guidance_step", "Guidance: the cost of a guided step", body)


def _class_truth(dataset: str, settings, label: int):
    """Fresh data of one class: labelled draws, kept where they are of ``label``, until there are ``n``."""
    labelled = data_part(dataset).labelled_truth(dataset, settings)

    def draw(n: int, generator: torch.Generator) -> torch.Tensor:
        kept = []
        while sum(map(len, kept)) < n:
            x, labels = labelled(4 * n, generator)
            kept.append(x[labels == label])
        return torch.cat(kept)[:n]

    return draw


def two_d_section(runs: Path, n: int = 2000, repeats: int = 3) -> None:
    dataset = "pinwheel"
    run = conditional_run(runs, dataset, guide_share=0.1)
    guide = str(run.run_dir / GUIDE_NAME)
    settings = {"conditional (γ = 1)": {}, "CFG γ = 2": {"guidance": 2.0}, "CFG γ = 3": {"guidance": 3.0},
                "autoguidance γ = 2": {"guidance": 2.0, "guide": guide},
                "autoguidance γ = 3": {"guidance": 3.0, "guide": guide}}
    rows, panels = [], {}
    for title, options in settings.items():
        ratios = []
        for label in range(run.classes):
            truth = _class_truth(dataset, run.config.data.settings, label)
            report = w2_ratio(lambda k, g, c=label, o=options: run.sample(k, generator=g, cond=c, **o), truth, n=n,
                              repeats=repeats, seed=label, floor_key={"dataset": dataset, "class": label})
            ratios.append(report.ratio)
        rows.append([title, *(f"{ratio:.2f}" for ratio in ratios), f"**{statistics.fmean(ratios):.2f}**",
                     f"{max(ratios):.2f}"])
        labels = torch.arange(1000) % run.classes
        panels[title] = (run.sample(1000, generator=torch.Generator().manual_seed(0), cond=labels, **options), labels)
    data = data_part(dataset).labelled_truth(dataset, run.config.data.settings)(1000, torch.Generator().manual_seed(0))
    figure = plot_class_points(data, panels, IMAGES / "autoguidance_2d.png")
    body = "\n".join([
        f"`python benchmarks/guidance.py --two-d`: the default {dataset} run (flow matching, "
        f"{run.config.sampler.name} {run.config.sampler.settings.sample_steps} steps) trained with `--conditional` "
        f"({run.step} steps); its guide is the same run's checkpoint at step {TrainedRun.load(guide, 'cpu').step} "
        f"(`--keep-guide-at`). W2 ratio of each arm's samples against that arm's own data (n = {n}, R = {repeats}).",
        "",
        markdown_table(["sampling", *(f"arm {label}" for label in range(run.classes)), "mean", "worst"], rows),
        "",
        f"Figure: `{figure.relative_to(IMAGES.parent.parent)}`.",
    ])
    write_section("guidance_2d", "Guidance on a labelled 2-D density: classifier-free against autoguidance", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--datasets", nargs="*", default=["digits"])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--gammas", nargs="+", type=float, default=list(GAMMAS))
    parser.add_argument("--per-class", type=int, default=10, help="samples per class in each γ's figure panel")
    parser.add_argument("--two-d", action="store_true")
    parser.add_argument("--timing", nargs="*", default=[], metavar="DATASET")
    args = parser.parse_args()
    torch.set_num_threads(2)
    for dataset in args.datasets:
        images_section(args.runs, dataset, args.n, tuple(args.gammas), args.per_class)
    if args.two_d:
        two_d_section(args.runs)
    if args.timing:
        timing_section(args.runs, args.timing)


if __name__ == "__main__":
    main()
