"""A folder of the user's WAV files: read, resampled and split (its bad inputs are rows of tests/test_fault_table.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scorelab.data.audio import SAMPLE_RATE, read_wav, wav_folder_set
from scorelab.data.sources import data_part

wavfile = pytest.importorskip("scipy.io.wavfile")
pytest.importorskip("librosa")

SECOND = SAMPLE_RATE


def _tone(seconds: float = 0.5, rate: int = SAMPLE_RATE, frequency: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def _folder(tmp_path, **files: np.ndarray | bytes | tuple[int, np.ndarray]):
    folder = tmp_path / "wavs"
    folder.mkdir()
    for name, content in files.items():
        if isinstance(content, bytes):
            (folder / f"{name}.wav").write_bytes(content)
        else:
            rate, data = content if isinstance(content, tuple) else (SAMPLE_RATE, content)
            wavfile.write(folder / f"{name}.wav", rate, data)
    return folder


def test_a_folder_of_wav_files_is_read_resampled_and_split_by_file(tmp_path):
    int16 = (_tone(0.5, 16_000) * 32767).astype(np.int16)
    folder = _folder(tmp_path, a=_tone(), b=(16_000, int16), c=_tone(0.7), d=_tone(0.6))
    assert data_part(str(folder)).name == "wav"
    resampled = read_wav(folder / "b.wav")
    assert abs(len(resampled) - SECOND // 2) <= 1 and resampled.dtype == torch.float32
    assert resampled.abs().max().item() == pytest.approx(0.4, abs=0.01)
    audio = wav_folder_set(str(folder), 0.25, 0, 256)
    assert len(audio.train) == 3 and len(audio.test) == 1 and audio.test_names[0].endswith(".wav")
    assert audio == wav_folder_set(str(folder), 0.25, 0, 256)
