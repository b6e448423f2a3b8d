"""How well a WaveGrad run vocodes its test utterances, against Griffin-Lim from the same mel spectrogram.

For each test utterance (whole, from its log-mel spectrogram :func:`scorelab.data.mel.log_mel`), each
method reconstructs the waveform and is scored by

- the log-mel L1 distance to the reference (:func:`scorelab.metrics.audio.log_mel_distance`);
- the multi-resolution STFT distance, spectral convergence plus log magnitude at FFT sizes 512,
  1024 and 2048 (Yamamoto et al. 2020; :func:`scorelab.metrics.audio.multi_resolution_stft_distance`);
- DNSMOS P.835 overall, an objective estimate of a listener's rating from 1 to 5 that needs no reference
  (Reddy et al. 2022; :func:`scorelab.metrics.speech_quality.dnsmos`), also given for the reference itself;
- the real-time factor: seconds of compute per second of audio, on this machine.

The methods are WaveGrad at each number of steps asked for (its searched schedule where the run has
one, :mod:`scorelab.evaluation.schedule_search`) and Griffin-Lim (Griffin & Lim 1984, :mod:`scorelab.data.griffin_lim`) at each
iteration count. Means are over utterances; the first utterance's waveforms are kept as listening
examples (``RUN_DIR/audio/*.wav``; none for a pretrained run).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from scorelab.core.errors import DataError, require_positive_int
from scorelab.data.audio import AudioSet
from scorelab.data.mel import MelSettings
from scorelab.data.sources import data_part
from scorelab.evaluation.vocoding import (
    Vocoded,
    griffin_lim_vocode,
    require_waveform_run,
    vocode,
    write_wav,
)
from scorelab.metrics.audio import log_mel_distance, multi_resolution_stft_distance
from scorelab.metrics.speech_quality import dnsmos
from scorelab.pretrained import name_of
from scorelab.runs.trained import TrainedRun

WAVEGRAD_STEPS = (6, 25, 50, 1000)
GRIFFIN_LIM_ITERATIONS = (32, 100)
EXAMPLES_DIR = "audio"
MEL = MelSettings()


@dataclass(frozen=True)
class Method:
    """A way to vocode: WaveGrad at ``steps`` from ``start`` (noise, or Griffin-Lim's waveform: the wavegrad
    sampler's setting), or Griffin-Lim at ``steps`` iterations."""

    kind: str  # "wavegrad" | "griffin_lim"
    steps: int
    start: str = "noise"

    @property
    def label(self) -> str:
        if self.kind == "griffin_lim":
            return f"Griffin-Lim-{self.steps}"
        return f"WaveGrad-{self.steps}" + (" from Griffin-Lim" if self.start == "griffin_lim" else "")

    @property
    def file_name(self) -> str:
        return f"{self.kind}_{self.steps}" + ("_from_griffin_lim" if self.start == "griffin_lim" else "") + ".wav"

    def run(self, run: TrainedRun, wave: Tensor, seed: int) -> Vocoded:
        if self.kind == "wavegrad":
            return vocode(run, wave, generator=torch.Generator().manual_seed(seed), sampler="wavegrad",
                          sample_steps=self.steps, start=self.start)
        return griffin_lim_vocode(wave, self.steps, seed)


def methods(wavegrad_steps: tuple[int, ...] = WAVEGRAD_STEPS,
            griffin_lim: tuple[int, ...] = GRIFFIN_LIM_ITERATIONS, starts: tuple[str, ...] = ("noise",)) -> list[Method]:
    """WaveGrad at each number of steps from each start, then Griffin-Lim at each iteration count."""
    return [*(Method("wavegrad", k, start) for start in starts for k in wavegrad_steps),
            *(Method("griffin_lim", k) for k in griffin_lim)]


def run_start(run: TrainedRun) -> str:
    """Where the run's WaveGrad chain starts by default (its wavegrad sampler's ``start``)."""
    return run.sampler_settings("wavegrad")[1].start


def audio_set_of(run: TrainedRun) -> AudioSet:
    """The utterances of a waveform run's data set, split as it was trained."""
    data = run.config.data
    return data_part(data.name).audio(data.name, data.settings)


def test_utterances(run: TrainedRun, n: int | None = None) -> tuple[list[Tensor], list[str]]:
    """The run's first ``n`` test utterances (all when None) and their names."""
    audio = audio_set_of(run)
    count = len(audio.test) if n is None else min(n, len(audio.test))
    return audio.test[:count], audio.test_names[:count]


def distances(out: Tensor, reference: Tensor) -> tuple[float, float]:
    """(log-mel L1, MR-STFT) of ``out`` against ``reference`` (both [L]), on their whole mel frames and STFT hops."""
    whole = len(reference) // 512 * 512  # the multi-resolution STFT needs whole frames at hop 512
    if whole == 0:
        raise DataError(f"a test utterance of {len(reference)} samples is shorter than the 512 that the STFT "
                        "distance needs")
    mel_length = len(reference) // MEL.hop * MEL.hop
    return (log_mel_distance(out[:mel_length], reference[:mel_length]).item(),
            multi_resolution_stft_distance(out[:whole], reference[:whole]).item())


def evaluate_audio(run: TrainedRun, *, n: int | None = 4, wavegrad_steps: tuple[int, ...] = WAVEGRAD_STEPS,
                   griffin_lim: tuple[int, ...] = GRIFFIN_LIM_ITERATIONS, seed: int = 1,
                   timing_repeats: int = 1, starts: tuple[str, ...] | None = None) -> dict:
    """The table of the module docstring for the first ``n`` test utterances; writes the first one's
    reference and reconstructions to ``RUN_DIR/audio``. With ``timing_repeats`` > 1 every method vocodes
    the utterances that many times (the same seeds, so the same waveforms) and the real-time factor is the
    median of the repeats, for a machine whose speed varies. WaveGrad starts where the run's sampler says,
    or from each of ``starts``."""
    require_waveform_run(run)
    require_positive_int("timing_repeats", timing_repeats)
    waves, names = test_utterances(run, n)
    seconds_of_audio = sum(len(wave) for wave in waves) / MEL.sample_rate
    # A pretrained run is read-only: its examples are not written (``scorelab evaluate`` evaluates a copy of it).
    examples = None if name_of(run.run_dir) else Path(run.run_dir) / EXAMPLES_DIR
    if examples:
        write_wav(examples / "reference.wav", waves[0])
    rows = [{"method": "reference", "kind": "reference", "steps": 0, "log_mel_l1": 0.0, "mr_stft": 0.0,
             "dnsmos": statistics.fmean(dnsmos(wave, MEL.sample_rate)["ovrl"] for wave in waves), "real_time_factor": None,
             "timing_repeats": timing_repeats}]
    for method in methods(wavegrad_steps, griffin_lim, starts or (run_start(run),)):
        log_mel, stft, quality, factors = [], [], [], []
        for repeat in range(timing_repeats):
            compute = 0.0
            for index, wave in enumerate(waves):
                out = method.run(run, wave, seed + index)
                compute += out.seconds
                if repeat > 0:  # the same waveform again: only its time is new
                    continue
                scores = distances(out.wave, wave)
                log_mel.append(scores[0])
                stft.append(scores[1])
                quality.append(dnsmos(out.wave, MEL.sample_rate)["ovrl"])
                if index == 0 and examples:
                    write_wav(examples / method.file_name, out.wave)
            factors.append(compute / seconds_of_audio)
        rows.append({"method": method.label, "kind": method.kind, "steps": method.steps, "start": method.start,
                     "log_mel_l1": statistics.fmean(log_mel), "mr_stft": statistics.fmean(stft), "dnsmos": statistics.fmean(quality),
                     "real_time_factor": statistics.median(factors), "timing_repeats": timing_repeats})
    return {"utterances": names, "seconds_of_audio": seconds_of_audio, "threads": torch.get_num_threads(),
            "rows": rows}


def format_real_time_factor(row: dict) -> str:
    """A row's real-time factor, or a dash for the reference, which costs nothing."""
    return "—" if row["real_time_factor"] is None else f"{row['real_time_factor']:.3f}"


def format_audio_report(report: dict) -> str:
    lines = [f"{'method':<18}{'log-mel L1':>12}{'MR-STFT':>10}{'DNSMOS':>8}{'real-time factor':>18}"]
    for row in report["rows"]:
        lines.append(f"{row['method']:<18}{row['log_mel_l1']:>12.4f}{row['mr_stft']:>10.4f}{row['dnsmos']:>8.2f}"
                     f"{format_real_time_factor(row):>18}")
    lines.append(f"(means over {len(report['utterances'])} test utterances, {report['seconds_of_audio']:.1f} s of "
                 f"audio; DNSMOS: P.835 overall, 1–5; real-time factor: compute seconds per audio second on "
                 f"{report['threads']} threads)")
    return "\n".join(lines)
