"""Figures of a waveform run: reference and vocoded spectrograms side by side, waveform details, and a page to listen.

They are drawn from the listening examples in ``RUN_DIR/audio`` (the first test utterance, its
reference and each method's reconstruction), which ``scorelab evaluate`` writes; where there are
none yet, they are vocoded here with WaveGrad at its searched few-step schedules and Griffin-Lim.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from scorelab.core.atomic import write_atomic
from scorelab.data.audio import read_wav
from scorelab.data.mel import MelSettings, log_mel
from scorelab.evaluation.audio import EXAMPLES_DIR, methods, run_start, test_utterances
from scorelab.evaluation.vocoding import write_wav
from scorelab.metrics.audio import log_mel_distance
from scorelab.metrics.speech_quality import dnsmos
from scorelab.plots.common import save_figure
from scorelab.runs.trained import TrainedRun
from scorelab.sampling.settings import WAVEGRAD_STARTS

AUDIO_FIGURES = ("spectrograms", "waveforms", "listen")
MEL = MelSettings()
# Without an evaluation's examples: the few-step schedules, not the 1000-step chain (minutes per utterance on CPUs).
PLOT_STEPS = (6, 25, 50)
DETAIL_SECONDS = 0.03


def listening_examples(run: TrainedRun, seed: int = 1) -> dict[str, torch.Tensor]:
    """{label: waveform} of the first test utterance: ``reference`` and every method in ``RUN_DIR/audio``,
    vocoding the few-step ones first where the directory has none."""
    folder = Path(run.run_dir) / EXAMPLES_DIR
    if not (folder / "reference.wav").is_file():
        waves, _ = test_utterances(run, 1)
        write_wav(folder / "reference.wav", waves[0])
        for method in methods(PLOT_STEPS, starts=(run_start(run),)):
            write_wav(folder / method.file_name, method.run(run, waves[0], seed).wave)
    found = {"reference": read_wav(folder / "reference.wav")}
    for method in methods(starts=WAVEGRAD_STARTS):
        if (folder / method.file_name).is_file():
            found[method.label] = read_wav(folder / method.file_name)
    return found


def example_scores(examples: dict[str, torch.Tensor]) -> dict[str, str]:
    """{label: "log-mel L1 …, DNSMOS …"} of each example against the reference (the reference's DNSMOS alone)."""
    reference = examples["reference"]
    scores = {}
    for label, wave in examples.items():
        quality = f"DNSMOS {dnsmos(wave, MEL.sample_rate)['ovrl']:.2f}"
        if label == "reference":
            scores[label] = quality
            continue
        length = min(len(wave), len(reference)) // MEL.hop * MEL.hop
        scores[label] = f"log-mel L1 {log_mel_distance(wave[:length], reference[:length]).item():.3f}, {quality}"
    return scores


def plot_spectrograms(examples: dict[str, torch.Tensor], path: Path, title: str,
                      scores: dict[str, str] | None = None) -> Path:
    """The log-mel spectrogram of each example, one panel each on one colour scale, the reference first; each
    panel's title gives the example's ``scores`` where there are some."""
    mels = {label: log_mel(wave[:len(wave) // MEL.hop * MEL.hop]).numpy() for label, wave in examples.items()}
    low, high = min(m.min() for m in mels.values()), max(m.max() for m in mels.values())
    figure, axes = plt.subplots(len(mels), 1, figsize=(8, 1.6 * len(mels) + 0.6), sharex=True, squeeze=False)
    for axis, (label, mel) in zip(axes[:, 0], mels.items()):
        seconds = mel.shape[1] * MEL.hop / MEL.sample_rate
        image = axis.imshow(mel, origin="lower", aspect="auto", vmin=max(low, high - 12), vmax=high,
                            extent=(0, seconds, 0, MEL.n_mels), cmap="magma")
        axis.set_ylabel("mel band")
        axis.set_title(label + (f" ({scores[label]})" if scores else ""), fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    figure.colorbar(image, ax=axes[:, 0].tolist(), label="log magnitude (natural log)", shrink=0.8)
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_waveforms(examples: dict[str, torch.Tensor], path: Path, title: str) -> Path:
    """A 30 ms detail of each example at the reference's loudest moment, over the reference in grey."""
    reference = examples["reference"].numpy()
    width = round(DETAIL_SECONDS * MEL.sample_rate)
    energy = np.convolve(reference**2, np.ones(width), mode="valid")
    start = int(np.argmax(energy))
    t = (start + np.arange(width)) / MEL.sample_rate * 1000
    others = {label: wave for label, wave in examples.items() if label != "reference"}
    figure, axes = plt.subplots(len(others), 1, figsize=(8, 1.4 * len(others) + 0.6), sharex=True, squeeze=False)
    for axis, (label, wave) in zip(axes[:, 0], others.items()):
        axis.plot(t, reference[start:start + width], color="0.7", linewidth=1.5, label="reference")
        axis.plot(t, wave.numpy()[start:start + width], color="tab:blue", linewidth=0.8, label=label)
        axis.set_title(label, fontsize=9, loc="left")
        axis.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("milliseconds into the utterance")
    figure.suptitle(title)
    return save_figure(figure, path)


def _data_uri(path: Path, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def write_listening_page(run: TrainedRun, examples: dict[str, torch.Tensor], path: Path,
                         spectrograms: Path | None, scores: dict[str, str]) -> Path:
    """A self-contained HTML page: an ``<audio>`` player per example (the WAVs embedded) beside its scores, and
    the spectrograms."""
    folder = Path(run.run_dir) / EXAMPLES_DIR
    files = {"reference": folder / "reference.wav"}
    files |= {method.label: folder / method.file_name for method in methods(starts=WAVEGRAD_STARTS)
              if method.label in examples}
    rows = "\n".join(f"<tr><th>{html.escape(label)}</th><td><audio controls preload=\"auto\" "
                     f"src=\"{_data_uri(file, 'audio/wav')}\"></audio></td><td>{html.escape(scores[label])}</td></tr>"
                     for label, file in files.items())
    figure = (f"<img alt=\"log-mel spectrograms\" src=\"{_data_uri(spectrograms, 'image/png')}\">"
              if spectrograms is not None else "")
    _, names = test_utterances(run, 1)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scorelab: listen to {html.escape(str(run.run_dir))}</title>
<style>body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }} th {{ text-align: left;
padding-right: 1em; }} img {{ max-width: 100%; }}</style></head>
<body><h1>Listen: {html.escape(run.config.data.name)}, step {run.step}</h1>
<p>The first test utterance (&ldquo;{html.escape(names[0])}&rdquo;), never heard in training, and its
reconstructions from its log-mel spectrogram: WaveGrad at each number of refinement steps, and
Griffin-Lim at each number of iterations. Beside each: its log-mel L1 distance to the reference and
its DNSMOS P.835 overall score (1&ndash;5), an objective estimate of how a listener would rate it.</p>
<table>{rows}</table>
{figure}
</body></html>
"""
    write_atomic(path, page.encode())
    return path


def plot_audio_run(run: TrainedRun, out_dir: Path, figures: Sequence[str] = AUDIO_FIGURES, seed: int = 1) -> list[Path]:
    """Write the ``figures`` named (of :data:`AUDIO_FIGURES`) for the waveform run ``run`` into ``out_dir``."""
    examples = listening_examples(run, seed)
    title = f"{run.config.data.name}: the first test utterance and its reconstructions"
    written: list[Path] = []
    spectrograms = None
    scores = example_scores(examples) if "spectrograms" in figures or "listen" in figures else {}
    if "spectrograms" in figures or "listen" in figures:
        spectrograms = plot_spectrograms(examples, out_dir / "spectrograms.png", title, scores)
        if "spectrograms" in figures:
            written.append(spectrograms)
    if "waveforms" in figures:
        written.append(plot_waveforms(examples, out_dir / "waveforms.png", title))
    if "listen" in figures:
        written.append(write_listening_page(run, examples, out_dir / "listen.html", spectrograms, scores))
    return written
