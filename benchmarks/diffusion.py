"""DDPM, DDIM and the probability-flow ODE: quality against steps, trained models, bound against NLL.

    python benchmarks/diffusion.py [--n 5000] [--repeats 3]

Writes the ``diffusion`` section of BENCHMARKS.md and ``benchmarks/diffusion_steps.png``.
1. The exact score of a 2-D Gaussian mixture turned into ε: W2 ratio against the
   number of steps for DDPM (respaced chain), DDIM (η = 0) and the ODE (Heun on K
   levels; dopri5 adaptive), with time per sample and function evaluations (NFE).
   With the exact score every gap to 1.0 is the sampler's.
2. DDPMs trained with the default config (``model = "ddpm"``, ``objective = "eps"``)
   on moons and swiss_roll: train time and the W2 ratio of each sampler.
3. For those models, the variational bound and the ODE NLL on held-out data, in nats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import markdown_table, write_section  # benchmarks/report.py, beside this script

import scorelab as sl
from scorelab.core.processes import VP
from scorelab.runs.trained import TrainedRun
from scorelab.sampling import CountingScore, ddim, ddpm, probability_flow
from scorelab.sampling.likelihood import log_prob, variational_bound

FIGURE = Path(__file__).resolve().parent / "diffusion_steps.png"
MIXTURE = sl.data.GaussianMixture([[1.0, 1.0], [-1.0, 1.0], [0.0, -1.0]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])
STEPS = (10, 50, 200, 1000)
ODE_STEPS = (10, 50)
TIMESTEPS = 1000
DATASETS = ("moons", "swiss_roll")


PROCESS = VP("linear", TIMESTEPS)


def run_sampler(score, name: str, steps: int | None, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` samples from ``score`` with DDPM/DDIM/ODE on ``steps`` levels (None: dopri5 for the ODE)."""
    sigmas = PROCESS.grid(steps)
    start = PROCESS.prior((n, 2), generator=generator)
    if name == "ddpm":
        return ddpm(score, start, sigmas, generator=generator)
    if name == "ddim":
        return ddim(score, start, sigmas)
    if steps is None:
        return probability_flow(score, start, sigmas[[0, -1]])
    return probability_flow(score, start, sigmas, method="heun2")


def measure(score, name: str, steps: int | None, sample_data, args, to_data=lambda x: x) -> dict:
    """W2 ratio (both parts with their spread), µs per sample and score evaluations per sampling run."""
    counted = CountingScore(score)
    seconds: list[float] = []
    calls: list[int] = []

    def sample_model(n: int, generator: torch.Generator) -> torch.Tensor:
        before, begin = counted.count, time.perf_counter()
        samples = run_sampler(counted, name, steps, n, generator)
        seconds.append(time.perf_counter() - begin)
        calls.append(counted.count - before)
        return to_data(samples)

    report = sl.metrics.w2_ratio(sample_model, sample_data, n=args.n, repeats=args.repeats)
    return {"report": report, "us_per_sample": 1e6 * sum(seconds) / (args.n * args.repeats),
            "nfe": statistics.fmean(calls)}


def ratio_cells(result: dict) -> list[str]:
    report = result["report"]
    return [f"{report.ratio:.3f}", f"{report.model_mean:.4f} ± {report.model_std:.4f}",
            f"{report.floor_mean:.4f} ± {report.floor_std:.4f}", f"{result['nfe']:.0f}",
            f"{result['us_per_sample']:.1f}"]


RATIO_HEADER = ["W2 ratio", "W2 model", "W2 floor", "NFE", "µs / sample"]


def exact_score_sweep(args) -> tuple[str, dict]:
    """Section 1: sampler error alone, with the exact mixture score."""
    rows, curves = [], {}
    for name in ("ddpm", "ddim", "ode"):
        for steps in (*ODE_STEPS, None) if name == "ode" else STEPS:
            result = measure(MIXTURE, name, steps, MIXTURE.sample, args)
            rows.append([name, "dopri5 (adaptive)" if steps is None else steps, *ratio_cells(result)])
            if steps is not None:
                curves.setdefault(name, []).append((steps, result["report"].ratio))
            print(rows[-1], flush=True)
    return markdown_table(["sampler", "steps", *RATIO_HEADER], rows), curves


def train_default(dataset: str, root: Path) -> tuple[TrainedRun, float]:
    # As `scorelab train --model ddpm` does: the choice of model implies its process, objective and sampler.
    config = sl.Config(dataset=dataset, model="ddpm")
    result = sl.train(config, root / dataset, progress=False)
    return sl.load_run(root / dataset, device="cpu"), result.seconds


def trained_quality(run: TrainedRun, dataset: str, args) -> list[list]:
    """Section 2: the W2 ratio of each sampler on a trained model, in data coordinates."""
    def sample_data(n: int, generator: torch.Generator) -> torch.Tensor:
        return sl.data.load(dataset, n, generator=generator)

    rows = []
    for name, steps in (("ddpm", TIMESTEPS), ("ddim", 50), ("ode", None)):
        result = measure(run.model, name, steps, sample_data, args, to_data=run.normalisation.to_data)
        rows.append([dataset, name, "dopri5" if steps is None else steps, *ratio_cells(result)])
        print(rows[-1], flush=True)
    return rows


def bound_and_nll(run: TrainedRun, dataset: str, n_test: int) -> list:
    """Section 3: mean ± standard error of the bound and of the ODE NLL on fresh test data, in nats.

    Both are computed in model coordinates and moved to data coordinates by + Σ log scale.
    """
    test = sl.data.load(dataset, n_test, generator=torch.Generator().manual_seed(12345))
    x = run.normalisation.to_model(test)
    log_scale = run.normalisation.log_det()
    begin = time.perf_counter()
    bound = variational_bound(run.model, x, run.process, generator=torch.Generator().manual_seed(1)).total
    bound_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    nll = -log_prob(run.model, x, run.process)
    nll_seconds = time.perf_counter() - begin
    gap = bound - nll

    def mean_se(values: torch.Tensor) -> str:
        return f"{values.mean().item() + log_scale:.3f} ± {values.std().item() / len(values) ** 0.5:.3f}"

    return [dataset, mean_se(bound), f"{bound.std().item():.2f}", mean_se(nll), f"{nll.std().item():.2f}",
            f"{gap.mean().item():.3f} ± {gap.std().item() / len(gap) ** 0.5:.3f}",
            f"{bound_seconds:.0f} / {nll_seconds:.0f}"]


def plot(curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, points in curves.items():
        steps, ratios = zip(*points)
        axis.plot(steps, ratios, marker="o", label=name)
    axis.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axis.set(xscale="log", xlabel="sampling steps (ODE: Heun levels)", ylabel="W2 ratio",
             title="Exact mixture score: sampler error")
    axis.legend()
    figure.tight_layout()
    figure.savefig(FIGURE, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="samples per W2 (default 5000)")
    parser.add_argument("--repeats", type=int, default=3, help="W2 repetitions (default 3)")
    parser.add_argument("--n-test", type=int, default=2000, help="test points for the bound and the NLL")
    args = parser.parse_args()

    sweep_table, curves = exact_score_sweep(args)
    plot(curves)
    trained_rows, train_rows, nll_rows = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for dataset in DATASETS:
            run, seconds = train_default(dataset, Path(root))
            train_rows.append([dataset, run.config.optim.steps, f"{seconds:.1f}"])
            trained_rows += trained_quality(run, dataset, args)
            nll_rows.append(bound_and_nll(run, dataset, args.n_test))
            print(nll_rows[-1], flush=True)

    body = f"""
### 1. Sampler error with the exact score

A 3-component 2-D Gaussian mixture, its exact score turned into ε; linear β schedule, T = {TIMESTEPS}.
Fewer steps mean a respaced chain (DDPM), a subsequence (DDIM, η = 0), or Heun's method on that
many noise levels (ODE). W2 at N = {args.n}, R = {args.repeats}; 1.0 is the floor of data against an i.i.d. draw of the same size (`sl.metrics.w2_ratio`).

{sweep_table}

![W2 ratio against steps](benchmarks/{FIGURE.name})

### 2. DDPM trained with the default config

`scorelab train --dataset … --model ddpm`: the VP process, objective eps and sampler ddpm (implied by
`--model ddpm`) and every other setting at its default (3000 steps, batch 2048, lr 1e-2 with cosine decay, EMA 0.995, linear
schedule, T = 1000).

{markdown_table(["dataset", "train steps", "train seconds"], train_rows)}

{markdown_table(["dataset", "sampler", "steps", *RATIO_HEADER], trained_rows)}

### 3. Variational bound against the ODE NLL (nats per sample, {args.n_test} held-out points)

Mean ± standard error; "spread" is the per-sample standard deviation. The bound (σ_t² = β_t,
continuous Gaussian decoder) bounds −log p of the *stochastic chain*; the ODE NLL is exact for the
*deterministic flow*. They are two different models built from the same score, so the bound
need not exceed the ODE NLL. With the exact score both equal the data's NLL (tests); with a
learned score, errors enter the two differently: the bound pays for ε errors at every step
(KL terms, weighted by β_t²/(σ_t² α_t (1 − ᾱ_t))), while the ODE NLL changes only through the
flow's divergence.

{markdown_table(["dataset", "bound", "spread", "ODE NLL", "spread", "bound − NLL", "seconds (bound / NLL)"],
                nll_rows)}
"""
    write_section("diffusion", "Diffusion: DDPM, DDIM and the probability-flow ODE", body)


if __name__ == "__main__":
    main()
