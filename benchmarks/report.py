"""The benchmark scripts' access to BENCHMARKS.md: ``scorelab.app.benchmarks_md`` bound to this repository's file."""

from __future__ import annotations

import os
from pathlib import Path

from scorelab.app import benchmarks_md as report
from scorelab.app.benchmarks_md import markdown_table

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
# Run directories the benchmarks train and reuse: outside the source tree, so that nothing they write is
# committed by accident.
RUNS = Path(os.environ.get("SCORELAB_BENCH_RUNS", Path.home() / ".cache" / "scorelab" / "bench-runs"))

__all__ = ["BENCHMARKS_MD", "RUNS", "markdown_table", "write_section"]


def write_section(name: str, title: str, body: str) -> None:
    """Rewrite the section ``name`` of the repository's BENCHMARKS.md and print it."""
    print(report.write_section(BENCHMARKS_MD, name, title, body))
