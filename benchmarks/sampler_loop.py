"""The sampler loop's cost against the network's, and sampling throughput, on trained 2-D runs.

    python benchmarks/sampler_loop.py [--runs DIR] [--batch 5000] [--repeats 5]
    python benchmarks/sampler_loop.py --images RUNS --batch 256 --repeats 3

For the trained default runs of ``sampler_table.py`` (swiss_roll; NCSN and DDPM) and each
sampler: the time spent inside the network's calls during a sampling call (the same network on
the same batches the sampler feeds it; the cost of a forward pass depends on its inputs, the
Fourier features' sines of large numbers costing more) and the whole call's time, medians over
the repetitions. Their ratio is the loop's overhead: 1.0 means the sampler costs exactly its
network evaluations. The last column is the throughput, samples per second. Writes the ``sampler_loop`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from scorelab.run import TrainedRun
from scorelab.sampling import SAMPLERS

from report import markdown_table, write_section  # benchmarks/report.py, beside this script

# Each sampler at about 50 evaluations, and each family's default as the run has it.
SETTINGS = {"ald": {"sample_steps": 49, "n_steps_each": 1}, "pc": {"sample_steps": 25},
            "ddpm": {"sample_steps": 50}, "ddim": {"sample_steps": 50}, "ode": {"sample_steps": 25},
            "heun": {"sample_steps": 25}, "stochastic_heun": {"sample_steps": 25},
            "dpmpp_2m": {"sample_steps": 50}}


class TimedScore:
    """The model, timed: the wall seconds spent inside its calls, and their number."""

    def __init__(self, model) -> None:
        self.model, self.seconds, self.count = model, 0.0, 0

    def __call__(self, x, sigma, cond=None):
        begin = time.perf_counter()
        out = self.model(x, sigma)
        self.seconds += time.perf_counter() - begin
        self.count += 1
        return out


def rows_for(run: TrainedRun, family: str, batch: int, repeats: int) -> list[list]:
    start = run.process.prior((batch, *run.shape), generator=torch.Generator().manual_seed(0))
    rows = []
    cases = [*SETTINGS.items(), (f"{run.config.sampler.name} (default)", {})]
    for label, options in cases:
        name = label.split()[0]
        _, settings = run.sampler_settings(name, **options)
        part = SAMPLERS[name]
        measured = []  # (whole call, time in the network, evaluations)
        for _ in range(repeats + 1):  # the first is a warm-up: allocator and thread pool
            timed = TimedScore(run.model)
            begin = time.perf_counter()
            with torch.inference_mode():  # as TrainedRun.sample
                part.sample(timed, run.process, settings, start, torch.Generator().manual_seed(1), None, None)
            measured.append((time.perf_counter() - begin, timed.seconds, timed.count))
        whole = statistics.median(m[0] for m in measured[1:])
        network = statistics.median(m[1] for m in measured[1:])
        evaluations = measured[-1][2]
        rows.append([family, label, evaluations, f"{network / evaluations * 1e3:.2f}",
                     f"{whole / evaluations * 1e3:.2f}", f"**{whole / network:.3f}**", f"{batch / whole:,.0f}"])
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/sampler_table_runs"))
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=Path, metavar="RUNS",
                        help="instead: the digits U-Net runs of benchmarks/images.py in RUNS (digits_ncsn, digits_ddpm)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    for family in ("ncsn", "ddpm"):
        run_dir = args.images / f"digits_{family}" if args.images else args.runs / f"{family}-swiss_roll"
        rows += rows_for(TrainedRun.load(run_dir, "cpu"), family, args.batch, args.repeats)
    network = "`unet` on digits" if args.images else "`noise_conditional`, the 2-D default"
    body = (f"Batch {args.batch} on CPU, medians over {args.repeats} calls after one warm-up. `forward ms`: the "
            f"time inside the run's network ({network}, under `torch.inference_mode` as in `TrainedRun.sample`) per "
            "evaluation, measured during the sampling call; `ms / NFE`: the whole call per evaluation; their ratio "
            "is the loop's overhead (target ≤ 1.10). Throughput counts the whole call.\n\n"
            + markdown_table(["run", "sampler", "NFE", "forward ms", "ms / NFE", "overhead", "samples / s"], rows))
    if args.images:
        write_section("sampler_loop_images", "Sampler loop overhead and throughput (digits U-Net, CPU)", body)
    else:
        write_section("sampler_loop", "Sampler loop overhead and throughput (2-D, CPU)", body)


if __name__ == "__main__":
    main()
