"""The log-mel features against librosa and a pure tone's band, Griffin-Lim's alignment, and the audio
distances against their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from scorelab.core.errors import DataError
from scorelab.data.griffin_lim import griffin_lim, magnitude_from_mel, overlap_add
from scorelab.data.mel import LOG_FLOOR, MelSettings, log_mel, magnitude, mel_bank
from scorelab.metrics.audio import log_mel_distance, multi_resolution_stft_distance, stft_distance

librosa = pytest.importorskip("librosa")

SETTINGS = MelSettings()
HOP, RATE = SETTINGS.hop, SETTINGS.sample_rate


def _noise(frames: int, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    return scale * torch.randn(frames * HOP, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _bursts(frames: int = 40) -> torch.Tensor:
    """Noise switched on and off every 8 frames: a signal whose spectrogram says where it is in time."""
    on = (torch.arange(frames * HOP) // (8 * HOP)) % 2 == 0
    return (_noise(frames) * on).float()


@pytest.mark.slow
def test_the_log_mel_is_librosa_s_mel_spectrogram_of_the_padded_waveform():
    wave = _noise(24)
    pad = (SETTINGS.n_fft - HOP) // 2
    padded = np.pad(wave.numpy(), pad, mode="reflect")
    expected = librosa.feature.melspectrogram(y=padded, sr=RATE, n_fft=SETTINGS.n_fft, hop_length=HOP, center=False,
                                              power=1.0, n_mels=SETTINGS.n_mels, fmin=SETTINGS.f_min,
                                              fmax=SETTINGS.f_max)
    ours = log_mel(wave)
    assert ours.shape == (SETTINGS.n_mels, 24) and ours.dtype == torch.float64
    assert np.allclose(ours.numpy(), np.log(np.maximum(expected, LOG_FLOOR)), atol=1e-4)


@pytest.mark.parametrize("frequency", [300.0, 1000.0, 4000.0])
def test_a_pure_tone_s_mel_peaks_in_the_band_centred_nearest_its_frequency(frequency):
    t = torch.arange(32 * HOP, dtype=torch.float32) / RATE
    mel = log_mel(0.5 * torch.sin(2 * math.pi * frequency * t))
    centres = librosa.mel_frequencies(SETTINGS.n_mels + 2, fmin=SETTINGS.f_min, fmax=SETTINGS.f_max)[1:-1]
    assert torch.all(mel.argmax(dim=0) == int(np.abs(centres - frequency).argmin()))


def test_a_waveform_has_one_frame_per_hop_and_other_lengths_are_refused():
    batch = torch.stack([_noise(7, seed) for seed in range(3)])
    assert log_mel(batch).shape == (3, SETTINGS.n_mels, 7)
    assert magnitude(batch, 512, 128).shape == (3, 257, 7 * HOP // 128)
    for length in (0, HOP + 1, 3 * HOP - 5):
        with pytest.raises(DataError, match="multiple of 256"):
            log_mel(torch.zeros(length))
    with pytest.raises(DataError, match="too short"):
        magnitude(torch.zeros(HOP), 2048, HOP)


def test_silence_sits_at_the_log_floor():
    assert torch.all(log_mel(torch.zeros(4 * HOP)) == math.log(LOG_FLOOR))


@pytest.mark.parametrize("settings", [SETTINGS, MelSettings(sample_rate=16_000, n_fft=512, hop=128, n_mels=40,
                                                         f_min=60.0, f_max=7600.0)])
def test_the_mel_bank_is_librosa_s(settings):
    expected = librosa.filters.mel(sr=settings.sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels,
                                   fmin=settings.f_min, fmax=settings.f_max)
    ours = mel_bank(settings)
    assert ours.dtype == torch.float32 and ours.shape == expected.shape
    assert np.allclose(ours.numpy(), expected, rtol=1e-5, atol=1e-8)


def test_the_slaney_scale_is_linear_to_1_khz_and_inverts():
    from scorelab.data.mel import hz_to_mel, mel_to_hz

    hz = np.array([0.0, 200 / 3, 500.0, 1000.0, 6400.0, 8000.0])
    mel = hz_to_mel(hz)
    assert np.allclose(mel[:4], [0.0, 1.0, 7.5, 15.0]) and np.isclose(mel[4], 15.0 + 27.0)
    assert np.allclose(mel, librosa.hz_to_mel(hz)) and np.allclose(mel_to_hz(mel), hz)


def test_overlap_add_inverts_the_stft_where_a_window_covers():
    n_fft, hop = 64, 16
    wave = torch.randn(2, 9 * hop + n_fft - hop, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    spectrum = torch.stft(wave, n_fft, hop, window=window, center=False, return_complex=True)
    back = overlap_add(spectrum, window, hop)
    assert back.shape == wave.shape
    # The periodic Hann window is zero at its first sample, so the signal's first sample is not seen.
    assert torch.allclose(back[:, 1:], wave[:, 1:], atol=1e-12) and torch.all(back[:, 0] == 0)


def test_the_magnitude_from_a_mel_reproduces_the_mel_and_is_librosa_s():
    mel = log_mel(_bursts(24).double())
    ours = magnitude_from_mel(mel)
    assert ours.min() >= 0
    assert torch.allclose(torch.log((mel_bank().double() @ ours).clamp_min(LOG_FLOOR)), mel, atol=0.05)
    expected = librosa.feature.inverse.mel_to_stft(mel.exp().numpy(), sr=RATE, n_fft=SETTINGS.n_fft, power=1.0,
                                                   fmin=SETTINGS.f_min, fmax=SETTINGS.f_max)
    assert np.allclose(ours.numpy(), expected, atol=1e-4 * expected.max())


@pytest.mark.slow
def test_griffin_lim_takes_librosa_s_steps():
    mel = log_mel(_bursts(24))
    shift = (SETTINGS.n_fft - HOP) // 2
    linear = librosa.feature.inverse.mel_to_stft(mel.exp().double().numpy(), sr=RATE, n_fft=SETTINGS.n_fft,
                                                 power=1.0, fmin=SETTINGS.f_min, fmax=SETTINGS.f_max)
    expected = librosa.griffinlim(linear, n_iter=8, hop_length=HOP, n_fft=SETTINGS.n_fft, center=False,
                                  random_state=5)[shift:shift + 24 * HOP]
    ours = griffin_lim(mel, n_iter=8, seed=5)
    assert ours.dtype == torch.float32 and ours.shape == (24 * HOP,)
    assert np.allclose(ours.numpy(), expected, atol=1e-3 * np.abs(expected).max())


@pytest.mark.slow
def test_griffin_lim_is_seeded_and_lines_up_with_the_waveform_it_came_from():
    wave = _bursts()
    mel = log_mel(wave)
    out = griffin_lim(mel, n_iter=32, seed=0)
    assert out.shape == wave.shape and torch.equal(out, griffin_lim(mel, n_iter=32, seed=0))
    # Shifted by half a hop either way, the reconstruction's mel moves away from the reference's.
    aligned = log_mel_distance(out, wave).item()
    for shift in (-HOP // 2, HOP // 2):
        assert aligned < 0.9 * log_mel_distance(torch.roll(out, shift), wave).item()
    assert griffin_lim(torch.stack([mel, mel]), n_iter=4).shape == (2, wave.shape[0])


def test_the_distances_vanish_on_the_reference_and_grow_with_noise():
    wave = _bursts(32)
    noisy = [wave + level * torch.randn(wave.shape, generator=torch.Generator().manual_seed(1))
             for level in (0.01, 0.03, 0.1)]
    for distance in (log_mel_distance, multi_resolution_stft_distance):
        assert distance(wave, wave).item() == 0.0
        values = [distance(x, wave).item() for x in noisy]
        assert values == sorted(values) and values[0] > 0


@pytest.mark.parametrize("scale", [0.5, 0.9, 2.0])
def test_the_stft_distance_of_a_scaled_copy_is_its_closed_form(scale):
    """|S| scales with the waveform: spectral convergence |1 − c| plus log distance |log c| (no bin at the floor)."""
    wave = _noise(16).float()
    assert stft_distance(scale * wave, wave, 1024, HOP).item() == pytest.approx(abs(1 - scale) + abs(math.log(scale)),
                                                                                rel=1e-4)
    assert log_mel_distance(scale * wave, wave).item() == pytest.approx(abs(math.log(scale)), rel=1e-4)


def test_the_distances_refuse_waveforms_of_different_shapes():
    with pytest.raises(DataError, match="one shape"):
        log_mel_distance(torch.zeros(4 * HOP), torch.zeros(5 * HOP))
