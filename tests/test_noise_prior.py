"""The noise priors: the mel's loudness and spectral envelope against white noise's closed forms, the priors'
layout and inverses, and runs trained with them, whose samples are the sampler's draws coloured back."""

from __future__ import annotations

import pytest
import torch

import scorelab as sl
from scorelab.data.mel import LOG_FLOOR, MelSettings, frame_rms, log_mel
from scorelab.data.noise_prior import EnergyPrior, SpectralPrior
from scorelab.models.wavegrad import WaveGrad
from scorelab.runs.config import Config

pytest.importorskip("librosa")

HOP = MelSettings().hop


@pytest.mark.parametrize("std", [0.03, 0.3])
def test_frame_rms_of_white_noise_is_its_standard_deviation(std):
    noise = std * torch.randn(HOP * 400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rms = frame_rms(log_mel(noise))
    assert rms.mean().item() == pytest.approx(std, rel=0.03)


def test_frame_rms_reads_silence_as_zero_and_grows_with_the_amplitude():
    silence = torch.full((MelSettings().n_mels, 5), torch.log(torch.tensor(LOG_FLOOR)).item())
    assert frame_rms(silence).max() < 1e-6  # zero but for float32 rounding of exp(2·log 1e-5)
    tone = torch.sin(torch.arange(HOP * 20) * 0.05)
    assert torch.allclose(frame_rms(log_mel(0.5 * tone)), 0.5 * frame_rms(log_mel(tone)), rtol=1e-4)


def test_the_energy_prior_holds_each_frame_s_loudness_over_its_hop_above_the_floor():
    mel = log_mel(torch.cat([torch.zeros(HOP * 4), 0.4 * torch.randn(HOP * 8, generator=torch.Generator().manual_seed(0)),
                             torch.zeros(HOP * 4)]))[None]
    prior = EnergyPrior(floor=0.1, data_scale=0.2)
    std = prior.std(mel)
    assert std.shape == (1, 1, 16 * HOP)
    frames = std[0, 0].reshape(16, HOP)
    assert torch.all(frames == frames[:, :1])  # one value per frame, held over its samples
    assert frames[0, 0].item() == pytest.approx(0.1) and frames[-1, 0].item() == pytest.approx(0.1)  # silence: floor
    assert frames[8, 0].item() == pytest.approx(frame_rms(mel)[0, 8].item() / 0.2)  # loud: RMS in model units
    x = torch.randn(1, 1, 16 * HOP, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(prior.colour(prior.whiten(x, mel), mel), x)


def test_the_spectral_prior_is_flat_for_white_noise_and_follows_a_tone():
    """White noise of the data's scale has a gain near 1 in every bin; a tone's gain peaks at its frequency and is the
    floor far from it; whitening then colouring gives the waveform back where the gain is constant."""
    noise = 0.3 * torch.randn(HOP * 64, generator=torch.Generator().manual_seed(2))
    flat = SpectralPrior(floor=1e-3, data_scale=0.3).gain(log_mel(noise)[None])
    assert flat.shape == (1, MelSettings().n_fft // 2 + 1, 65)
    assert 0.8 < flat[..., 2:-2].median().item() < 1.1
    seconds = torch.arange(HOP * 32) / MelSettings().sample_rate
    tone = 0.5 * torch.sin(2 * torch.pi * 1000 * seconds)
    gain = SpectralPrior(floor=1e-3, data_scale=0.5).gain(log_mel(tone)[None])[0, :, 16]
    peak = round(1000 / MelSettings().sample_rate * MelSettings().n_fft)
    assert abs(int(gain.argmax()) - peak) <= 3 and gain[400:].max().item() == pytest.approx(1e-3)
    prior = SpectralPrior(floor=0.5, data_scale=1.0)  # a constant gain: the floor everywhere for this quiet mel
    quiet = log_mel(1e-4 * noise)[None]
    x = torch.randn(1, 1, HOP * 64, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(prior.whiten(x, quiet), x / 0.5, atol=1e-5)
    assert torch.allclose(prior.colour(prior.whiten(x, quiet), quiet), x, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["energy", "spectral"])
def test_a_run_with_a_noise_prior_draws_in_its_units(tmp_path, prior):
    """With ε̂ = 0 (the network's output zeroed) the chain only adds noise, so what the sampler draws is white, and
    the run's samples are that draw coloured by L_c: whitened again they are white, and they are silent where the
    mel is."""
    config = Config(dataset="tones", n_tones=8, tone_seconds=0.5, segment_frames=8, width=0.0625, steps=4,
                    batch_size=4, checkpoint_every=4, log_every=2, timesteps=100, seed=0, device="cpu",
                    prior=prior, prior_floor=0.001)
    sl.train(config, tmp_path / "run", progress=False)
    run = sl.load_run(tmp_path / "run", device="cpu")
    assert isinstance(run.noise_prior, {"energy": EnergyPrior, "spectral": SpectralPrior}[prior])
    network = next(module for module in run.model.modules() if isinstance(module, WaveGrad))
    torch.nn.init.zeros_(network.output.weight)
    torch.nn.init.zeros_(network.output.bias)
    loud = 0.02 * torch.randn(HOP * 16, generator=torch.Generator().manual_seed(3))
    wave = torch.cat([torch.zeros(HOP * 8), loud, torch.zeros(HOP * 8)])
    mel = log_mel(wave)[None]
    out = run.sample(1, cond=mel, shape=(1, len(wave)), generator=torch.Generator().manual_seed(4), sample_steps=6,
                     betas="0.0001,0.001,0.01,0.05,0.1,0.2", start="noise")
    drawn = run.noise_prior.whiten(run.normalisation.to_model(out, any_shape=True), mel)[0, 0]
    spread = drawn[HOP * 2:-HOP * 2].reshape(-1, HOP).std(dim=1)
    # White once whitened, but for a few frames where the spectral gain jumps from silence to sound: there the
    # STFT filter and its inverse are not exact inverses (the filtered spectrogram is not that of any waveform).
    steady = (spread / spread.median() - 1).abs() < 0.3
    assert steady.all() if prior == "energy" else steady.float().mean() >= 0.75
    quiet, middle = out[0, 0, :HOP * 5].abs().max(), out[0, 0, HOP * 14:HOP * 18].abs().max()
    assert quiet < 0.03 * middle
    with pytest.raises(sl.errors.ConfigError, match="noise prior"):
        run.score(torch.zeros(1, 1, HOP * 8), torch.ones(1), cond=mel[..., :8])
