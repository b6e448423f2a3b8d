"""``scorelab report R``: one self-contained HTML page of a run, ``R/report.html``.

The page holds the run's parts, its provenance (scorelab and torch versions, the date, the
commit when scorelab runs from a git checkout), the training curve, the metrics table with its
floors (from ``metrics.json``, which ``scorelab evaluate`` writes), every figure of the run's
modality that ``scorelab plot`` drew, with a sentence on what it shows, the audio examples of a
waveform run, and the resolved ``config.toml``. Figures and audio are embedded as data URIs, so
the file can be mailed or opened anywhere; the page loads nothing from outside itself.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
from pathlib import Path

from scorelab.core.atomic import write_atomic
from scorelab.runs.checkpoint import load_checkpoint

MEDIA_TYPES = {".png": "image/png", ".gif": "image/gif", ".wav": "audio/wav"}
CURVE = "training_curve.png"
# What each figure of `scorelab plot` shows, in the order the page gives them.
CAPTIONS = {
    CURVE: "The training loss, the mean over each logged interval, against the step.",
    "data.png": "The training data.",
    "score_field.png": "The learned score at up to ten of the training noise levels, one σ per panel (named "
                       "above it), over the data; arrow lengths are log(1 + ‖s‖), scaled per panel.",
    "samples.png": "Samples of the run's sampler beside the data.",
    "trajectories.png": "The paths of a few points through the sampler, one state per noise level, from their "
                        "start in the prior to their end, over the score field at the smallest σ.",
    "neighbours.png": "Each sample beside its nearest training image: a sample that repeats its neighbour is "
                      "memorised.",
    "classes.png": "The share of each class among the samples, by the feature classifier.",
    "spectrograms.png": "Log-mel spectrograms of a test utterance and of its reconstructions.",
    "waveforms.png": "A stretch of the same waveforms.",
}


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI of its media type (by suffix: PNG, GIF or WAV)."""
    return f"data:{MEDIA_TYPES[path.suffix]};base64,{base64.b64encode(path.read_bytes()).decode()}"


def flat_metrics(value: object, prefix: str = "") -> list[tuple[str, object]]:
    """``metrics.json`` as (dotted name, value) rows, nested tables and lists unrolled."""
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in flat_metrics(item, f"{prefix}{key}.")]
    if isinstance(value, list) and not all(isinstance(item, (int, float)) for item in value):
        return [row for index, item in enumerate(value) for row in flat_metrics(item, f"{prefix}{index}.")]
    return [(prefix.rstrip("."), value)]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value)
    return html.escape(str(value))


def _training_curve(run_dir: Path) -> Path | None:
    log = run_dir / "train_log.csv"
    if not log.is_file():
        return None
    with log.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("loss")]
    if not rows:
        return None
    from scorelab.plots import plot_training_curve

    return plot_training_curve([int(row["step"]) for row in rows], [float(row["loss"]) for row in rows],
                               run_dir / CURVE)


def _figure(path: Path) -> str:
    caption = CAPTIONS.get(path.name, "")
    return (f'<figure><img alt="{html.escape(path.name)}" src="{data_uri(path)}">'
            f"<figcaption><b>{html.escape(path.name)}</b> {html.escape(caption)}</figcaption></figure>")


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report.html`` (see the module's docstring) and return its path; the run must hold a
    checkpoint (:class:`~scorelab.core.errors.CheckpointError` otherwise)."""
    import torch

    from scorelab import __version__
    from scorelab.app.benchmarks_md import git_commit
    from scorelab.evaluation.audio import EXAMPLES_DIR

    run_dir = Path(run_dir)
    checkpoint = load_checkpoint(run_dir)
    config = checkpoint.config
    parts = ", ".join(f"{section} <b>{html.escape(choice.name)}</b>" for section, choice in config.choices.items())
    provenance = [("run directory", run_dir.resolve()), ("trained steps", checkpoint.step),
                  ("parameters", f"{checkpoint.parameters:,}" if checkpoint.parameters is not None else "unknown"),
                  ("scorelab", __version__), ("torch", torch.__version__),
                  ("report written", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
                  ("commit", git_commit(Path(__file__).resolve().parent) or "unknown (not run from a git checkout)")]
    curve = _training_curve(run_dir)
    figures = [run_dir / name for name in CAPTIONS if name != CURVE and (run_dir / name).is_file()]
    figures += sorted(path for path in run_dir.glob("*.gif"))  # the animation, named after the sampler
    sounds = sorted((run_dir / EXAMPLES_DIR).glob("*.wav"))
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file():
        rows = flat_metrics(json.loads(metrics_path.read_text()))
        metrics = ("<table>" + "".join(f"<tr><th>{html.escape(name)}</th><td>{_cell(value)}</td></tr>"
                                       for name, value in rows) + "</table>")
    else:
        metrics = f"<p>No metrics yet: <code>scorelab evaluate {html.escape(str(run_dir))}</code> writes them.</p>"
    drawn = "".join(_figure(path) for path in figures) or (
        f"<p>No figures yet: <code>scorelab plot {html.escape(str(run_dir))}</code> draws them.</p>")
    audio = "".join(f'<tr><th>{html.escape(path.stem)}</th><td><audio controls preload="metadata" '
                    f'src="{data_uri(path)}"></audio></td></tr>' for path in sounds)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>scorelab report: {html.escape(run_dir.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 64em; margin: 2em auto; padding: 0 1em; color: #222; }}
th {{ text-align: left; padding-right: 1.5em; font-weight: 600; }} td, th {{ vertical-align: top; }}
img {{ max-width: 100%; }} figure {{ margin: 1.5em 0; }} figcaption {{ color: #555; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head>
<body>
<h1>scorelab report: {html.escape(run_dir.name)}</h1>
<p>{parts}.</p>
<h2>Provenance</h2>
<table>{"".join(f"<tr><th>{name}</th><td>{html.escape(str(value))}</td></tr>" for name, value in provenance)}</table>
<h2>Training</h2>
{_figure(curve) if curve is not None else "<p>No training log.</p>"}
<h2>Metrics</h2>
{metrics}
<h2>Figures</h2>
{drawn}
{f"<h2>Audio</h2><table>{audio}</table>" if sounds else ""}
<h2>Configuration</h2>
<pre>{html.escape(config.to_toml())}</pre>
</body></html>
"""
    path = run_dir / "report.html"
    write_atomic(path, page.encode())
    return path
