"""Scaling out: training steps per second and sampling throughput on 1 and 2 processes of this machine.

    python benchmarks/scaling.py [--repeats 3]

For each model size (the 2-D default NCSN, the digits U-Net, WaveGrad at its default width on the
``tones`` set), ``scorelab train`` runs as one process with every core, one process with one thread,
and two data-parallel processes of one thread each (``--nproc 2``, gloo) with the same global batch.
Steps per second come from the run's own log (the seconds between its first and last rows), so
start-up is left out. Sampling throughput is that of ``scorelab sample`` (2-D and digits; one process
against ``torchrun --nproc-per-node 2``), start-up taken out by subtracting a run of 16 samples. Then the time of one gloo all-reduce of each
model's gradient, the part of a DDP step that one process does not have. Medians over ``--repeats``
runs taken in turns. Writes the ``scaling`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import markdown_table, write_section  # benchmarks/report.py, beside this script

MODELS = {  # name: (train flags, steps, log_every, sample flags or None)
    "2-D NCSN (swiss_roll, batch 256)": (["--dataset", "swiss_roll", "--batch-size", "256"], 600, 100,
                                         ["--n", "5000"]),
    "digits U-Net (batch 64)": (["--dataset", "digits", "--batch-size", "64"], 30, 5, ["--n", "128", "--sample-steps", "20"]),
    "WaveGrad, width 1/8 (tones, batch 16)": (["--dataset", "tones", "--model", "wavegrad", "--batch-size", "16"],
                                              16, 4, None),
}
CORES = os.cpu_count() or 1
LAYOUTS = {  # name: (processes, threads per process)
    f"1 process × {CORES} threads": (1, CORES),
    "1 process × 1 thread": (1, 1),
    "2 processes × 1 thread (DDP, gloo)": (2, 1),
}


def run(command: list[str], threads: int) -> float:
    """Run ``command`` with ``threads`` OpenMP threads; its wall seconds."""
    begin = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - begin


def steps_per_second(run_dir: Path) -> float:
    with open(run_dir / "train_log.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["loss"]]
    return (int(rows[-1]["step"]) - int(rows[0]["step"])) / (float(rows[-1]["seconds"]) - float(rows[0]["seconds"]))


def scorelab(*argv: str, processes: int) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "scorelab", *argv]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "scorelab", "--", *argv]


def probe_all_reduce(numbers: int) -> None:
    """Under torchrun: the median milliseconds of an all-reduce of ``numbers`` float32s, printed by rank 0."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    tensor, times = torch.zeros(numbers), []
    for _ in range(200):
        begin = time.perf_counter()
        dist.all_reduce(tensor)
        times.append(time.perf_counter() - begin)
    if dist.get_rank() == 0:
        print(f"{1000 * statistics.median(times[20:]):.3f}")
    dist.destroy_process_group()


def all_reduce_milliseconds(numbers: int) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
               "--probe", str(numbers)]
    result = subprocess.run(command, check=True, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    return float(result.stdout.split()[-1])


def parameters(run_dir: Path) -> int:
    from scorelab.runs.checkpoint import load_checkpoint

    return load_checkpoint(run_dir).parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)  # the all-reduce probe's own ranks
    args = parser.parse_args()
    if args.probe is not None:
        probe_all_reduce(args.probe)
        return
    sizes: dict[str, int] = {}
    train_rates: dict[tuple[str, str], list[float]] = {}
    sample_rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for model_index, (model, (flags, steps, log_every, sample_flags)) in enumerate(MODELS.items()):
                for layout_index, (layout, (processes, threads)) in enumerate(LAYOUTS.items()):
                    run_dir = Path(scratch) / f"{model_index}_{layout_index}_{repeat}"
                    run(scorelab("train", "--out", str(run_dir), *flags, "--steps", str(steps), "--log-every",
                                 str(log_every), "--checkpoint-every", str(steps), "--device", "cpu",
                                 "--no-progress", processes=processes), threads)
                    train_rates.setdefault((model, layout), []).append(steps_per_second(run_dir))
                    sizes[model] = parameters(run_dir)
                    if sample_flags is None or threads != 1:
                        continue
                    out = str(run_dir / "s.npy")
                    small = run(scorelab("sample", str(run_dir), *sample_flags, "--n", "16", "--out", out,
                                         processes=processes), threads)
                    full = run(scorelab("sample", str(run_dir), *sample_flags, "--out", out,
                                        processes=processes), threads)
                    n = int(sample_flags[sample_flags.index("--n") + 1])
                    sample_rates.setdefault((model, layout), []).append((n - 16) / (full - small))
    reduce_rows = [[model, f"{sizes[model]:,}", f"{all_reduce_milliseconds(sizes[model]):.2f}",
                    f"{1000 / statistics.median(train_rates[(model, '2 processes × 1 thread (DDP, gloo)')]):.1f}"]
                   for model in MODELS]
    rows = []
    for model in MODELS:
        base = statistics.median(train_rates[(model, "1 process × 1 thread")])
        for layout in LAYOUTS:
            rate = statistics.median(train_rates[(model, layout)])
            sampled = sample_rates.get((model, layout))
            rows.append([model, layout, f"{rate:.1f}", f"{rate / base:.2f}",
                         f"{statistics.median(sampled):.0f}" if sampled else "–"])
    body = ("To be run with nothing else on the machine (check `uptime` before and after). "
            f"CPU only ({CORES} cores; no GPU was lent to this task). Steps per second of `scorelab train` from its "
            "own log (start-up left out), with the global batch fixed, so two processes each compute half of "
            "it; the ratio is to one process of one thread in the same run. Samples per second of "
            "`scorelab sample` with one thread per process, start-up taken out by subtracting a run of 16 "
            f"samples. Medians of {args.repeats} runs taken in turns.\n\n"
            + markdown_table(["model", "layout", "train steps/s", "/ 1 process × 1 thread", "samples/s"], rows)
            + "\n\nWhere the time of two processes goes: one gloo all-reduce of the model's gradient (float32, "
            "between the 2 processes of this machine, median of 180), beside the whole DDP step it is part of. "
            "Each step all-reduces the gradient once and the loss once.\n\n"
            + markdown_table(["model", "parameters", "all-reduce ms", "DDP step ms"], reduce_rows))
    write_section("scaling", "Scaling out: 1 and 2 processes on the CPU", body)


if __name__ == "__main__":
    main()
