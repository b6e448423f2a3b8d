"""The benchmark scripts' access to BENCHMARKS.md: ``scorelab.app.benchmarks_md`` bound to this repository's file."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from scorelab.app import benchmarks_md as report
from scorelab.app.benchmarks_md import markdown_table

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
# Run directories the benchmarks train and reuse: outside the source tree, so that nothing they write is
# committed by accident.
RUNS = Path(os.environ.get("SCORELAB_BENCH_RUNS", Path.home() / ".cache" / "scorelab" / "bench-runs"))

__all__ = ["BENCHMARKS_MD", "RUNS", "distilled", "markdown_table", "median_seconds", "write_section"]


def write_section(name: str, title: str, body: str) -> None:
    """Rewrite the section ``name`` of the repository's BENCHMARKS.md and print it."""
    print(report.write_section(BENCHMARKS_MD, name, title, body))


def median_seconds(work: Callable[[], object], repeats: int, warmups: int = 1) -> float:
    """The median wall seconds of ``repeats`` calls of ``work`` after ``warmups`` untimed ones (the allocator,
    oneDNN's choice of kernels and the cores' clock settle in those)."""
    for _ in range(warmups):
        work()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def distilled(teacher: str | Path, directory: Path):
    """The consistency model in ``directory``, distilled from ``teacher`` with ``scorelab distill``'s defaults; distilled
    (again) unless a finished one is there, so that a rerun measures rather than retrains."""
    from scorelab.runs.distill import distill
    from scorelab.runs.trained import TrainedRun

    if (directory / "model.safetensors").exists():
        run = TrainedRun.load(directory, "cpu")
        if run.step >= run.config.optim.steps:
            return run
    distill(teacher, directory, overwrite=True, progress=False)
    return TrainedRun.load(directory, "cpu")
