"""Log-mel spectrograms: the one definition of scorelab's audio features, and Griffin-Lim back from them.

WaveGrad is conditioned on them, the vocoder reads them, the metrics compare them and the plots
draw them, so all of them call :func:`log_mel`. The settings are those of Tacotron 2 and HiFi-GAN
at 22 050 Hz (80 bands up to 8 kHz, a 1024-point Hann window every 256 samples); WaveGrad itself
used 80 bands at hop 300 for 24 kHz audio (Chen et al. 2020, Sec. 4).

Framing: a waveform of L samples (a multiple of the hop) has exactly L // hop frames, frame k
centred on sample k·hop + hop/2. The waveform is reflect-padded by (n_fft − hop)/2 at both ends and
framed without centring, so that every frame is whole and the upsampling network needs no trimming.

The STFT is :func:`torch.stft`; the mel filter bank is Slaney's (his Auditory Toolbox's mel scale and
area normalisation, the default of ``librosa.filters.mel``, which the tests hold it to), built here so
that features and vocoding need no audio library. Griffin-Lim back from them is
:mod:`scorelab.data.griffin_lim`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scorelab.core.errors import DataError

LOG_FLOOR = 1e-5  # magnitudes below it are silence: log(1e-5) ≈ −11.5, as Tacotron 2's clamp


@dataclass(frozen=True)
class MelSettings:
    """The features' sample rate, FFT size (also the window), hop, number of bands and band edges in Hz."""

    sample_rate: int = 22_050
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0


def magnitude(wave: Tensor, n_fft: int, hop: int) -> Tensor:
    """|STFT| of ``wave`` [..., L] with a Hann window of ``n_fft``: [..., n_fft // 2 + 1, L // hop], framed as the
    module docstring says (L a positive multiple of ``hop``)."""
    length = wave.shape[-1]
    pad = (n_fft - hop) // 2
    if length == 0 or length % hop:
        raise DataError(f"a waveform for spectrograms must be a positive multiple of {hop} samples, got {length}")
    if pad >= length:
        raise DataError(f"a waveform of {length} samples is too short for a {n_fft}-point spectrogram "
                        f"(it needs more than {pad})")
    lead = wave.shape[:-1]
    flat = torch.nn.functional.pad(wave.reshape(-1, 1, length), (pad, n_fft - hop - pad), mode="reflect")[:, 0]
    window = torch.hann_window(n_fft, dtype=wave.dtype, device=wave.device)
    spectrum = torch.stft(flat, n_fft, hop_length=hop, window=window, center=False, return_complex=True)
    return spectrum.abs().reshape(*lead, n_fft // 2 + 1, length // hop)


SLANEY_LINEAR_HZ_PER_MEL = 200 / 3  # below 1 kHz the scale is linear: 15 mels up to 1000 Hz
SLANEY_BREAK_HZ = 1000.0
SLANEY_BREAK_MEL = SLANEY_BREAK_HZ / SLANEY_LINEAR_HZ_PER_MEL
SLANEY_LOG_STEP = math.log(6.4) / 27  # above it, logarithmic: 27 mels per factor 6.4 in frequency


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (Auditory Toolbox, 1998): linear to 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / SLANEY_LINEAR_HZ_PER_MEL
    logarithmic = SLANEY_BREAK_MEL + np.log(np.maximum(hz, SLANEY_BREAK_HZ) / SLANEY_BREAK_HZ) / SLANEY_LOG_STEP
    return np.where(hz >= SLANEY_BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """The inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    logarithmic = SLANEY_BREAK_HZ * np.exp(SLANEY_LOG_STEP * (np.maximum(mel, SLANEY_BREAK_MEL) - SLANEY_BREAK_MEL))
    return np.where(mel >= SLANEY_BREAK_MEL, logarithmic, SLANEY_LINEAR_HZ_PER_MEL * mel)


@functools.lru_cache(maxsize=8)
def _mel_bank(settings: MelSettings) -> np.ndarray:
    # Band b is a triangle over the FFT bins' frequencies, rising from edge b to its peak at edge b + 1 and
    # falling to edge b + 2, the n_mels + 2 edges evenly spaced in mel; each is scaled to unit area in Hz
    # (height 2 / its width), so that wide high bands do not outweigh narrow low ones.
    edges = mel_to_hz(np.linspace(hz_to_mel(settings.f_min), hz_to_mel(settings.f_max), settings.n_mels + 2))
    bins = np.linspace(0.0, settings.sample_rate / 2, settings.n_fft // 2 + 1)
    lower, peak, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lower) / (peak - lower)
    falling = (upper - bins) / (upper - peak)
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (upper - lower))).astype(np.float32)


def mel_bank(settings: MelSettings = MelSettings()) -> Tensor:
    """Slaney's mel filter bank for ``settings``: [n_mels, n_fft // 2 + 1] float32, triangles on his mel scale,
    each of unit area (``librosa.filters.mel``'s default)."""
    return torch.from_numpy(_mel_bank(settings))


def log_mel(wave: Tensor, settings: MelSettings = MelSettings()) -> Tensor:
    """log max(M·|STFT(wave)|, 1e-5): [..., L] → [..., n_mels, L // hop]; device and dtype follow ``wave``."""
    bank = mel_bank(settings).to(device=wave.device, dtype=wave.dtype)
    return torch.log(torch.clamp(bank @ magnitude(wave, settings.n_fft, settings.hop), min=LOG_FLOOR))


@functools.lru_cache(maxsize=8)
def _power_per_variance(settings: MelSettings) -> float:
    """The mean over bands of the mel power (M·|STFT|)² of white noise, per unit of its variance. A band sums the
    magnitudes of its bins, each Rayleigh with E|X_f|² = Σ_n w_n² =: E for a window w and E|X_f| = √(π/4 · E); taking
    the bins as independent, E[(Σ_f M_bf |X_f|)²] = E·(π/4·(Σ_f M_bf)² + (1 − π/4)·Σ_f M_bf²)."""
    bank = mel_bank(settings).double()
    window_energy = torch.hann_window(settings.n_fft, dtype=torch.float64).square().sum()
    per_band = math.pi / 4 * bank.sum(dim=1).square() + (1 - math.pi / 4) * bank.square().sum(dim=1)
    return float((per_band * window_energy).mean())


def frame_rms(log_mel_spectrum: Tensor, settings: MelSettings = MelSettings()) -> Tensor:
    """Each frame's root-mean-square amplitude estimated from its log-mel spectrogram: [..., n_mels, frames] →
    [..., frames].

    The estimate is exact in expectation for white noise (each band's power is the sum of its filter's
    squared weights times the window's energy times the variance), and for other sounds it is that of the
    white noise with the same mean band power: a measure of loudness that depends on the mel alone, so that
    a vocoder has it at sampling time as in training. Frames at the log floor read as silence (0).
    """
    power = torch.exp(2 * log_mel_spectrum).mean(dim=-2) - LOG_FLOOR**2
    return (power.clamp_min(0) / _power_per_variance(settings)).sqrt()
