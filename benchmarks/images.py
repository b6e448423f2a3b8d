"""Image runs measured: the DDPM and NCSN families on digits side by side, and the default (flow) on MNIST.

    python benchmarks/images.py [--runs DIR] [--datasets digits mnist5k] [--n-test-mnist 200]

For each data set and family (on digits DDPM, the default, and NCSN, ``--model noise_conditional``; on
mnist5k its default alone, the class-conditional flow family) train the run (or reuse it from ``--runs``; its
training seconds are read from its ``train_log.csv``), then with the run's default sampler draw 1000 samples (timed) and
measure everything ``scorelab evaluate`` reports (:func:`scorelab.evaluation.images.evaluate_images`).
On digits, each family is also sampled with other samplers and step counts, 1000 samples each
(timed; NFE counted), and scored by the classifier-feature Fréchet distance ratio, precision and
recall, class coverage and the memorised fraction.

Writes the ``images`` (``images_mnist5k`` when run for it alone) and ``image_samplers`` sections of
BENCHMARKS.md, and the sample grids ``docs/images/{digits,mnist5k}_samples.png`` (the default family's).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path

import torch
from report import (  # benchmarks/report.py, beside this script
    RUNS,
    markdown_table,
    write_section,
)

import scorelab as sl
from scorelab.evaluation.images import evaluate_images, feature_quality, image_set_of
from scorelab.metrics.features import memorisation
from scorelab.plots.images import plot_image_grid
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import parameter_count
from scorelab.sampling import SAMPLERS, CountingScore

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
FAMILIES = {"ddpm": {"model": "ddpm"}, "ncsn": {"model": "noise_conditional"}, "flow": {"model": "flow"}}
# Each data set's default family (its config with nothing stated), and the families measured beside it.
DEFAULT_FAMILY = {"digits": "ddpm", "mnist5k": "flow"}
MEASURED = {"digits": ["ddpm", "ncsn"], "mnist5k": ["flow"]}
N = 1000
# (sampler, settings) per family; the run's default sampler is measured as well.
SAMPLER_CELLS = {
    "ncsn": [("ald", {"sample_steps": 20, "n_steps_each": 5}), ("ald", {"sample_steps": 20, "n_steps_each": 20}),
             ("heun", {"sample_steps": 10}), ("heun", {"sample_steps": 25}), ("stochastic_heun", {"sample_steps": 25}),
             ("dpmpp_2m", {"sample_steps": 10}), ("dpmpp_2m", {"sample_steps": 20})],
    "ddpm": [("ddim", {"sample_steps": 10}), ("ddim", {"sample_steps": 20}), ("ddim", {"sample_steps": 50}),
             ("ddim", {"sample_steps": 100}), ("ode", {}), ("heun", {"sample_steps": 10}),
             ("dpmpp_2m", {"sample_steps": 10}), ("dpmpp_2m", {"sample_steps": 20}), ("stochastic_heun", {}),
             ("ddpm", {"sample_steps": 250}), ("ddpm", {"sample_steps": 1000})],
    # MNIST's class-conditional flow run: fewer steps, guidance, and Heun.
    "flow": [("dpmpp_2m", {"sample_steps": 10}), ("dpmpp_2m", {"sample_steps": 20, "guidance": 1.5}),
             ("heun", {"sample_steps": 10})],
}


def trained(runs: Path, dataset: str, family: str) -> TrainedRun:
    run_dir = runs / f"{dataset}_{family}"
    if not (run_dir / "model.safetensors").exists():
        sl.train(sl.Config(dataset=dataset, **FAMILIES[family]), run_dir, progress=False, overwrite=True)
    return TrainedRun.load(run_dir, "cpu")


def train_seconds(run: TrainedRun) -> float:
    with (run.run_dir / "train_log.csv").open() as handle:
        return float(list(csv.DictReader(handle))[-1]["seconds"])


def timed_samples(run: TrainedRun, sampler: str | None = None, **options) -> tuple[torch.Tensor, float, int]:
    """N samples (seed 1), the seconds they took and the network evaluations."""
    name, settings = run.sampler_settings(sampler, **options)
    counted = CountingScore(run.guided_model(settings))  # a guided evaluation counts once
    generator = torch.Generator().manual_seed(1)
    cond = run.labels(None, N)  # a class-conditional run: its classes in turn
    begin = time.perf_counter()
    start = run.process.prior((N, *run.shape), generator=generator, device=run.device)
    # In the batches `scorelab sample` draws (256 images): one batch of all N would be slower per sample.
    chunks = list(range(0, N, run.sample_batch_size))
    with torch.inference_mode():
        samples = torch.cat([SAMPLERS[name].sample(
            counted, run.process, settings, start[first:first + run.sample_batch_size], generator, None,
            None if cond is None else cond[first:first + run.sample_batch_size]) for first in chunks])
    seconds = time.perf_counter() - begin
    return run.normalisation.to_data(samples.clamp(-1, 1).cpu()), seconds, counted.count // len(chunks)


def label(sampler: str, settings: dict) -> str:
    if sampler == "ald":
        return f"ald {settings['sample_steps']} levels × {settings['n_steps_each']}"
    guided = f", γ = {settings['guidance']:g}" if settings.get("guidance", 1) != 1 else ""
    if "sample_steps" in settings:
        return f"{sampler} {settings['sample_steps']} steps{guided}"
    return sampler + guided


def quality_row(dataset: str, family: str, run: TrainedRun, n_test: int | None) -> tuple[list, torch.Tensor]:
    """The row of the ``images`` table, and the samples it measured."""
    samples, sample_seconds, nfe = timed_samples(run)
    seconds = time.perf_counter()
    metrics = evaluate_images(run, samples=samples, n_test=n_test)
    evaluate_seconds = time.perf_counter() - seconds
    bits = metrics["bits_per_dim"]
    classes = metrics.get("classes")
    fd = metrics.get("fd")
    return [dataset, family, f"{parameter_count(run.model):,}", f"{run.config.optim.steps}",
            f"{train_seconds(run) / 60:.1f}", f"{run.config.sampler.name} ({nfe} NFE)", f"{sample_seconds:.1f}",
            f"{metrics['classifier_test_accuracy']:.3f}" if fd else "—",
            f"{fd['model']:.3g} / {fd['floor']:.3g} = **{fd['ratio']:.2f}**" if fd else "—",
            f"{metrics['kid']['model']:.4f} / {metrics['kid']['floor']:.4f}" if fd else "—",
            f"{metrics['precision']['model']:.2f} / {metrics['recall']['model']:.2f}" if fd else "—",
            f"{classes['min_fraction']:.1%}–{classes['max_fraction']:.1%}" if classes else "—",
            f"{metrics['memorisation']['fraction']:.1%}",
            f"{bits['model']['mean']:.3f} ± {bits['model']['se']:.3f}", f"{bits['gaussian']['mean']:.3f}",
            f"{bits['mixture']['mean']:.3f} (k = {bits['mixture_components']})", f"{evaluate_seconds:.0f}"], samples


def sampler_rows(family: str, run: TrainedRun) -> list:
    image_set = image_set_of(run)
    rows = []
    for sampler, settings in [*SAMPLER_CELLS[family], (run.config.sampler.name, {})]:
        samples, seconds, nfe = timed_samples(run, sampler, **settings)
        quality = feature_quality(run, samples, image_set, seed=1)
        copies = memorisation(samples, image_set.train, image_set.test)
        default = not settings and sampler == run.config.sampler.name
        name = (label(sampler, dataclasses.asdict(run.config.sampler.settings)) + " (default)" if default
                else label(sampler, settings))
        rows.append([family, name, nfe, f"{seconds:.1f}", f"{quality['fd']['ratio']:.2f}",
                     f"{quality['precision']['model']:.2f} / {quality['recall']['model']:.2f}",
                     f"{quality['classes']['min_fraction']:.1%}–{quality['classes']['max_fraction']:.1%}",
                     f"{copies['fraction']:.1%}"])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RUNS / "images", help="run directories (reused; default: $SCORELAB_BENCH_RUNS/images)")
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--n-test-mnist", type=int, default=200, help="MNIST test images for bits/dim")
    args = parser.parse_args()
    torch.set_num_threads(2)
    quality, samplers = [], []
    for dataset in args.datasets:
        for family in MEASURED[dataset]:
            run = trained(args.runs, dataset, family)
            row, samples = quality_row(dataset, family, run, None if dataset == "digits" else args.n_test_mnist)
            quality.append(row)
            print(row, flush=True)
            if family == DEFAULT_FAMILY[dataset]:
                plot_image_grid(samples, run.value_range, IMAGES / f"{dataset}_samples.png",
                                f"{dataset}: {run.config.sampler.name} samples of the default run")
            samplers += [[dataset, *row] for row in sampler_rows(family, run)]
    header = ["data", "family", "parameters", "steps", "train min", "default sampler", "s / 1000", "classifier acc",
              "FD / floor = ratio", "KID / floor", "precision / recall", "classes", "memorised", "bits/dim",
              "Gaussian", "mixture", "evaluate s"]
    section = "images" if "digits" in args.datasets else "images_" + "_".join(args.datasets)
    on = "" if "digits" in args.datasets else f" on {', '.join(args.datasets)}"
    write_section(section, f"Image runs{on}: quality in classifier features, memorisation and bits/dim",
                  f"`python benchmarks/images.py --datasets {' '.join(args.datasets)}`: defaults trained on 2 "
                  "cores; 1000 samples (seed 1); FD and KID on blocks the size of the test split against it, "
                  "floors from equal draws of the training split; bits/dim of the test split "
                  f"(MNIST: its first {args.n_test_mnist}), uniformly dequantised.\n\n"
                  + markdown_table(header, quality))
    if samplers:
        alone = "digits" not in args.datasets
        write_section("image_samplers" + ("_" + "_".join(args.datasets) if alone else ""),
                      f"Samplers and steps on {', '.join(args.datasets)}" if alone else
                      "Digits: samplers and steps, NCSN and DDPM side by side",
                      "`python benchmarks/images.py`: 1000 samples per row (seed 1; a class-conditional run's "
                      "classes in turn), seconds on 2 cores, NFE counted (a guided evaluation, on the doubled "
                      "batch, counts once); FD ratio in the classifier's features against the test split; "
                      "memorised: samples nearer a training image than 99% of test images are.\n\n"
                      + markdown_table(["data", "family", "sampler", "NFE", "s / 1000", "FD ratio",
                                        "precision / recall", "classes", "memorised"], samplers))


if __name__ == "__main__":
    main()
