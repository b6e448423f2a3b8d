"""Griffin-Lim: a waveform back from a log-mel spectrogram, the baseline vocoder and WaveGrad's first estimate.

Two steps, both in torch so that vocoding needs no audio library:

1. a linear magnitude from the mel: the least-squares inverse of the filter bank, clipped at zero (where
   ``librosa.feature.inverse.mel_to_stft`` starts its non-negative least squares, and for these banks
   stays: the tests hold the two together);
2. a phase for it by Griffin & Lim's iteration (1984, "Signal estimation from modified short-time Fourier
   transform"), in the fast variant with momentum (Perraudin et al. 2013) from random phases, step for step
   as ``librosa.griffinlim`` takes it, with the same seeded phases.

The framing is :mod:`scorelab.data.mel`'s: frames without centring over the waveform reflect-padded by
(n_fft − hop)/2, so output sample j lies at sample j − (n_fft − hop)/2 of the overlap-added signal.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from scorelab.data.mel import MelSettings, mel_bank

MOMENTUM = 0.99  # Perraudin et al.'s fast Griffin-Lim; librosa's default


def magnitude_from_mel(log_mel_spectrum: Tensor, settings: MelSettings = MelSettings()) -> Tensor:
    """A linear STFT magnitude [..., n_fft // 2 + 1, frames] float64 whose mel is close to ``exp(log_mel_spectrum)``
    [..., n_mels, frames]: M⁺·exp(log mel), clipped at zero (M⁺ the bank's pseudo-inverse, its minimum-norm
    least-squares solution)."""
    bank = mel_bank(settings).double()
    return (torch.linalg.pinv(bank) @ log_mel_spectrum.detach().cpu().double().exp()).clamp_min(0)


def _add(columns: Tensor, hop: int) -> Tensor:
    """Columns [B, n_fft, frames] added in place, ``hop`` apart: [B, (frames − 1)·hop + n_fft]."""
    n_fft, frames = columns.shape[-2:]
    length = (frames - 1) * hop + n_fft
    return torch.nn.functional.fold(columns, (1, length), (1, n_fft), stride=(1, hop))[:, 0, 0]


def window_overlap(window: Tensor, hop: int, frames: int) -> Tensor:
    """Σ_k w²(n − k·hop) over ``frames`` frames, where it is not zero (1 elsewhere): the divisor of
    :func:`overlap_add`, [(frames − 1)·hop + n_fft]."""
    overlap = _add(window.square()[None, :, None].expand(1, len(window), frames).contiguous(), hop)[0]
    return torch.where(overlap > torch.finfo(overlap.dtype).tiny, overlap, 1.0)


def overlap_add(spectrum: Tensor, window: Tensor, hop: int, overlap: Tensor | None = None) -> Tensor:
    """The inverse STFT without centring: [..., n_fft // 2 + 1, frames] → [..., (frames − 1)·hop + n_fft].

    Each frame's inverse FFT is windowed and added in place, and the sum is divided by the window's squared
    overlap where that is not zero (:func:`window_overlap`, computed here unless given), which makes it the
    least-squares inverse of :func:`torch.stft` with the same window (Griffin & Lim 1984, eq. 6).
    :func:`torch.istft` refuses this framing, whose first and last samples no window covers.
    """
    n_fft, frames = len(window), spectrum.shape[-1]
    if overlap is None:
        overlap = window_overlap(window, hop, frames)
    pieces = torch.fft.irfft(spectrum, n=n_fft, dim=-2) * window[:, None]
    summed = _add(pieces.reshape(-1, n_fft, frames), hop)
    return (summed / overlap).reshape(*spectrum.shape[:-2], summed.shape[-1])


def griffin_lim(log_mel_spectrum: Tensor, settings: MelSettings = MelSettings(), *, n_iter: int,
                seed: int = 0) -> Tensor:
    """A waveform [..., frames·hop] float32 from a log-mel spectrogram [..., n_mels, frames].

    Every spectrogram starts from the same phases, uniform on [0, 2π) from NumPy's ``RandomState(seed)`` as
    librosa draws them; each iteration keeps the magnitude and takes the phase of the STFT of the inverse STFT,
    extrapolated by the momentum: c_k = S_k − μ/(1 + μ)·S_{k−1}.
    """
    magnitude = magnitude_from_mel(log_mel_spectrum, settings)
    frames = magnitude.shape[-1]
    window = torch.hann_window(settings.n_fft, dtype=torch.float64)
    phases = torch.from_numpy(np.random.RandomState(seed).random(size=magnitude.shape[-2:]))
    estimate = torch.polar(magnitude, 2 * math.pi * phases.expand_as(magnitude))
    overlap = window_overlap(window, settings.hop, frames)  # the same divisor in every iteration
    previous = None
    for _ in range(n_iter):
        wave = overlap_add(estimate, window, settings.hop, overlap)
        rebuilt = torch.stft(wave.reshape(-1, wave.shape[-1]), settings.n_fft, settings.hop, window=window,
                             center=False, return_complex=True).reshape(estimate.shape)
        direction = rebuilt if previous is None else rebuilt - MOMENTUM / (1 + MOMENTUM) * previous
        estimate = magnitude * direction / (direction.abs() + torch.finfo(torch.float64).tiny)
        previous = rebuilt
    shift = (settings.n_fft - settings.hop) // 2
    wave = overlap_add(estimate, window, settings.hop, overlap)
    return wave[..., shift:shift + frames * settings.hop].float()
