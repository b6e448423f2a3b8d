"""Noise shaped by the condition: the data-dependent priors of PriorGrad and SpecGrad for a mel-conditioned vocoder.

WaveGrad diffuses a waveform with white noise N(0, I), loud or silent, at every frequency. A network that
removes the noise imperfectly then leaves hiss wherever the speech is weaker than the noise: in pauses, and
in the high bands, where speech has a hundredth of its low bands' energy. Two papers shape the noise instead,
N(0, Σ_c) with Σ_c = L_c L_cᵀ read from the mel spectrogram c:

- ``energy``: PriorGrad (Lee et al. 2022, "PriorGrad: improving conditional denoising diffusion models with
  data-dependent adaptive prior"): L_c diagonal, each sample's standard deviation that of its mel frame's
  loudness (:func:`scorelab.data.mel.frame_rms`);
- ``spectral``: SpecGrad (Koizumi et al. 2022, "SpecGrad: diffusion probabilistic model based neural vocoder
  with adaptive noise spectral shaping"): L_c a time-varying filter, applied in the STFT domain, whose gain at
  each frequency and frame follows the mel's spectral envelope, so that the noise is loud where the speech
  is and quiet where it is not. Here the filter is zero-phase (SpecGrad's is minimum-phase).

Diffusing x with N(0, L_c L_cᵀ) is diffusing u = L_c⁻¹x with white noise: training whitens each batch
(:meth:`NoisePrior.whiten`) and sampling colours what the sampler draws (:meth:`NoisePrior.colour`), so the
objectives and samplers stay as they are. Each gain is at least ``floor`` (in units of white noise of the
model's unit variance), so that L_c⁻¹ stays bounded where the mel reads silence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scorelab.core.processes import denoised_from_score, score_from_denoised
from scorelab.core.score import Score, call_score
from scorelab.data.mel import MelSettings, frame_rms, mel_bank
from scorelab.data.normalisation import Normalisation

MEL = MelSettings()


class NoisePrior:
    """N(0, L_c L_cᵀ) for waveforms [B, 1, L] in model units, conditioned on their log-mel spectrograms c."""

    def whiten(self, x: Tensor, mel: Tensor) -> Tensor:
        """u = L_c⁻¹x."""
        raise NotImplementedError

    def colour(self, u: Tensor, mel: Tensor) -> Tensor:
        """x = L_c u."""
        raise NotImplementedError


@dataclass(frozen=True)
class EnergyPrior(NoisePrior):
    """PriorGrad's prior: L_c = diag(std_c), std_c each frame's RMS in model units (data units over
    ``data_scale``), at least ``floor``, held over the ``hop`` samples of its frame."""

    floor: float
    data_scale: float
    hop: int = MEL.hop

    def std(self, mel: Tensor) -> Tensor:
        """std_c [B, 1, frames·hop] of the log-mel spectrograms ``mel`` [B, n_mels, frames]."""
        loudness = (frame_rms(mel) / self.data_scale).clamp_min(self.floor)
        return loudness.repeat_interleave(self.hop, dim=-1)[:, None]

    def whiten(self, x: Tensor, mel: Tensor) -> Tensor:
        return x / self.std(mel).to(x)

    def colour(self, u: Tensor, mel: Tensor) -> Tensor:
        return u * self.std(mel).to(u)


@functools.lru_cache(maxsize=4)
def _bin_weights(settings: MelSettings) -> tuple[Tensor, Tensor]:
    """The mel bank's weights as an interpolation from bands to FFT bins: W [n_freq, n_mels] with rows summing to
    1 (a bin no band covers takes the nearest covered bin's bands), and each band's total weight [n_mels]."""
    bank = mel_bank(settings).double()
    totals = bank.sum(dim=1)
    covered = bank.sum(dim=0)
    nearest = torch.arange(bank.shape[1])
    inside = torch.nonzero(covered > 0)[:, 0]
    nearest = inside[(nearest[:, None] - inside[None]).abs().argmin(dim=1)]
    weights = bank[:, nearest].T
    return weights / weights.sum(dim=1, keepdim=True), totals


@dataclass(frozen=True)
class SpectralPrior(NoisePrior):
    """SpecGrad's prior, zero-phase: L_c u = iSTFT(G_c ⊙ STFT(u)) with the mel features' window and hop, G_c [n_freq,
    frames] the spectral envelope of c in units of white noise of unit variance, at least ``floor``.

    A band's mel value is close to its bins' magnitude times its filter's total weight, so each bin's magnitude
    is estimated as the weighted mean, over the bands that cover it, of band value over total weight; white
    noise of unit variance has E|STFT|² = Σ_n w_n² in every bin, so G = |X̂|/(√Σ w_n² · data_scale).
    """

    floor: float
    data_scale: float
    settings: MelSettings = MEL

    def gain(self, mel: Tensor) -> Tensor:
        """G_c [B, n_freq, frames + 1] for ``mel`` [B, n_mels, frames], at the centred STFT's frames (frame j at
        sample j·hop, between mel frames j − 1 and j, whose gains it averages)."""
        weights, totals = _bin_weights(self.settings)
        window_energy = torch.hann_window(self.settings.n_fft, dtype=torch.float64).square().sum()
        per_bin = weights.to(mel) @ (mel.exp() / totals.to(mel)[:, None])
        gain = (per_bin / (window_energy.sqrt().item() * self.data_scale)).clamp_min(self.floor)
        edges = torch.cat([gain[..., :1], gain, gain[..., -1:]], dim=-1)
        return (edges[..., 1:] + edges[..., :-1]) / 2

    def _filter(self, x: Tensor, gain: Tensor) -> Tensor:
        window = torch.hann_window(self.settings.n_fft, dtype=x.dtype, device=x.device)
        flat = x.reshape(-1, x.shape[-1])
        spectrum = torch.stft(flat, self.settings.n_fft, self.settings.hop, window=window, center=True,
                              return_complex=True)
        out = torch.istft(spectrum * gain.to(x.device, x.dtype), self.settings.n_fft, self.settings.hop,
                          window=window, center=True, length=x.shape[-1])
        return out.reshape(x.shape)

    def whiten(self, x: Tensor, mel: Tensor) -> Tensor:
        return self._filter(x, 1 / self.gain(mel))

    def colour(self, u: Tensor, mel: Tensor) -> Tensor:
        return self._filter(u, self.gain(mel))


PRIORS: dict[str, Callable[[float, float], NoisePrior]] = {"energy": EnergyPrior, "spectral": SpectralPrior}


def noise_prior(settings: Any, normalisation: Normalisation) -> NoisePrior | None:
    """The noise prior of the data ``settings`` (``prior``, ``prior_floor``) for data in ``normalisation``'s units;
    None for white noise."""
    name = getattr(settings, "prior", "white")
    if name == "white":
        return None
    return PRIORS[name](settings.prior_floor, normalisation.scale.flatten()[0].item())


def clipped_through(score: Score, low: float, high: float, prior: NoisePrior) -> Score:
    """The score in u = L_c⁻¹x whose denoiser, taken to x, is clamped to [low, high]: D_u + L_c⁻¹(clamp(L_c D_u) − L_c D_u),
    which leaves D_u as it is wherever nothing is clamped (the condition c is the score's ``cond``)."""

    def clipped(y: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        denoised = denoised_from_score(y, call_score(score, y, sigma, cond), sigma)
        in_data = prior.colour(denoised, cond)
        kept = denoised + prior.whiten(in_data.clamp(low, high) - in_data, cond)
        return score_from_denoised(y, kept, sigma)

    return clipped

