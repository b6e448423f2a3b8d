"""Quality against network evaluations for every sampler, on trained default runs of the 2-D suite.

    python benchmarks/sampler_table.py [--runs DIR] [--repeats 5] [--floor-repeats 20]
    python benchmarks/sampler_table.py --images RUNS [--image-dataset digits]
    python benchmarks/sampler_table.py --few-step [--runs DIR]

For each density of the suite and each run family (NCSN: the default config, and with
``--continuous``; DDPM: ``--model ddpm``, and the same without its input's Fourier features),
train the default run (or reuse it from ``--runs``), then draw samples (n = 2000, R repetitions)
with each sampler at a budget of 5, 10, 20, 50 and 100 network evaluations (NFE), and at the
family's current default, and measure the W2 ratio. NFE are counted, not assumed. Every cell
of one density uses the same data sets (seeded), so cells differ by their samplers alone.
The floor (F repetitions) is computed once per density and cached (``scorelab.core.cache``).

How a budget B becomes settings (the largest NFE ≤ B each sampler can do):
- ald: m = max(1, round((B − 1)/L)) Langevin steps on each of (B − 1)//m geometric levels of
  the process (L = the run's levels), plus the denoising step, at the run's step size;
- pc: B//2 levels, a predictor and a corrector step each (the last is the denoising step);
- ddpm, ddim: B levels of the process's grid; heun, stochastic_heun: (B + 1)//2 Karras steps (2K − 1 NFE);
  dpmpp_2m: B Karras steps;
- ode: the adaptive dopri5 solver at tolerances 1e-2, 1e-3 and 1e-5 (its NFE is its own);
- stochastic_heun: as heun, with its default churn (S_churn = 40, S_noise = 1).

Writes the ``sampler_table`` section of BENCHMARKS.md and ``benchmarks/sampler_table.png``.

With ``--few-step``, each family's default run (NCSN, DDPM, EDM, flow matching) under the deterministic
solvers at budgets of 10 and 20 evaluations, which chose the default family on points: the ``families`` section.

With ``--images``, the same cells for the two image families of ``images.py`` (the default U-Net
DDPM and the U-Net NCSN, trained there or here into RUNS), measured by the FD ratio in the
classifier's features of 1000 samples (seed 1) against the test split, as ``images.py`` measures;
writes ``sampler_table_images``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from report import distilled, markdown_table, write_section  # benchmarks/report.py, beside this script

import scorelab as sl
from scorelab.app.bench import SUITE
from scorelab.evaluation.evaluate import truth_key, truth_of
from scorelab.metrics import w2_ratio
from scorelab.runs.trained import TrainedRun
from scorelab.sampling import SAMPLERS, CountingScore

FIGURE = Path(__file__).resolve().parent / "sampler_table.png"
# The two families' defaults, and the NCSN trained on a continuum of levels (log σ uniform), which
# is what samplers that step between the 20 levels ask of the network.
# The DDPM MLP without the Fourier features of its input (as it was until 0.2) shows what they change.
FAMILIES = {"ncsn": {"model": "noise_conditional"}, "ncsn_continuous": {"model": "noise_conditional", "continuous": True},
            "ddpm": {"model": "ddpm"}, "ddpm_no_fourier": {"model": "ddpm", "fourier_features": 0}}
# --few-step: each family's default run (EDM's, the default on points, and flow matching's beside the NCSN and
# DDPM) under the deterministic solvers that fit the target's budget, to choose the default family by.
FEW_STEP_FAMILIES = {"ncsn": FAMILIES["ncsn"], "ddpm": FAMILIES["ddpm"], "edm": {"model": "edm"},
                     "flow": {"process": "flow"}, "flow_ot": {"process": "flow", "coupling": "ot"},
                     "consistency": {}}
FEW_STEP_CELLS = (("heun", 10), ("heun", 20), ("dpmpp_2m", 10), ("dpmpp_2m", 20), ("euler", 10), ("euler", 20))
# ... and a consistency model, the edm run distilled (`scorelab distill`), in one and two evaluations.
CONSISTENCY_TEACHER = "edm"
CONSISTENCY_CELLS = (("consistency", 1), ("consistency", 2))
TARGET, TARGET_NFE = 1.3, 20  # issue 18: a W2 ratio <= 1.3 on every density at <= 20 evaluations
BUDGETS = (5, 10, 20, 50, 100)
TOLERANCES = (1e-2, 1e-3, 1e-5)
SAMPLER_ORDER = ("ald", "pc", "ddpm", "ddim", "ode", "heun", "stochastic_heun", "dpmpp_2m")
# n = 2000 rather than the house 5000: exact W2 costs 9 times less there (0.4 s against 3.6 s
# per pair), which buys R = 5 repetitions; one deterministic sample set of 5000 moves the ratio
# by ±0.25 on moons (seeds 0–2 of the DDPM run's ODE: 1.38, 0.88, 1.32 against one data set).
N = 2000


def budget_settings(sampler: str, budget: int, run: TrainedRun) -> dict:
    """The settings that spend at most ``budget`` evaluations (see the module docstring)."""
    if sampler == "ald":
        each = max(1, round((budget - 1) / len(run.process.grid())))
        return {"sample_steps": (budget - 1) // each, "n_steps_each": each}
    if sampler == "pc":
        return {"sample_steps": budget // 2}
    if sampler in ("heun", "stochastic_heun"):
        return {"sample_steps": (budget + 1) // 2}
    return {"sample_steps": budget}


def cells(run: TrainedRun):
    """(row, sampler, budget label, settings) of every cell for one run."""
    for sampler in SAMPLER_ORDER:
        if sampler == "ode":
            for tolerance in TOLERANCES:
                yield sampler, sampler, f"tol {tolerance:g}", {"tolerance": tolerance}
            continue
        for budget in BUDGETS:
            yield sampler, sampler, f"≤ {budget}", budget_settings(sampler, budget, run)
    yield run.config.sampler.name, run.config.sampler.name, "default", {}


def draws(run: TrainedRun, sampler: str, options: dict, repeats: int) -> tuple[torch.Tensor, int]:
    """``repeats`` blocks of N samples of ``sampler`` with ``options`` (seeded per block), and the NFE per block."""
    name, settings = run.sampler_settings(sampler, **options)
    counted = CountingScore(run.model)
    blocks = []
    for block in range(repeats):
        generator = torch.Generator().manual_seed(block)
        start = run.process.prior((N, *run.shape), generator=generator, device=run.device)
        with torch.no_grad():
            samples = SAMPLERS[name].sample(counted, run.process, settings, start, generator, None, None)
        blocks.append(run.normalisation.to_data(samples.cpu()))
    return torch.cat(blocks), counted.count // repeats


def w2_ratios(run: TrainedRun, samples: list[torch.Tensor], repeats: int, floor_repeats: int) -> list[float]:
    """The W2 ratio of each sample set against the same data sets, two at a time (the floor first, once)."""
    truth = truth_of(run)

    def ratio(sample_set: torch.Tensor) -> float:
        return w2_ratio(sample_set, truth, n=N, repeats=repeats, seed=1, floor_repeats=floor_repeats,
                        floor_key=truth_key(run.config.data.name, truth)).ratio

    first = ratio(samples[0])  # computes and caches the floor
    with ThreadPoolExecutor(max_workers=2) as pool:
        return [first, *pool.map(ratio, samples[1:])]


def trained(runs: Path, dataset: str, family: str) -> TrainedRun:
    """The family's default run of ``dataset`` in ``runs``: trained, or finished where a stopped job left it; the
    ``consistency`` family's is the CONSISTENCY_TEACHER run distilled with the defaults (again if it stopped)."""
    run_dir = runs / f"{family}-{dataset}"
    if family == "consistency":
        return distilled(trained(runs, dataset, CONSISTENCY_TEACHER).run_dir, run_dir)
    config = sl.Config(dataset=dataset, **(FAMILIES | FEW_STEP_FAMILIES)[family])
    if not (run_dir / "model.safetensors").exists():
        sl.train(config, run_dir, progress=False, overwrite=True)
    elif TrainedRun.load(run_dir, "cpu").step < config.optim.steps:  # its last checkpoint, not its end
        sl.train(config, run_dir, resume=True, progress=False)
    return TrainedRun.load(run_dir, "cpu")


def target_lines(results: dict, datasets: list[str]) -> str:
    """A bullet per family: its cells of at most TARGET_NFE evaluations within TARGET on every density."""
    lines = []
    for family in dict.fromkeys(fam for (fam, *_) in results):
        met = []
        for sampler, label in dict.fromkeys((s, lab) for (fam, _, s, lab) in results if fam == family):
            ratios = {d: results[family, d, sampler, label][0] for d in datasets}
            nfe = max(results[family, d, sampler, label][1] for d in datasets)
            if nfe <= TARGET_NFE and max(ratios.values()) <= TARGET:
                worst = max(ratios, key=ratios.get)
                met.append(f"{sampler} {label} ({nfe} NFE, worst {ratios[worst]:.2f} on {worst})")
        lines.append(f"- {family}: " + ("; ".join(met) if met else "none"))
    return "\n".join(lines) + "\n"


def plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(FAMILIES), figsize=(4 * len(FAMILIES), 4), sharey=True)
    for axis, family in zip(axes, FAMILIES):
        for sampler in SAMPLER_ORDER:
            points = {}
            for (fam, _, name, label), (ratio, nfe) in results.items():
                if fam == family and name == sampler and label != "default":
                    points.setdefault(label, []).append((nfe, ratio))
            xs = [statistics.median(n for n, _ in values) for values in points.values()]
            ys = [statistics.median(r for _, r in values) for values in points.values()]
            order = sorted(range(len(xs)), key=xs.__getitem__)
            axis.plot([xs[i] for i in order], [ys[i] for i in order], marker="o", label=sampler)
        axis.set(xscale="log", yscale="log", xlabel="network evaluations", title=f"{family}: median over densities")
        axis.axhline(TARGET, color="grey", linestyle=":", linewidth=1)
    axes[0].set_ylabel("W2 ratio")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(FIGURE, dpi=110)


def image_table(runs: Path, dataset: str) -> None:
    """The cells of every image family on ``dataset``, by FD ratio (see the module docstring)."""
    from images import FAMILIES as IMAGE_FAMILIES
    from images import timed_samples
    from images import trained as trained_image_run

    from scorelab.evaluation.images import feature_quality, image_set_of

    results: dict = {}
    for family in IMAGE_FAMILIES:
        run = trained_image_run(runs, dataset, family)
        image_set = image_set_of(run)
        for row, sampler, label, options in cells(run):
            samples, _, nfe = timed_samples(run, sampler, **options)
            results[family, row, label] = (feature_quality(run, samples, image_set, seed=1)["fd"]["ratio"], nfe)
            print(family, row, label, results[family, row, label], flush=True)
    rows = []
    for row, label in dict.fromkeys((r, lab) for (_, r, lab) in results):
        found = [results.get((family, row, label)) for family in IMAGE_FAMILIES]
        rows.append([row, label, *("–" if cell is None else f"{cell[0]:.2f} ({cell[1]})" for cell in found)])
    body = (f"FD ratio in the classifier's features (1000 samples, seed 1, against the test split, as in "
            f"\"image_samplers\") of the trained {dataset} runs of `images.py`, with the counted network "
            "evaluations in brackets; the budgets and how each sampler spends them are those of the 2-D table "
            "above. `ddpm`: the default U-Net DDPM (VP, T = 1000, ε-loss); `ncsn`: the same U-Net as an NCSN "
            "(`--model noise_conditional`: VE, 20 levels, annealed DSM). The default row is each run's own "
            "sampler, so it differs by family.\n\n"
            + markdown_table(["sampler", "budget", *IMAGE_FAMILIES], rows))
    write_section("sampler_table_images", f"Samplers on {dataset}: quality against network evaluations", body)


def few_step_cells(run: TrainedRun, repeats: int, floor_repeats: int) -> list[list]:
    """[sampler, budget, W2 ratio, NFE] of each FEW_STEP_CELLS cell for ``run``, measured once and then kept in
    the run directory's ``few_step.json`` (keyed by R and F), so that a family retrained is all a rerun measures."""
    record = run.run_dir / "few_step.json"
    key = f"R={repeats},F={floor_repeats}"
    kept = json.loads(record.read_text()) if record.exists() else {}
    if key not in kept:
        if run.config.objective.name == "consistency_distillation":
            chosen = list(CONSISTENCY_CELLS)
        else:
            chosen = [(sampler, budget) for sampler, budget in FEW_STEP_CELLS
                      if sampler != "euler" or run.config.process.name == "flow"]
        drawn = [draws(run, sampler, budget_settings(sampler, budget, run), repeats) for sampler, budget in chosen]
        measured = w2_ratios(run, [samples for samples, _ in drawn], repeats, floor_repeats)
        kept[key] = [[sampler, budget, ratio, nfe] for (sampler, budget), ratio, (_, nfe) in zip(chosen, measured, drawn)]
        record.write_text(json.dumps(kept, indent=1))
    return kept[key]


def best_lines(results: dict, datasets: list[str]) -> str:
    """A bullet per family: its cell of at most TARGET_NFE evaluations with the lowest worst density."""
    lines = []
    for family in dict.fromkeys(fam for (fam, *_) in results):
        cells = {}
        for sampler, label in dict.fromkeys((s, lab) for (fam, _, s, lab) in results if fam == family):
            ratios = [results[family, d, sampler, label][0] for d in datasets]
            if max(results[family, d, sampler, label][1] for d in datasets) <= TARGET_NFE:
                cells[sampler, label] = (max(ratios), statistics.mean(ratios))
        (sampler, label), (worst, mean) = min(cells.items(), key=lambda item: item[1])
        lines.append(f"- {family}: {sampler} {label}, worst {worst:.2f}, mean {mean:.2f}")
    return "\n".join(lines) + "\n"


def few_step_table(args: argparse.Namespace) -> None:
    """The ``families`` section: every family's default run under the few-step deterministic solvers."""
    results: dict = {}
    for family in args.families:
        for dataset in args.datasets:
            run = trained(args.runs, dataset, family)
            for sampler, budget, ratio, nfe in few_step_cells(run, args.repeats, args.floor_repeats):
                results[family, dataset, sampler, f"≤ {budget}"] = (ratio, nfe)
            print(family, dataset, {k[2:]: f"{v[0]:.2f}" for k, v in results.items() if k[:2] == (family, dataset)},
                  flush=True)
    rows = []
    for family, sampler, label in dict.fromkeys((f, s, lab) for (f, _, s, lab) in results):
        ratios = [results[family, d, sampler, label][0] for d in args.datasets]
        nfe = max(results[family, d, sampler, label][1] for d in args.datasets)
        rows.append([family, sampler, label, str(nfe), *(f"**{r:.2f}**" if r <= TARGET else f"{r:.2f}" for r in ratios),
                     f"{max(ratios):.2f}"])
    body = (f"W2 ratio (n = {N}, R = {args.repeats}, floor F = {args.floor_repeats}) of each family's default run "
            "(3000 steps at batch 2048) on every density, under the deterministic solvers at a budget of 10 and 20 "
            "network evaluations (how a budget becomes steps: `benchmarks/sampler_table.py`). `ncsn`: "
            "`--model noise_conditional` (VE, 20 levels, annealed DSM); `ddpm`: `--model ddpm` (VP, T = 1000, "
            "ε-loss); `edm`: `--model edm` (VE, ln σ ~ N(−1.2, 1.2²), λ(σ) = (σ² + σ_d²)/(σσ_d)², EDM's "
            "preconditioning, σ from 80 to 0.002); `flow`: `--process flow` (the linear interpolant, uniform t, "
            "the flow-matching loss); `flow_ot`: the same with `--coupling ot` (data and noise paired by the optimal "
            f"transport of each block of 64 rows, Tong et al. 2023); `consistency`: the `edm` run distilled into a "
            "consistency model (`scorelab distill` with its defaults: N = 18 levels, a Heun teacher step, the "
            "pseudo-Huber distance, 3000 steps), sampled in 1 and 2 evaluations. **Bold**: ≤ {TARGET}. Each family's best cell at ≤ {TARGET_NFE} "
            "evaluations, by its worst density (and its mean over the suite):\n\n" + best_lines(results, args.datasets)
            + f"\nCells within {TARGET} on every density at ≤ {TARGET_NFE} evaluations:\n\n"
            + target_lines(results, args.datasets)
            + "\n" + markdown_table(["family", "sampler", "budget", "nfe", *args.datasets, "worst"], rows))
    write_section("families", "Families: few-step sampling of each family's default run", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/sampler_table_runs"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--floor-repeats", type=int, default=20)
    parser.add_argument("--datasets", nargs="*", default=list(SUITE))
    parser.add_argument("--images", type=Path, metavar="RUNS", help="instead: the image runs of images.py in RUNS")
    parser.add_argument("--image-dataset", default="digits", help="with --images: the image set")
    parser.add_argument("--few-step", action="store_true", help="instead: the families section (see FEW_STEP_FAMILIES)")
    parser.add_argument("--families", nargs="+", default=list(FEW_STEP_FAMILIES), choices=list(FEW_STEP_FAMILIES),
                        help="with --few-step: the families to measure")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.few_step:
        few_step_table(args)
        return
    if args.images:
        image_table(args.images, args.image_dataset)
        return
    results: dict = {}
    for family in FAMILIES:
        for dataset in args.datasets:
            start = time.perf_counter()
            run = trained(args.runs, dataset, family)
            labels = [(row, label) for row, _, label, _ in cells(run)]
            drawn = [draws(run, sampler, options, args.repeats) for _, sampler, _, options in cells(run)]
            measured = w2_ratios(run, [samples for samples, _ in drawn], args.repeats, args.floor_repeats)
            for (sampler, label), ratio, (_, nfe) in zip(labels, measured, drawn):
                results[family, dataset, sampler, label] = (ratio, nfe)
            print(f"{family} {dataset}: {time.perf_counter() - start:.0f} s", flush=True)
    body = [
        f"W2 ratio (n = {N}, R = {args.repeats}, floor F = {args.floor_repeats}) of samples from the trained "
        "default run of each density, by sampler and budget of network evaluations; `nfe` is the counted "
        "number (a budget is the most a sampler may spend, see `benchmarks/sampler_table.py` for how each "
        "spends it). The NCSN runs are the default config (VE, 20 levels, annealed DSM), `ncsn_continuous` "
        "the same with `--continuous` (σ log-uniform in training); the DDPM runs `--model ddpm` (VP, "
        "T = 1000, ε-loss, 32 Fourier features of the input), `ddpm_no_fourier` the same MLP without the "
        f"Fourier features (the DDPM default until 0.2). **Bold**: ≤ {TARGET}.\n\n"
        f"Samplers with a W2 ratio ≤ {TARGET} on every density at ≤ {TARGET_NFE} evaluations (the target), "
        "with their worst density:\n\n" + target_lines(results, args.datasets)]
    for family in FAMILIES:
        labels = list(dict.fromkeys((s, lab) for (fam, _, s, lab) in results if fam == family))
        rows = []
        for sampler, label in labels:
            ratios = [results[family, d, sampler, label][0] for d in args.datasets]
            nfes = sorted({results[family, d, sampler, label][1] for d in args.datasets})
            cells_text = [f"**{r:.2f}**" if r <= TARGET else f"{r:.2f}" for r in ratios]
            nfe = str(nfes[0]) if len(nfes) == 1 else f"{nfes[0]}–{nfes[-1]}"
            rows.append([sampler, label, nfe, *cells_text, f"{max(ratios):.2f}"])
        body.append(f"\n### {family}\n\n" + markdown_table(["sampler", "budget", "nfe", *args.datasets, "worst"],
                                                             rows))
    body.append("\n![W2 ratio against network evaluations](benchmarks/sampler_table.png)\n")
    # The section first: its provenance line reads the checkout's state, which the figure would make dirty.
    write_section("sampler_table", "Samplers: quality against network evaluations (trained default runs)",
                  "".join(body))
    plot(results)


if __name__ == "__main__":
    main()
