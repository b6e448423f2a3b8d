"""Run configuration: one dataclass, saved to and read from TOML.

Every field has a documented default; ``scorelab train`` saves the fully resolved
config as ``RUN_DIR/config.toml`` and inside the checkpoint.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

import tomli_w

from scorelab.errors import ConfigError, require_positive, require_positive_int
from scorelab.noise import BETA_SCHEDULES

MODELS = ("noise_conditional", "seed_conditional", "mlp", "energy", "ddpm")
# Unconditional score models: s(x), trained at a single noise level.
UNCONDITIONAL_MODELS = ("mlp", "energy")
OBJECTIVES = ("annealed_dsm", "exact", "sliced", "sliced_vr", "dsm", "eps")
# Objectives that train an unconditional score s(x) at a single noise level.
SINGLE_LEVEL_OBJECTIVES = ("exact", "sliced", "sliced_vr", "dsm")
SAMPLERS = ("ald", "langevin", "pc", "ddpm", "ddim", "ode")
LR_SCHEDULES = ("cosine", "constant")
PROJECTIONS = ("rademacher", "gaussian", "sphere")
# Choosing one of these settings implies the others unless they are given too: an
# unconditional score samples with plain Langevin (ε measured on the swiss roll),
# an energy model trains by sliced score matching (it has no σ input, and SSM costs
# two reverse passes where the exact trace costs D), and a DDPM trains on ε and
# samples ancestrally.
IMPLIED: dict[tuple[str, str], dict] = {
    **{("objective", name): {"model": "mlp", "sampler": "langevin", "step_size": 3e-3}
       for name in SINGLE_LEVEL_OBJECTIVES},
    ("model", "energy"): {"objective": "sliced", "sampler": "langevin", "step_size": 3e-3},
    ("model", "ddpm"): {"objective": "eps", "sampler": "ddpm"},
}


def with_implied(settings: dict) -> dict:
    """``settings`` plus what its choices imply (see :data:`IMPLIED`), explicit values winning."""
    implied: dict = {}
    for key, value in settings.items():
        implied |= IMPLIED.get((key, value), {})
    return implied | settings


@dataclass
class Config:
    """Everything that defines a training run and its default sampler.

    Data
        dataset: a toy data set name (``sl.data.DATASETS``) or a .csv/.npy path.
        n_data: points drawn from a named data set (files use every row).
        standardize: train on (x − mean)/std and map samples back.
    Model
        model: ``noise_conditional`` (default), ``seed_conditional`` (the seed's
            CondLinear network), ``mlp`` (an unconditional score), ``energy`` (an
            unconditional score −∇E(x) of a scalar energy MLP, ``sl.models.EnergyScore``)
            or ``ddpm`` (an ε network, see Diffusion).
        hidden, depth: width and number of hidden layers.
        fourier_features: random Fourier features of the input for ``noise_conditional`` (0: none).
    Noise levels (annealed objectives)
        sigma_max, sigma_min, n_levels: a geometric schedule σ_1 > … > σ_L.
            sigma_max = 0 (the default) applies the NCSNv2 rule (Song & Ermon 2020,
            technique 1): σ_1 = the largest pairwise distance in the training data,
            in model units; training resolves it and saves the number.
            n_levels = 0 applies the γ criterion (technique 2) the same way; it needs
            data of dimension 5 or more, so the default is the measured 20.
        weight_power: λ(σ) = σ^weight_power in the annealed DSM loss.
        reference_size: R data points per step, drawn apart from the batch, that turn the
            annealed DSM target into the stable target field (Xu et al. 2023,
            ``sl.objectives.stable_target``); 0 keeps Vincent's target.
        The single-level ``dsm`` objective perturbs the data at σ = sigma_min only.
    Optimisation
        objective: ``annealed_dsm`` (default) or a single-level objective that
            trains ``model = "mlp"`` or ``"energy"``: ``exact`` (Hyvärinen), ``sliced``
            (SSM), ``sliced_vr`` (SSM-VR) or ``dsm`` (Vincent, at sigma_min).
        n_projections, projection: the sliced objectives' M projections per sample and
            their distribution (``rademacher``, ``gaussian`` or ``sphere``).
        steps, batch_size, lr, ema_decay, seed, device
        lr_schedule: ``cosine`` (default: lr·½(1 + cos πt/steps)) or ``constant``.
        checkpoint_every, log_every: in steps.
    Sampling defaults
        sampler, n_steps_each, step_size, denoise.
            step_size = 0 takes ε from the NCSNv2 variance rule (technique 4) for the
            run's σ_L, level ratio γ and n_steps_each, at sampling time (annealed
            Langevin only). The default 2e-5 was measured: on the 2-D suite the rule's
            ε (about 6e-6 for 100 steps per level) under-mixes.
        snr: the predictor-corrector's corrector signal-to-noise ratio (Song et al. 2021).
    Diffusion (``model = "ddpm"``, ``objective = "eps"``, samplers ddpm/ddim/ode)
        schedule: the β schedule (``sl.noise.BETA_SCHEDULES``): linear, quadratic, sigmoid or cosine.
        timesteps: T, the number of steps of the diffusion chain.
        sample_steps: steps the sampler takes; 0 means every timestep for ddpm/ddim
            and the adaptive dopri5 solver for ode (K > 0: Heun on K evenly spaced levels).
        eta: DDIM's η in [0, 1]; 0 is deterministic.
    """

    dataset: str = "swiss_roll"
    n_data: int = 10_000
    standardize: bool = False
    model: str = "noise_conditional"
    hidden: int = 128
    depth: int = 3
    fourier_features: int = 32
    sigma_max: float = 0.0
    sigma_min: float = 0.01
    n_levels: int = 20
    weight_power: float = 2.0
    reference_size: int = 128
    objective: str = "annealed_dsm"
    n_projections: int = 1
    projection: str = "rademacher"
    steps: int = 3000
    batch_size: int = 2048
    lr: float = 1e-2
    lr_schedule: str = "cosine"
    ema_decay: float = 0.995
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    log_every: int = 50
    sampler: str = "ald"
    n_steps_each: int = 100
    step_size: float = 2e-5
    denoise: bool = True
    snr: float = 0.16
    schedule: str = "linear"
    timesteps: int = 1000
    sample_steps: int = 0
    eta: float = 0.0

    def validate(self) -> Config:
        """Check every field; raise :class:`ConfigError` with a fix-it message."""
        for name in ("n_data", "hidden", "depth", "steps", "batch_size", "checkpoint_every",
                     "log_every", "n_steps_each", "n_projections"):
            require_positive_int(name, getattr(self, name))
        for name in ("sigma_min", "lr", "snr"):
            require_positive(name, getattr(self, name))
        for name, zero_means in (("fourier_features", "none"), ("reference_size", "off"),
                                 ("n_levels", "the NCSNv2 γ criterion"), ("step_size", "the NCSNv2 rule")):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0: {zero_means}), got {getattr(self, name)}")
        if self.sigma_max < 0:
            raise ConfigError(f"sigma_max must be > 0, or 0 for the largest pairwise distance in the data; "
                              f"got {self.sigma_max}")
        if self.sigma_max and self.sigma_min > self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must not exceed sigma_max ({self.sigma_max})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name, allowed in (("model", MODELS), ("objective", OBJECTIVES), ("sampler", SAMPLERS),
                              ("lr_schedule", LR_SCHEDULES), ("projection", PROJECTIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; use one of: {', '.join(allowed)}")
        if self.objective in SINGLE_LEVEL_OBJECTIVES and self.model not in UNCONDITIONAL_MODELS:
            raise ConfigError(f"objective {self.objective!r} trains an unconditional score, not {self.model!r}; "
                              "use --model mlp or energy (or --objective annealed_dsm)")
        if self.model in UNCONDITIONAL_MODELS and self.objective not in SINGLE_LEVEL_OBJECTIVES:
            raise ConfigError(f"model {self.model!r} has no noise-level input, so it cannot train with "
                              f"{self.objective!r}; use --objective {' | '.join(SINGLE_LEVEL_OBJECTIVES)}")
        if self.schedule not in BETA_SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; use one of: {', '.join(BETA_SCHEDULES)}")
        require_positive_int("timesteps", self.timesteps)
        if not 0 <= self.sample_steps <= self.timesteps:
            raise ConfigError(f"sample_steps must be in [0, timesteps = {self.timesteps}], got {self.sample_steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"eta must be in [0, 1], got {self.eta}")
        if self.model == "ddpm" and self.objective != "eps":
            raise ConfigError(f"model 'ddpm' trains with objective 'eps', not {self.objective!r}; use --objective eps")
        if self.objective == "eps" and self.model not in ("ddpm", "noise_conditional"):
            raise ConfigError(f"objective 'eps' needs a model conditioned on a continuous σ, not {self.model!r}; "
                              "use --model ddpm")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        return self

    def replace(self, **changes) -> Config:
        """A copy with ``changes`` applied and validated; unknown keys are an error."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(sorted(unknown))}")
        try:
            return dataclasses.replace(self, **changes).validate()
        except TypeError as exc:
            raise ConfigError(str(exc)) from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        types = {f.name: f.type for f in fields(cls)}
        for key, value in values.items():
            expected = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(str(types.get(key)))
            if expected is not None and (not isinstance(value, expected) or
                                         (expected is int and isinstance(value, bool))):
                raise ConfigError(f"config key {key!r} should be {types[key]}, got {value!r}")
        config = cls().replace(**values)
        return config.replace(**{k: float(v) for k, v in values.items() if types.get(k) == "float"})

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path))


def read_toml(path: str | Path) -> dict:
    """The key-value pairs of a TOML config file, or a :class:`ConfigError`."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
