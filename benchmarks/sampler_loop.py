"""The sampler loop's cost against the network's, and sampling throughput, on trained 2-D runs.

    python benchmarks/sampler_loop.py [--runs DIR] [--batch 5000] [--repeats 5]

For the trained default runs of ``sampler_table.py`` (swiss_roll; NCSN and DDPM): the median
time of one forward pass of the network on the batch, and for each sampler the median time of
a whole sampling call divided by its counted network evaluations (NFE). Their ratio is the
loop's overhead: 1.0 means the sampler costs exactly its network evaluations. The last column
is the throughput, samples per second. Writes the ``sampler_loop`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from scorelab.run import TrainedRun
from scorelab.sampling import SAMPLERS, CountingScore
from scorelab.shapes import per_sample

from report import markdown_table, write_section  # benchmarks/report.py, beside this script

# Each sampler at about 50 evaluations, and each family's default as the run has it.
SETTINGS = {"ald": {"sample_steps": 49, "n_steps_each": 1}, "pc": {"sample_steps": 25},
            "ddpm": {"sample_steps": 50}, "ddim": {"sample_steps": 50}, "ode": {"sample_steps": 25},
            "heun": {"sample_steps": 25}, "heun churn": {"sample_steps": 25, "churn": 40.0},
            "dpmpp_2m": {"sample_steps": 50}}


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up: allocator and thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rows_for(run: TrainedRun, family: str, batch: int, repeats: int) -> list[list]:
    start = run.process.prior((batch, *run.shape), generator=torch.Generator().manual_seed(0))
    sigma = per_sample(run.process.sigma_min, start)
    with torch.no_grad():
        forward = median_seconds(lambda: run.model(start, sigma), 5 * repeats)
    rows = []
    cases = [*SETTINGS.items(), (f"{run.config.sampler.name} (default)", {})]
    for label, options in cases:
        name = label.split()[0]
        _, settings = run.sampler_settings(name, **options)
        part = SAMPLERS[name]

        def sample(score=run.model):
            with torch.no_grad():
                return part.sample(score, run.process, settings, start, torch.Generator().manual_seed(1), None, None)

        counted = CountingScore(run.model)
        sample(counted)
        seconds = median_seconds(sample, repeats)
        per_evaluation = seconds / counted.count
        rows.append([family, label, counted.count, f"{forward * 1e3:.2f}", f"{per_evaluation * 1e3:.2f}",
                     f"**{per_evaluation / forward:.3f}**", f"{batch / seconds:,.0f}"])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/sampler_table_runs"))
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for family in ("ncsn", "ddpm"):
        run = TrainedRun.load(args.runs / f"{family}-swiss_roll", "cpu")
        rows += rows_for(run, family, args.batch, args.repeats)
    body = (f"Batch {args.batch} on CPU, medians over {args.repeats} calls after one warm-up. `forward ms`: one "
            "pass of the run's network (`noise_conditional`, the 2-D default) under `torch.no_grad`; `ms / NFE`: "
            "a whole sampling call over its counted network evaluations; their ratio is the loop's overhead "
            "(target ≤ 1.10). Throughput counts the whole call.\n\n"
            + markdown_table(["run", "sampler", "NFE", "forward ms", "ms / NFE", "overhead", "samples / s"], rows))
    write_section("sampler_loop", "Sampler loop overhead and throughput (2-D, CPU)", body)


if __name__ == "__main__":
    main()
