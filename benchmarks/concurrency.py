"""Runs that share the cores: two trainings started together against the same two one after the other.

    python benchmarks/concurrency.py [--dataset moons] [--steps N] [--suite]

Each row trains two default runs (``scorelab train --dataset moons``, in fresh processes) with one
choice of ``--threads``: one after the other, then both started together. The ratio of the two wall
times is the row's verdict: below 1 the two together used the cores better than one at a time; far
above 1 their threads spun against each other. ``auto`` is the default (:mod:`scorelab.core.threads`);
``2`` is every process taking both cores, as PyTorch does by itself; ``1`` is one core each.

First, the rule's threshold: one training step of the 2-D default's MLP at several widths and batch
sizes, on one thread and on two, with nothing else running, beside the step's work as
:func:`scorelab.core.threads.step_work` counts it (a second thread pays above ``SMALL_WORK``).

With ``--suite``, also the fast test loop (``pytest -m "not slow"``) on one worker and on two
(``-n 2``, one thread each, as the README's test command runs the suite). Writes the ``concurrency``
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from report import (  # benchmarks/report.py, beside this script
    markdown_table,
    median_seconds,
    write_section,
)

import scorelab as sl
from scorelab.core.threads import SMALL_WORK, step_work
from scorelab.models import build_model
from scorelab.objectives import OBJECTIVES, LossContext
from scorelab.runs.config import build_process

ROOT = Path(__file__).resolve().parent.parent
# (hidden width, batch size) of the MLP for the threshold rows, from toy to the 2-D default and past it.
SIZES = [(32, 64), (64, 256), (64, 512), (128, 256), (64, 1024), (128, 512), (128, 2048), (256, 2048)]


def step_seconds(hidden: int, batch: int, threads: int, repeats: int = 15) -> tuple[float, float]:
    """The work and the median seconds of one training step of the 2-D default (moons) at ``hidden`` and
    ``batch`` on ``threads`` threads."""
    config = sl.Config(dataset="moons", hidden=hidden, batch_size=batch)
    process = build_process(config)
    model = build_model(config.model.name, config.model.settings, shape=(2,), process=process, sigma_data=0.5, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 2, generator=generator)
    objective = OBJECTIVES[config.objective.name]

    def step() -> None:
        loss = objective.loss(model, x, None, process, config.objective.settings, generator, LossContext(1, 100, None))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    torch.set_num_threads(threads)
    return step_work(model, batch, (2,)), median_seconds(step, repeats, warmups=3)


def threshold_rows() -> list[list]:
    rows = []
    for hidden, batch in SIZES:
        work, one = step_seconds(hidden, batch, 1)
        _, two = step_seconds(hidden, batch, 2)
        rows.append([hidden, batch, f"{work:.1e}", "yes" if work >= SMALL_WORK else "no", f"{one * 1e3:.2f}",
                     f"{two * 1e3:.2f}", f"**{one / two:.2f}**"])
        print(rows[-1], flush=True)
    return rows


def train_command(out: Path, dataset: str, steps: int | None, threads: str) -> list[str]:
    command = [sys.executable, "-m", "scorelab", "train", "--dataset", dataset, "--out", str(out), "--no-progress",
               "--threads", threads]
    return command + (["--steps", str(steps)] if steps else [])


def environment() -> dict:
    """This environment without OMP_NUM_THREADS, which would fix every run's threads."""
    return {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}


def wall(commands: list[list[str]], together: bool) -> float:
    """Seconds for ``commands``, started together or one after the other; each must succeed."""
    begin = time.perf_counter()
    if together:
        processes = [subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL) for command in commands]
        codes = [process.wait() for process in processes]
    else:
        codes = [subprocess.run(command, check=False, env=environment(), stdout=subprocess.DEVNULL).returncode
                 for command in commands]
    if any(codes):
        raise SystemExit(f"a run failed: {codes}")
    return time.perf_counter() - begin


def training_rows(dataset: str, steps: int | None, choices: list[str]) -> list[list]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for threads in choices:
            times = {}
            for together in (False, True):
                outs = [Path(scratch) / f"{threads}-{together}-{i}" for i in range(2)]
                times[together] = wall([train_command(out, dataset, steps, threads) for out in outs], together)
            rows.append([f"two `scorelab train --dataset {dataset}`", f"`--threads {threads}`",
                         f"{times[False]:.1f}", f"{times[True]:.1f}", f"**{times[True] / times[False]:.2f}**"])
            print(rows[-1], flush=True)
    return rows


def suite_row() -> list:
    command = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]
    times = {}
    for workers in ("0", "2"):
        begin = time.perf_counter()
        subprocess.run([*command, "-n", workers], cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
        times[workers] = time.perf_counter() - begin
    return ["`pytest -m \"not slow\"`", "one worker / `-n 2`, one thread each", f"{times['0']:.1f}",
            f"{times['2']:.1f}", f"**{times['2'] / times['0']:.2f}**"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="moons")
    parser.add_argument("--steps", type=int, help="training steps (default: the data set's default)")
    parser.add_argument("--threads", nargs="+", default=["auto", "2", "1"], help="the --threads values to compare")
    parser.add_argument("--suite", action="store_true", help="also time the fast test loop on one and two workers")
    args = parser.parse_args()
    threshold = markdown_table(["hidden", "batch", "work (step_work)", "above SMALL_WORK", "1 thread ms",
                                "2 threads ms", "speed-up of the second thread"], threshold_rows())
    rows = training_rows(args.dataset, args.steps, args.threads)

    def write(rows: list[list]) -> None:
        table = markdown_table(["what", "threads", "one after the other s", "together s", "together / one by one"],
                               rows)
        body = ("`python benchmarks/concurrency.py`: each row starts fresh processes on this machine with nothing "
                "else running; wall seconds for both jobs, one after the other and started together (target: "
                "together ≤ 1.2× one after the other).\n\n" + table + "\n\nThe rule's threshold: one training step "
                f"of the 2-D default's MLP (moons), median of 15, alone on the machine; `SMALL_WORK` = "
                f"{SMALL_WORK:.0e}.\n\n" + threshold)
        write_section("concurrency", "Concurrency: runs that share the cores", body)

    write(rows)  # kept should the suite fail
    if args.suite:
        write([*rows, suite_row()])


if __name__ == "__main__":
    main()
