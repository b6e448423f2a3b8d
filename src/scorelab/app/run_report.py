"""``scorelab report R``: one self-contained HTML page of a run, ``R/report.html``.

The page holds the run's parts, its provenance (scorelab and torch versions, the date, the
commit when scorelab runs from a git checkout), the training curve, the metrics in words beside
their floors (from ``metrics.json``, which ``scorelab evaluate`` writes), every figure of the run's
modality that ``scorelab plot`` drew, with a sentence on what it shows, the audio examples of a
waveform run, and the resolved ``config.toml``. Figures and audio are embedded as data URIs, so
the file can be mailed or opened anywhere; the page loads nothing from outside itself.

:func:`lacking` says what a page would miss that ``evaluate`` and ``plot`` make; ``scorelab report``
makes it first unless told ``--no-compute``.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
from pathlib import Path

from scorelab.core.atomic import write_atomic
from scorelab.evaluation.audio import format_real_time_factor
from scorelab.runs.checkpoint import load_checkpoint

METRICS = "metrics.json"
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
    return str(value)


# --- metrics.json in words -------------------------------------------------------------------
# Each known group of what `scorelab evaluate` writes (evaluation/evaluate.py: w2 and nll of a 2-D run,
# images, audio) becomes rows of (label, text); a group whose keys are not the expected ones, and every
# key outside the groups, is shown under its dotted name.

def _g(value: float) -> str:
    return f"{value:.3g}"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _model_floor_ratio(row: dict) -> str:
    ratio = "—, the floor is not positive" if row["ratio"] is None else f"{row['ratio']:.2f}"
    return f"{_g(row['model'])}, floor {_g(row['floor'])}, ratio {ratio} (means over {_count(row['repeats'], 'block')})"


def _w2_rows(w2: dict) -> list[tuple[str, str]]:
    return [("W2 to the data", f"{_g(w2['model_mean'])} ± {_g(w2['model_std'])}, floor {_g(w2['floor_mean'])} ± "
                               f"{_g(w2['floor_std'])}, ratio {w2['ratio']:.2f}"),
            ("", f"means ± std over {_count(w2['repeats'], 'repetition')} (the floor, fresh data against fresh "
                 f"data of the same size, over {w2['floor_repeats']:,}); n = {w2['n']:,} points per set")]


def _nll_rows(nll: dict) -> list[tuple[str, str]]:
    rows = [("test NLL, probability-flow ODE", f"{nll['ode_nll']:.4f} ± {nll['ode_nll_se']:.4f} nats "
                                               f"(n = {nll['n']:,} test points)"),
            ("variational bound, ancestral chain", f"{nll['bound']:.4f} ± {nll['bound_se']:.4f} nats")]
    if nll["data_nll"] is not None:
        rows.append(("the data's own NLL", f"{nll['data_nll']:.4f} nats"))
    return rows


def _image_rows(images: dict) -> list[tuple[str, str]]:
    rows = [("image samples", f"{images['n']:,}")]
    if "fd" in images:
        rows += [("feature classifier", f"test accuracy {images['classifier_test_accuracy']:.1%}; samples compared "
                                        f"with the test split in blocks of {images['block_size']:,} images"),
                 ("Fréchet distance in its features", _model_floor_ratio(images["fd"])),
                 ("KID in its features", _model_floor_ratio(images["kid"]))]
        rows += [(name, f"{images[name]['model']:.3f}, floor {images[name]['floor']:.3f}")
                 for name in ("precision", "recall")]
        classes = images["classes"]
        rows.append(("classes", f"{classes['min_fraction']:.1%} to {classes['max_fraction']:.1%} of the samples per "
                                f"class ({', '.join(f'{share:.0%}' for share in classes['fractions'])}); "
                                f"χ² = {classes['chi2']:.1f} (p = {classes['p_value']:.3g})"))
    copies = images["memorisation"]
    rows.append(("memorisation", f"{copies['fraction']:.1%} of the samples lie nearer a training image than 99% of "
                                 f"the test images do (distance {_g(copies['threshold'])}); median distance to the "
                                 f"training set {_g(copies['sample_median'])} for samples, "
                                 f"{_g(copies['test_median'])} for test images"))
    if "bits_per_dim" in images:
        bits = images["bits_per_dim"]
        rows.append(("bits per dimension", f"{bits['model']['mean']:.4f} ± {bits['model']['se']:.4f}; a Gaussian "
                                           f"{bits['gaussian']['mean']:.4f}, a mixture of "
                                           f"{bits['mixture_components']} {bits['mixture']['mean']:.4f} (the test "
                                           f"split, n = {bits['n']:,}, dequantised)"))
    return rows


def _audio_rows(audio: dict) -> list[tuple[str, str]]:
    rows = [("test utterances", f"{len(audio['utterances'])} ({', '.join(audio['utterances'])}), "
                                f"{audio['seconds_of_audio']:.1f} s of audio")]
    # Reports evaluated before DNSMOS was scored have no "dnsmos" in their rows.
    rows += [(row["method"], f"log-mel L1 {row['log_mel_l1']:.4f}, MR-STFT {row['mr_stft']:.4f}, "
                             + (f"DNSMOS {row['dnsmos']:.2f}, " if "dnsmos" in row else "")
                             + f"real-time factor {format_real_time_factor(row)}") for row in audio["rows"]]
    rows.append(("", "means over the utterances; DNSMOS: P.835 overall, 1–5, an estimate of a listener's rating; "
                     f"real-time factor: compute seconds per second of audio on {audio['threads']} threads"))
    return rows


METRIC_GROUPS = {"w2": _w2_rows, "nll": _nll_rows, "images": _image_rows, "audio": _audio_rows}


def metric_rows(metrics: dict, step: int | None = None) -> list[tuple[str, str]]:
    """``metrics.json`` as (label, text) rows in words: "W2 to the data" "0.051 ± 0.004, floor 0.053 ± 0.003,
    ratio 0.95"; keys outside the known groups (or a group of another shape) as (dotted key, value).
    ``step``: the checkpoint's, to say when the metrics are of an earlier one."""
    rows: list[tuple[str, str]] = []
    for key, value in metrics.items():
        if key == "step" and isinstance(value, int):
            later = f" (the checkpoint is at step {step:,}: evaluate again)" if step not in (None, value) else ""
            rows.append(("evaluated at step", f"{value:,}{later}"))
        elif key == "dataset":
            rows.append(("data set", str(value)))
        elif key in METRIC_GROUPS and isinstance(value, dict):
            try:
                rows += METRIC_GROUPS[key](value)
            except (KeyError, TypeError, ValueError):  # another shape than evaluate writes: its keys
                rows += [(name, _cell(item)) for name, item in flat_metrics(value, f"{key}.")]
        else:
            rows += [(name, _cell(item)) for name, item in flat_metrics(value, f"{key}.")]
    return rows


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


def page_figures(run_dir: Path) -> list[Path]:
    """The figures of ``scorelab plot`` in ``run_dir``, in the page's order (the training curve aside)."""
    figures = [run_dir / name for name in CAPTIONS if name != CURVE and (run_dir / name).is_file()]
    return figures + sorted(run_dir.glob("*.gif"))  # the animation, named after the sampler


def lacking(run_dir: str | Path) -> list[str]:
    """What the page of ``run_dir`` would lack that other commands make: ``"evaluation"`` without
    ``metrics.json`` (``scorelab evaluate``), ``"figures"`` without any figure of ``scorelab plot``."""
    run_dir = Path(run_dir)
    return [name for name, missing in (("evaluation", not (run_dir / METRICS).is_file()),
                                       ("figures", not page_figures(run_dir))) if missing]


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
    figures = page_figures(run_dir)
    sounds = sorted((run_dir / EXAMPLES_DIR).glob("*.wav"))
    metrics_path = run_dir / METRICS
    if metrics_path.is_file():
        rows = metric_rows(json.loads(metrics_path.read_text()), step=checkpoint.step)
        metrics = ("<table>" + "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(text)}</td></tr>"
                                       for name, text in rows) + "</table>")
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
