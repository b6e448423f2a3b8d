"""Audio data sets: synthetic harmonic tones, speech synthesised offline, and a folder of WAV files.

An :class:`AudioSet` holds whole utterances, split once into train and test, as 1-D float32
waveforms in [-1, 1] at one sample rate (22 050 Hz, the rate of the mel features of
:mod:`scorelab.data.mel`). Training sees fixed-length segments cut from the train utterances
(:func:`segments`), each with its log-mel spectrogram as the condition, except a few held out
for validation (:attr:`AudioSet.validation`); evaluation vocodes the
test utterances whole from their mel spectrograms.

- ``tones``: harmonic tones of random pitch, timbre and envelope, made from a seed: no binary is
  needed, so the fast tests train on them.
- ``speech``: English sentences spoken by eSpeak NG in several voices and rates
  (:mod:`scorelab.data.speech`), split by sentence, so no test sentence is heard in training.
- a folder of ``.wav`` files: read with SciPy, resampled to 22 050 Hz (librosa's soxr resampler)
  where a file has another rate, split by file. Every problem is one
  :class:`~scorelab.core.errors.DataError` line naming the file.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scorelab.core.errors import DataError
from scorelab.data.mel import MelSettings
from scorelab.data.speech import speech_corpus

SAMPLE_RATE, HOP = MelSettings().sample_rate, MelSettings().hop
WAV_SUFFIX = ".wav"


@dataclass(frozen=True)
class AudioSet:
    """Utterances split into ``train`` and ``test`` (1-D float32 waveforms in [-1, 1]) at ``sample_rate``,
    with a name for each test utterance (its sentence, or its file)."""

    train: list[Tensor]
    test: list[Tensor]
    test_names: list[str]
    sample_rate: int = SAMPLE_RATE

    @property
    def validation(self) -> list[Tensor]:
        """The last twentieth of the train utterances (at least one): held out from training, for choices
        made on data, such as WaveGrad's few-step noise schedules, that must not see the test split."""
        return self.train[len(self.train) - self._n_validation:]

    @property
    def fit(self) -> list[Tensor]:
        """The train utterances that training sees: all but :attr:`validation` (all of them if only one)."""
        return self.train[:len(self.train) - self._n_validation] or self.train

    @property
    def _n_validation(self) -> int:
        return max(1, len(self.train) // 20)

    @property
    def minutes(self) -> float:
        """The length of the whole set, train and test, in minutes."""
        return sum(len(wave) for wave in [*self.train, *self.test]) / self.sample_rate / 60


def segments(waves: list[Tensor], length: int, hop: int) -> Tensor:
    """Every segment of ``length`` samples that starts at a multiple of ``length``/2 in each of ``waves``
    (half-overlapping, so every sample is seen in two contexts): [N, 1, length]. ``length`` is a multiple
    of the mel ``hop``, so each segment's mel has whole frames."""
    if length % hop or length < hop:
        raise DataError(f"a training segment of {length} samples is not a positive multiple of the mel hop {hop}")
    stride = max(hop, (length // 2) // hop * hop)
    pieces = [wave[start:start + length] for wave in waves for start in range(0, len(wave) - length + 1, stride)]
    if not pieces:
        longest = max((len(wave) for wave in waves), default=0)
        raise DataError(f"no training utterance is as long as one segment ({length} samples = "
                        f"{length / SAMPLE_RATE:.2f} s; the longest has {longest}); use a shorter --segment-frames")
    return torch.stack(pieces)[:, None]


# --- tones ---------------------------------------------------------------------------------


def tone(generator: torch.Generator, seconds: float, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """A harmonic tone: f0 log-uniform in [110, 440] Hz, 1–5 harmonics with amplitudes ∝ k^(−p), p ∈ [1, 2],
    random phases, and a smooth attack–decay envelope; peak amplitude 0.5."""
    draw = torch.rand(4, generator=generator, dtype=torch.float64)
    f0 = 110 * 4 ** draw[0].item()
    harmonics = 1 + int(draw[1].item() * 5)
    power = 1 + draw[2].item()
    t = torch.arange(round(seconds * sample_rate), dtype=torch.float64) / sample_rate
    phases = torch.rand(harmonics, generator=generator, dtype=torch.float64) * 2 * math.pi
    wave = sum(k ** -power * torch.sin(2 * math.pi * k * f0 * t + phases[k - 1])
               for k in range(1, harmonics + 1) if k * f0 < sample_rate / 2)
    attack = 0.02 + 0.1 * draw[3].item()
    envelope = (1 - torch.exp(-t / attack)) * torch.exp(-t / seconds)
    wave = wave * envelope
    return (0.5 * wave / wave.abs().max()).float()


@functools.lru_cache(maxsize=4)
def tones_set(n_train: int, n_test: int, seconds: float, seed: int) -> AudioSet:
    """``n_train`` + ``n_test`` tones of ``seconds`` each from ``seed`` (the test tones are the last ones)."""
    generator = torch.Generator().manual_seed(seed)
    waves = [tone(generator, seconds) for _ in range(n_train + n_test)]
    return AudioSet(waves[:n_train], waves[n_train:], [f"tone {k}" for k in range(n_test)])


# --- speech --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def speech_set(test_sentences: int) -> AudioSet:
    """eSpeak NG's speech of :data:`scorelab.data.speech.SENTENCES`, the last ``test_sentences`` held out."""
    corpus = speech_corpus(test_sentences=test_sentences)
    if corpus.sample_rate != SAMPLE_RATE:
        raise DataError(f"eSpeak NG speaks at {corpus.sample_rate} Hz, but the mel features are at {SAMPLE_RATE} Hz")
    return AudioSet(list(corpus.train), list(corpus.test), list(corpus.test_texts), corpus.sample_rate)


# --- WAV files -----------------------------------------------------------------------------


def read_wav(path: Path, sample_rate: int = SAMPLE_RATE) -> Tensor:
    """One WAV file as a 1-D float32 waveform in [-1, 1] at ``sample_rate`` (resampled if it has another rate).

    Integer samples are divided by their type's full scale; float files must lie in [-1, 1].
    A file that is not a WAV, has more than one channel, holds NaN or inf, or is silent is refused.
    """
    from scipy.io import wavfile

    try:
        rate, data = wavfile.read(path)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable WAV file ({exc})") from None
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim != 1:
        raise DataError(f"{path}: has {data.shape[1]} channels; scorelab learns mono audio (mix it down first)")
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        wave = (data.astype(np.float64) - (info.max + 1 + info.min) / 2) / ((info.max - info.min + 1) / 2)
    else:
        wave = data.astype(np.float64)
        if not np.isfinite(wave).all():
            raise DataError(f"{path}: contains NaN or infinite samples")
        if np.abs(wave).max(initial=0.0) > 1.0:
            raise DataError(f"{path}: float samples must lie in [-1, 1], found {np.abs(wave).max():.3g}")
    if len(wave) == 0 or not np.abs(wave).max() > 0:
        raise DataError(f"{path}: holds no sound (empty or silent)")
    if rate != sample_rate:
        import librosa

        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate)
    return torch.from_numpy(np.clip(wave, -1.0, 1.0).astype(np.float32))


@functools.lru_cache(maxsize=4)
def wav_folder_set(folder: str, test_fraction: float, seed: int, min_samples: int) -> AudioSet:
    """Every ``.wav`` in ``folder`` (sorted by name), split by file with a seeded permutation; each must hold
    at least ``min_samples`` (one training segment) at the mel features' rate."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == WAV_SUFFIX and p.is_file())
    if len(files) < 2:
        raise DataError(f"{folder}: need at least 2 .wav files (one to train on, one to test), found {len(files)}")
    waves = [read_wav(path) for path in files]
    for path, wave in zip(files, waves):
        if len(wave) < min_samples:
            raise DataError(f"{path}: {len(wave) / SAMPLE_RATE:.3f} s is shorter than one training segment "
                            f"({min_samples / SAMPLE_RATE:.3f} s); use a shorter --segment-frames or leave it out")
    n_test = min(len(files) - 1, max(1, round(len(files) * test_fraction)))
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
    test = sorted(order[:n_test])
    train = [k for k in range(len(files)) if k not in test]
    return AudioSet([waves[k] for k in train], [waves[k] for k in test], [files[k].name for k in test])


def is_audio_source(path: str | Path) -> bool:
    """True for a folder that holds ``.wav`` files."""
    path = Path(path)
    return path.is_dir() and any(p.suffix.lower() == WAV_SUFFIX for p in path.iterdir())
