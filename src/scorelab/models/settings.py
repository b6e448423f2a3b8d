"""The models' settings, without torch: one dataclass per model, and the catalogue of models by name.

Settings that several models share in meaning are declared once, in a common base: :class:`Width`
(``hidden``), :class:`MLPShape` (and ``depth``), :class:`FourierMLP` (and ``fourier_features``) and
:class:`Parameterised` (``parameterisation``). The backbones and their registry are
:mod:`scorelab.models.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from scorelab.core.registry import (
    at_least_zero,
    one_of,
    positive_int,
    redefault,
    setting,
    within,
)

# What a backbone F predicts, turned into a score by the preconditioning (Karras et al. 2022, Table 1).
PARAMETERISATIONS = ("score", "ve", "eps", "edm", "consistency")


@dataclass(frozen=True)
class Parameterised:
    parameterisation: str = setting("ve", "what the backbone predicts: " + " | ".join(PARAMETERISATIONS),
                                    one_of(*PARAMETERISATIONS))


@dataclass(frozen=True)
class Width:
    hidden: int = setting(128, "hidden units per layer", positive_int)


@dataclass(frozen=True)
class MLPShape(Width):
    depth: int = setting(3, "number of hidden layers", positive_int)


@dataclass(frozen=True)
class FourierMLP(MLPShape):
    fourier_features: int = setting(32, "random Fourier features of the input (0: none)", at_least_zero("none"))


@dataclass(frozen=True)
class NoiseConditionalSettings(Parameterised, FourierMLP):
    pass


@dataclass(frozen=True)
class EDMParameterisedMLPSettings(Parameterised, FourierMLP):
    # The DDPM and EDM MLPs: Fourier features of the input keep them from blurring the thin arms of pinwheel
    # and the rings, and EDM's preconditioning keeps the network's input and output at unit scale.
    parameterisation: str = redefault(Parameterised, "parameterisation", "edm")


@dataclass(frozen=True)
class ConsistencyMLPSettings(Parameterised, FourierMLP):
    # A consistency model f(y, σ) with f(y, σ_min) = y built in (models.preconditioning).
    parameterisation: str = redefault(Parameterised, "parameterisation", "consistency")


@dataclass(frozen=True)
class UNetSettings(Parameterised):
    channels: int = setting(32, "U-Net: channels at the first resolution (doubled at each level below)", positive_int)
    levels: int = setting(2, "U-Net: resolutions, each half the one above (H and W must divide by 2^(levels−1))",
                          positive_int)
    res_blocks: int = setting(2, "U-Net: residual blocks per resolution", positive_int)
    attention: bool = setting(True, "U-Net: self-attention at the lowest resolution")
    dropout: float = setting(0.0, "U-Net: dropout in the residual blocks", within(0.0, 1.0, high_open=True))


@dataclass(frozen=True)
class WaveGradSettings:
    width: float = setting(0.125, "WaveGrad: every width relative to the paper's 15 M-weight base model (1 = base)",
                           within(0.01, 4.0))
    repeats: int = setting(1, "WaveGrad: UBlocks per resolution", positive_int)


@dataclass(frozen=True)
class CondLinearSettings(Width):
    pass


@dataclass(frozen=True)
class UnconditionalSettings(MLPShape):
    pass


# Every model by name, in registration order (scorelab.models.registry registers these, no other).
SETTINGS: dict[str, type] = {
    "noise_conditional": NoiseConditionalSettings,
    "ddpm": EDMParameterisedMLPSettings,
    "edm": EDMParameterisedMLPSettings,
    "flow": EDMParameterisedMLPSettings,
    "consistency": ConsistencyMLPSettings,
    "unet": UNetSettings,
    "wavegrad": WaveGradSettings,
    "condlinear": CondLinearSettings,
    "mlp": UnconditionalSettings,
    "energy": UnconditionalSettings,
}
