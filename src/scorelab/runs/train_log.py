"""``train_log.csv``: a row per ``log_every`` steps (step, mean loss since the last row, elapsed seconds), and a
note on the row of a resume that changed settings. The checkpoint carries the log's text up to its step, so the
file beside it can always be rewritten from it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from scorelab.runs.checkpoint import Checkpoint

# "note": a resumed run's changed settings, on a row of its own at the step it resumed from.
LOG_COLUMNS = ("step", "loss", "seconds", "note")


def logged_rows(checkpoint: Checkpoint, log_path: Path) -> list[dict]:
    """The log rows up to the checkpoint's step: those it carries, or (older checkpoints) the log file's."""
    if checkpoint.train_log is not None:
        return list(csv.DictReader(io.StringIO(checkpoint.train_log)))
    if not log_path.is_file():
        return []
    with log_path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= checkpoint.step]


def log_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
