"""Vocoding: a waveform from its log-mel spectrogram, by a trained WaveGrad run or by Griffin-Lim.

The features are :func:`scorelab.data.mel.log_mel`, the ones the run was conditioned on; a waveform
of L samples has L // hop frames, so :func:`whole_frames` pads an input to a multiple of the hop
first (with zeros at the end, which its mel shows as silence) and the output is cut back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scorelab.core.atomic import write_atomic
from scorelab.core.errors import ConfigError, DataError
from scorelab.data.griffin_lim import griffin_lim
from scorelab.data.mel import MelSettings, log_mel
from scorelab.data.modality import WAVEFORMS
from scorelab.runs.trained import TrainedRun

MEL = MelSettings()


def require_waveform_run(run: TrainedRun) -> None:
    """A :class:`ConfigError` unless ``run`` learned waveforms conditioned on their mel spectrograms."""
    if run.modality is not WAVEFORMS:
        raise ConfigError(f"{run.run_dir} learned {run.config.data.name!r}, not waveforms; vocoding needs a run "
                          "trained on audio (--dataset speech, tones or a folder of .wav files)")


def whole_frames(wave: Tensor, hop: int = MEL.hop) -> Tensor:
    """``wave`` [L] zero-padded at the end to a positive multiple of ``hop`` samples."""
    if wave.ndim != 1 or len(wave) == 0:
        raise DataError(f"a waveform must be one non-empty channel, got shape {list(wave.shape)}")
    return torch.nn.functional.pad(wave, (0, -len(wave) % hop))


@dataclass(frozen=True)
class Vocoded:
    """A waveform [L] and the seconds of compute it took."""

    wave: Tensor
    seconds: float


def vocode(run: TrainedRun, wave: Tensor, *, generator: torch.Generator | None = None,
           **sampler_options: Any) -> Vocoded:
    """WaveGrad's reconstruction of ``wave`` [L] from its log-mel spectrogram: the run's sampler (by default
    its few-step schedule) conditioned on the mel, from x_N ~ N(0, I), or, where the sampler's ``start`` is
    ``griffin_lim``, from Griffin-Lim's waveform of the same mel noised to the chain's first level (its time
    counts in the vocoder's); as long as ``wave``."""
    require_waveform_run(run)
    padded = whole_frames(wave)
    mel = log_mel(padded)[None]
    begin = time.perf_counter()
    guess = first_estimate(run, mel, **sampler_options)
    out = run.sample(1, cond=mel.to(run.device), shape=(1, len(padded)), generator=generator, guess=guess,
                     **sampler_options)[0, 0]
    return Vocoded(out[:len(wave)], time.perf_counter() - begin)


def first_estimate(run: TrainedRun, mel: Tensor, **sampler_options: Any) -> Tensor | None:
    """Griffin-Lim's waveforms [B, 1, frames·hop] of the log-mel spectrograms ``mel`` [B, n_mels, frames] where the
    run's sampler, with ``sampler_options``, starts from them (``start = "griffin_lim"``); None where it starts from
    noise."""
    options = {key: value for key, value in sampler_options.items() if key != "sampler"}
    _, settings = run.sampler_settings(sampler_options.get("sampler"), **options)
    if getattr(settings, "start", "noise") != "griffin_lim":
        return None
    return griffin_lim(mel.cpu(), MEL, n_iter=settings.start_iterations)[:, None]


def griffin_lim_vocode(wave: Tensor, n_iter: int, seed: int = 0) -> Vocoded:
    """Griffin-Lim's reconstruction of ``wave`` [L] from the same log-mel spectrogram (the baseline)."""
    padded = whole_frames(wave)
    mel = log_mel(padded)
    begin = time.perf_counter()
    out = griffin_lim(mel, MEL, n_iter=n_iter, seed=seed)
    return Vocoded(out[:len(wave)], time.perf_counter() - begin)


def write_wav(path: Path, wave: Tensor, sample_rate: int = MEL.sample_rate) -> None:
    """``wave`` in [-1, 1] as a 16-bit mono WAV file, written atomically."""
    import io

    from scipy.io import wavfile

    buffer = io.BytesIO()
    samples = np.round(wave.clamp(-1, 1).numpy().astype(np.float64) * 32767).astype(np.int16)
    wavfile.write(buffer, sample_rate, samples)
    write_atomic(path, buffer.getvalue())
