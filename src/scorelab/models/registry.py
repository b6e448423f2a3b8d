"""The models' registry: :data:`MODELS` registers each model by name with its settings (the dataclass
:mod:`scorelab.models.settings` catalogues under that name); :func:`build_model` builds one for data of a
given shape and noise process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from scorelab.core.errors import ConfigError
from scorelab.core.processes import NoiseProcess
from scorelab.core.registry import Part, Registry
from scorelab.data.mel import MelSettings
from scorelab.models.embedding import sinusoidal_embedding
from scorelab.models.energy import EnergyScore
from scorelab.models.mlp import (
    MLP,
    ConditionalLinear,
    ConditionalMLP,
    CondLinearMLP,
    mlp_stack,
)
from scorelab.models.preconditioning import Preconditioned
from scorelab.models.settings import (
    PARAMETERISATIONS,
    SETTINGS,
    UnconditionalSettings,
    WaveGradSettings,
)
from scorelab.models.unet import UNet
from scorelab.models.wavegrad import WaveGrad

__all__ = [
    "MLP",
    "MODELS",
    "PARAMETERISATIONS",
    "CondLinearMLP",
    "ConditionalLinear",
    "ConditionalMLP",
    "EnergyScore",
    "ModelPart",
    "NoiseConditionalMLP",
    "Preconditioned",
    "UNet",
    "WaveGrad",
    "build_model",
    "mlp_stack",
    "sinusoidal_embedding",
]

# build(settings, shape, process, sigma_data, classes) -> the score module for samples of ``shape``, conditioned
# on one of ``classes`` labels per sample (0: on none).
Build = Callable[[object, tuple[int, ...], NoiseProcess, float, int], nn.Module]
StateDict = dict[str, Tensor]


@dataclass(frozen=True)
class ModelPart(Part):
    """A registered model. ``noise_conditional``: it is a score s(x, σ) (otherwise s(x));
    ``upgrade``: maps the weights a 0.1.0 checkpoint saved for this model to today's names;
    ``stands_for``: by modality name, the model that this one stands for on such data (``noise_conditional``
    and ``ddpm`` name the NCSN and DDPM families, whose network on images is the U-Net)."""

    section = "model"

    build: Build = None  # type: ignore[assignment]
    noise_conditional: bool = True
    upgrade: Callable[[StateDict], StateDict] = lambda state: state
    stands_for: Mapping[str, str] = field(default_factory=dict)


def _dim(shape: tuple[int, ...]) -> int:
    """D, the entries of one sample: what an MLP sees of it."""
    return int(torch.Size(shape).numel())


def _image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ConfigError(f"model 'unet' learns images [C, H, W], but one sample here has shape {list(shape)}; "
                          "use --model noise_conditional for points")
    return shape  # type: ignore[return-value]


def _waveform_shape(shape: tuple[int, ...]) -> int:
    """The hop of the mel features, after checking that one sample is a waveform [1, L] of whole frames."""
    hop = MelSettings().hop
    if len(shape) != 2 or shape[0] != 1 or shape[1] % hop:
        raise ConfigError(f"model 'wavegrad' learns mono waveforms [1, L] with L a multiple of {hop}, but one sample "
                          f"here has shape {list(shape)}; use --dataset speech, tones or a folder of .wav files")
    return hop


def _unlabelled(name: str, build: Callable[[object, tuple[int, ...], NoiseProcess, float], nn.Module]) -> Build:
    """The :data:`Build` of a model that cannot read class labels: ``build``, or a :class:`ConfigError` if asked
    for labels (rather than a model that ignores them)."""
    def build_unlabelled(settings: object, shape: tuple[int, ...], process: NoiseProcess, sigma_data: float,
                         classes: int) -> nn.Module:
        if classes:
            raise ConfigError(f"model {name!r} takes no class labels; "
                              "--conditional needs a noise-conditional MLP or the U-Net")
        return build(settings, shape, process, sigma_data)
    return build_unlabelled


def _wavegrad(settings: WaveGradSettings, shape: tuple[int, ...], process: NoiseProcess,
              sigma_data: float) -> Preconditioned:
    _waveform_shape(shape)
    # The UBlocks' factors multiply to the hop of 256 samples; coarse first, as the paper's 5, 5, 3, 2, 2 for 300.
    network = WaveGrad(MelSettings().n_mels, (4, 4, 4, 2, 2), settings.width, settings.repeats)
    return Preconditioned(network, "eps", sigma_data, process.sigma_min)


def NoiseConditionalMLP(dim: int = 2, hidden: int = 128, depth: int = 3, sigma_data: float = 1.0,
                        fourier_features: int = 0) -> Preconditioned:
    """scorelab's default noise-conditional score: s(x, σ) = F([c_in·x, ln σ, Fourier features])/σ.

    :class:`ConditionalMLP` under the ``ve`` parameterisation, c_in = 1/√(σ² + σ_d²)
    (Song & Ermon 2020, technique 3; Karras et al. 2022, Table 1). The name is 0.1.0's class.
    """
    return Preconditioned(ConditionalMLP(dim, hidden, depth, noise_input="log", fourier_features=fourier_features),
                          "ve", sigma_data)


def _renamed(state: StateDict, prefixes: dict[str, str]) -> StateDict:
    """``state`` with each key's first matching prefix replaced."""
    renamed = {}
    for key, value in state.items():
        old = next((prefix for prefix in prefixes if key.startswith(prefix)), None)
        renamed[key if old is None else prefixes[old] + key[len(old):]] = value
    return renamed


def _upgrade_eps_mlp(state: StateDict) -> StateDict:
    """0.1.0's EpsMLP predicted ε̂ = σy/(σ² + σ_d²) + σ_d/√(σ² + σ_d²)·G: EDM's preconditioning with
    F = −G, so its last layer changes sign; it drew no Fourier features."""
    state = _renamed(state, {"eps_model.sigma_data": "sigma_data", "eps_model.net.": "backbone.net."})
    last = max(int(key.split(".")[2]) for key in state if key.startswith("backbone.net."))
    for name in ("weight", "bias"):
        state[f"backbone.net.{last}.{name}"] = -state[f"backbone.net.{last}.{name}"]
    state["backbone.frequencies"] = torch.zeros(state[f"backbone.net.{last}.weight"].shape[0], 0)
    return state


def _seed_levels(process: NoiseProcess) -> Tensor:
    if getattr(process, "continuous", False):
        raise ConfigError("model 'condlinear' knows only discrete noise levels; use continuous = false")
    return process.grid()


# The NCSN's parts: annealed DSM on the VE process's levels, sampled by EDM's stochastic Heun (BENCHMARKS.md
# "sampler_table" chose it for this family).
_NCSN = {"process": "ve", "objective": "annealed_dsm", "sampler": "stochastic_heun"}

MODELS: Registry[ModelPart] = Registry("model")
def _log_noise_mlp(settings, shape: tuple[int, ...], process: NoiseProcess, sigma_data: float,
                   classes: int) -> Preconditioned:
    """The MLP on [c_in·x, ln σ, Fourier features] (and the class, with ``classes``) under the settings'
    parameterisation."""
    return Preconditioned(ConditionalMLP(_dim(shape), settings.hidden, settings.depth, noise_input="log",
                                         fourier_features=settings.fourier_features, classes=classes),
                          settings.parameterisation, sigma_data, process.sigma_min)


MODELS.register(ModelPart(
    "noise_conditional", SETTINGS["noise_conditional"], "MLP on [c_in·x, ln σ, Fourier features], s = F/σ (the NCSN)",
    implies=_NCSN, stands_for={"images": "unet"},
    build=_log_noise_mlp,
    upgrade=lambda state: _renamed(state, {"frequencies": "backbone.frequencies", "net.": "backbone.net."})))
MODELS.register(ModelPart(
    "ddpm", SETTINGS["ddpm"], "MLP on [c_in·x, sinusoidal ln σ, Fourier features] under EDM's preconditioning, for DDPM",
    implies={"process": "vp", "objective": "eps", "sampler": "ddpm"}, stands_for={"images": "unet"},
    build=lambda s, shape, process, sigma_data, classes: Preconditioned(
        ConditionalMLP(_dim(shape), s.hidden, s.depth, noise_input="sinusoidal",
                       fourier_features=s.fourier_features, classes=classes),
        s.parameterisation, sigma_data, process.sigma_min),
    upgrade=_upgrade_eps_mlp))
MODELS.register(ModelPart(
    "edm", SETTINGS["edm"], "MLP on [c_in·x, ln σ, Fourier features] trained by EDM's recipe (Karras et al. 2022)",
    implies={"objective": "edm"}, stands_for={"images": "unet"},
    build=_log_noise_mlp))
MODELS.register(ModelPart(
    "flow", SETTINGS["flow"], "MLP on [c_in·x, ln σ, Fourier features] trained by flow matching on the linear "
    "interpolant (Lipman et al. 2022): the family of --process flow, named",
    implies={"process": "flow"}, stands_for={"images": "unet"},
    build=_log_noise_mlp))
MODELS.register(ModelPart(
    "consistency", SETTINGS["consistency"], "MLP on [c_in·x, ln σ, Fourier features] as a consistency model f(y, σ) "
    "with f(y, σ_min) = y built in, trained by iCT (Song & Dhariwal 2023)",
    # The objective's presets bring the family's process settings and the parameterisation (also to the U-Net
    # that this model stands for on images).
    implies={"objective": "consistency_training"}, stands_for={"images": "unet"},
    build=_log_noise_mlp))
MODELS.register(ModelPart(
    "unet", SETTINGS["unet"], "U-Net on c_in·x with a sinusoidal ln σ embedding, for images (their default: DDPM)",
    # The DDPM family is the image default: on digits, with 100 ancestral steps, it beat the NCSN family
    # in every measure at the same training and sampling cost (BENCHMARKS.md, images).
    implies={"process": "vp", "objective": "eps", "sampler": "ddpm"},
    # A convolutional network of a million weights wants smaller steps than the MLPs' 1e-2 and a longer EMA.
    presets={"lr": 1e-3, "batch_size": 128, "ema_decay": 0.999, "checkpoint_every": 1000, "log_every": 100,
             "sample_steps": 100},
    build=lambda s, shape, process, sigma_data, classes: Preconditioned(
        UNet(_image_shape(shape), s.channels, s.levels, s.res_blocks, s.attention, s.dropout, classes=classes),
        s.parameterisation, sigma_data, process.sigma_min)))
MODELS.register(ModelPart(
    "wavegrad", SETTINGS["wavegrad"], "WaveGrad: ε̂ from a waveform, its log-mel and the noise level √ᾱ (for audio)",
    # Chen et al. 2020: the VP chain with √ᾱ drawn between adjacent levels, an L1 loss on ε, few-step schedules.
    implies={"process": "vp", "objective": "eps", "sampler": "wavegrad"},
    # Width 1/8 and 2500 steps fit a training budget of half an hour on 2 CPU cores (BENCHMARKS.md "audio"; the
    # docs' results page has the width comparison); the paper's model trained for a million steps on TPUs. Its
    # chains start from Griffin-Lim's waveform: from noise, a network trained that briefly drew the envelope of speech
    # over hiss, with no harmonics. Its noise follows the mel's spectral envelope (SpecGrad's prior), which kept the
    # refinement's log-mel error within 1.5 times Griffin-Lim's where white noise did not (BENCHMARKS.md "audio").
    presets={"schedule": "wavegrad", "continuous": True, "eps_norm": "l1", "steps": 2500, "lr": 1e-3,
             "batch_size": 16, "ema_decay": 0.999, "checkpoint_every": 500, "log_every": 50, "start": "griffin_lim",
             "prior": "spectral", "prior_floor": 1e-3},
    build=_unlabelled("wavegrad", _wavegrad)))
MODELS.register(ModelPart(
    "condlinear", SETTINGS["condlinear"], "the seed's CondLinear NCSN, one embedding per noise level", implies=_NCSN,
    build=_unlabelled("condlinear", lambda s, shape, process, sigma_data: Preconditioned(
        CondLinearMLP(_seed_levels(process), _dim(shape), s.hidden), "score", sigma_data, process.sigma_min)),
    upgrade=lambda state: {**_renamed(state, {"": "backbone."}), "sigma_data": torch.tensor(1.0)}),
    formerly="seed_conditional")  # read as "conditioned on a seed"; runs saved under the old name keep loading
MODELS.register(ModelPart(
    "mlp", SETTINGS["mlp"], "the seed's unconditional score MLP s(x), Softplus", noise_conditional=False,
    build=_unlabelled("mlp", lambda s, shape, process, sigma_data: MLP(_dim(shape), s.hidden, s.depth))))
MODELS.register(ModelPart(
    "energy", SETTINGS["energy"], "an energy MLP E(x) with s = −∇E, density exp(−E)", noise_conditional=False,
    implies={"objective": "sliced", "sampler": "langevin"},
    build=_unlabelled("energy", lambda s, shape, process, sigma_data: _energy(s, shape))))


def _energy(settings: UnconditionalSettings, shape: tuple[int, ...]) -> EnergyScore:
    net = mlp_stack(_dim(shape), settings.hidden, settings.depth, 1, nn.Softplus)
    # E's last bias is a constant offset: s = −∇E does not depend on it, so no objective gives it a gradient.
    # Frozen, it is not a parameter that DistributedDataParallel waits for in vain (and never averages).
    net[-1].bias.requires_grad_(False)
    return EnergyScore(net, flatten_input=True)


def build_model(name: str, settings: object, *, shape: tuple[int, ...], process: NoiseProcess,
                sigma_data: float = 1.0, seed: int = 0, classes: int = 0) -> nn.Module:
    """The model ``name`` with ``settings``, for samples of ``shape``; initialised from ``seed``
    without touching the global random state. With ``classes`` > 0 it is class-conditional: its ``cond`` is a
    label per sample in [0, classes), or :data:`~scorelab.core.guidance.NULL_LABEL` for none (a
    :class:`ConfigError` for a model that cannot read labels)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name].build(settings, tuple(shape), process, sigma_data, classes)
