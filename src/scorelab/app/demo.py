"""``scorelab demo``: the seed tutorial's swiss-roll experiment done right, as one function.

Train the noise-conditional network with annealed denoising score matching, draw 5000
samples with EDM's stochastic Heun sampler, measure the W2 ratio and write every figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from scorelab.evaluation.evaluate import evaluate_run
from scorelab.metrics import RatioReport
from scorelab.runs.config import Config
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import TrainResult, train

# The demo is the seed's experiment, an NCSN (the default family on points is EDM's since issue 33), with the quick
# training settings it was first measured with (BENCHMARKS.md "demo"), which train faster than the suite-wide defaults. It samples with the default sampler, EDM's stochastic Heun with 50
# steps (99 network evaluations).
DEMO_SETTINGS = {"dataset": "swiss_roll", "model": "noise_conditional", "fourier_features": 0, "reference_size": 0, "batch_size": 512,
                 "lr": 3e-3, "lr_schedule": "constant", "sigma_max": 1.0, "n_levels": 10}
DEMO_SAMPLES = 5000


@dataclass(frozen=True)
class DemoResult:
    config: Config
    trained: TrainResult
    sample_seconds: float
    report: RatioReport
    figures: list[Path]


def run_demo(out: str | Path, device: str = "auto", *, progress: bool = False,
             phase: Callable[[str], None] = lambda message: None) -> DemoResult:
    """Train, sample (timed), evaluate and plot the demo run in ``out`` (overwritten); ``phase`` is
    told as each phase begins, so that a log without a progress bar shows where the demo is."""
    from scorelab import plots  # matplotlib loads only when figures are drawn

    config = Config(device=device, **DEMO_SETTINGS)
    phase(f"training {config.optim.steps} steps")
    trained = train(config, out, overwrite=True, progress=progress)
    run = TrainedRun.load(out, device)
    phase(f"sampling {DEMO_SAMPLES} points")
    start = time.perf_counter()
    samples = run.sample(DEMO_SAMPLES, generator=torch.Generator().manual_seed(0))
    sample_seconds = time.perf_counter() - start
    phase("evaluating and plotting")
    # The exact W2s run in POT, which releases the GIL, while matplotlib draws: one core each.
    with ThreadPoolExecutor(max_workers=1) as pool:
        evaluation = pool.submit(evaluate_run, run, n=DEMO_SAMPLES)
        figures = plots.plot_run(run, Path(out), plots.FIGURES, seed=0, samples=samples)
        report = RatioReport(**evaluation.result()["w2"])
    return DemoResult(config, trained, sample_seconds, report, figures)
