"""The data sets' settings, without torch: one dataclass per kind of data set, and the catalogue of data sets by name.

Settings that several kinds share in meaning are declared once, in a common base: :class:`Standardized`
(points), :class:`Split` (a train/test split of images or files), :class:`Labelled` (class-conditional
training on points and images), :class:`LabelFile` (a user's labels for their own data) and
:class:`MelSegments` (waveforms).
The data sets and their registry are :mod:`scorelab.data.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scorelab.core.registry import at_least_zero, one_of, positive_int, setting, within

# The toy generators of scorelab.data.toy, in their registration order.
TOY_SETS = ("swiss_roll", "swissroll", "circles", "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard",
            "rings", "gmm")


@dataclass(frozen=True)
class Standardized:
    standardize: bool = setting(False, "train on (x − mean)/std per coordinate and map samples back")


@dataclass(frozen=True)
class Labelled:
    conditional: bool = setting(False, "train on the data's class labels, with a null class for classifier-free "
                                       "guidance")
    label_dropout: float = setting(0.1, "the share of training labels replaced by the null class (Ho & Salimans "
                                        "2022)", within(0.0, 1.0, high_open=True))
    classes: int = setting(0, "number of classes (0: from the data)", at_least_zero("from the data"))


@dataclass(frozen=True)
class LabelFile(Labelled):
    labels: str = setting("", "a .csv/.npy/.txt file of one integer class label per row or image, in the data's "
                              "order")


@dataclass(frozen=True)
class ToySettings(Labelled, Standardized):
    n_data: int = setting(10_000, "points drawn for training", positive_int)


@dataclass(frozen=True)
class FileSettings(LabelFile, Standardized):
    pass


@dataclass(frozen=True)
class Split:
    test_fraction: float = setting(0.2, "the share of images or files held out as the test split (evaluation uses "
                                        "only it)", within(0.0, 1.0, high_open=True))
    split_seed: int = setting(0, "the seed of the train/test split (stratified by class where there are labels)")


@dataclass(frozen=True)
class ImageSettings(Labelled, Split):
    pass


@dataclass(frozen=True)
class UserImageSettings(LabelFile, ImageSettings):
    pass


# The noise a mel-conditioned vocoder diffuses with (scorelab.data.noise_prior).
NOISE_PRIORS = ("white", "energy", "spectral")


@dataclass(frozen=True)
class MelSegments:
    segment_frames: int = setting(32, "mel frames per training segment (256 samples each at 22 050 Hz)",
                                  positive_int)
    prior: str = setting("white", "the diffusion's noise: white (WaveGrad's) | energy (PriorGrad's: each sample's "
                                  "standard deviation follows its mel frame's loudness) | spectral (SpecGrad's: "
                                  "filtered by the mel's spectral envelope)", one_of(*NOISE_PRIORS))
    prior_floor: float = setting(0.1, "a shaped noise's least standard deviation (energy) or gain (spectral), in units "
                                      "of white noise of the data's standard deviation", within(1e-5, 10.0))


@dataclass(frozen=True)
class TonesSettings(MelSegments):
    n_tones: int = setting(64, "harmonic tones to train on (and a quarter as many, others, to test)", positive_int)
    tone_seconds: float = setting(1.0, "length of each tone in seconds", within(0.1, 60.0))


@dataclass(frozen=True)
class SpeechSettings(MelSegments):
    test_sentences: int = setting(8, "sentences held out for the test split (every voice and rate of them)",
                                  positive_int)


@dataclass(frozen=True)
class WavFolderSettings(Split, MelSegments):
    pass


# Every registered data set by name, in registration order (scorelab.data.sources registers these, no other).
SETTINGS: dict[str, type] = {
    **dict.fromkeys(TOY_SETS, ToySettings),
    "digits": ImageSettings,
    "mnist5k": ImageSettings,
    "tones": TonesSettings,
    "speech": SpeechSettings,
}
# The parts that stand for a path rather than a name: a file of rows, images, a folder of .wav files.
PATH_SETTINGS: dict[str, type] = {"file": FileSettings, "images": UserImageSettings, "wav": WavFolderSettings}
