"""Distances between a vocoded waveform and its reference, in the features a listener's ear weighs.

- :func:`log_mel_distance`: the mean |log-mel(a) − log-mel(b)| of :func:`scorelab.data.mel.log_mel`, the
  features the vocoder was given (the mel-cepstral family of distances; HiFi-GAN reports it as "mel error").
- :func:`multi_resolution_stft_distance`: spectral convergence plus log-magnitude distance, averaged over
  three STFT resolutions (Yamamoto et al. 2020, "Parallel WaveGAN", eqs. 3–5), which sees both the fine
  harmonics (long windows) and the transients (short ones).

Both ignore the phase: two waveforms that sound alike can differ sample by sample.
"""

from __future__ import annotations

from torch import Tensor

from scorelab.core.errors import DataError
from scorelab.data.mel import LOG_FLOOR, MelSettings, log_mel, magnitude

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft = window, hop), Parallel WaveGAN's three


def _same_shape(wave: Tensor, reference: Tensor) -> None:
    if wave.shape != reference.shape:
        raise DataError(f"a waveform and its reference must have one shape, got {list(wave.shape)} and "
                        f"{list(reference.shape)}")


def log_mel_distance(wave: Tensor, reference: Tensor, settings: MelSettings = MelSettings()) -> Tensor:
    """mean |log-mel(wave) − log-mel(reference)| over bands and frames, for each leading item of [..., L]."""
    _same_shape(wave, reference)
    return (log_mel(wave, settings) - log_mel(reference, settings)).abs().mean(dim=(-2, -1))


def stft_distance(wave: Tensor, reference: Tensor, n_fft: int, hop: int) -> Tensor:
    """‖|S| − |Ŝ|‖_F / ‖|S|‖_F + mean |log |S| − log |Ŝ||, S of ``reference`` and Ŝ of ``wave`` (per leading item)."""
    _same_shape(wave, reference)
    estimate, target = magnitude(wave, n_fft, hop), magnitude(reference, n_fft, hop)
    convergence = (target - estimate).square().sum(dim=(-2, -1)).sqrt() / target.square().sum(dim=(-2, -1)).sqrt()
    log_distance = (target.clamp_min(LOG_FLOOR).log() - estimate.clamp_min(LOG_FLOOR).log()).abs().mean(dim=(-2, -1))
    return convergence + log_distance


def multi_resolution_stft_distance(wave: Tensor, reference: Tensor,
                                   resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS) -> Tensor:
    """The mean of :func:`stft_distance` over ``resolutions``; L must be a multiple of every hop (512 by default)."""
    return sum(stft_distance(wave, reference, n_fft, hop) for n_fft, hop in resolutions) / len(resolutions)


def real_time_factor(seconds_of_compute: float, samples: int, sample_rate: int) -> float:
    """Seconds of compute per second of audio: below 1 is faster than real time."""
    return seconds_of_compute / (samples / sample_rate)
