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

MODELS = ("noise_conditional", "seed_conditional", "mlp")
OBJECTIVES = ("annealed_dsm",)
SAMPLERS = ("ald",)


@dataclass
class Config:
    """Everything that defines a training run and its default sampler.

    Data
        dataset: a toy data set name (``sl.data.DATASETS``) or a .csv/.npy path.
        n_data: points drawn from a named data set (files use every row).
        standardize: train on (x − mean)/std and map samples back.
    Model
        model: ``noise_conditional`` (default), ``seed_conditional`` (the seed's
            CondLinear network) or ``mlp`` (unconditional).
        hidden, depth: width and number of hidden layers.
    Noise levels (annealed objectives)
        sigma_max, sigma_min, n_levels: a geometric schedule σ_1 > … > σ_L.
        weight_power: λ(σ) = σ^weight_power in the annealed DSM loss.
    Optimisation
        objective, steps, batch_size, lr, ema_decay, seed, device
        checkpoint_every, log_every: in steps.
    Sampling defaults
        sampler, n_steps_each, step_size, denoise.
    """

    dataset: str = "swiss_roll"
    n_data: int = 10_000
    standardize: bool = False
    model: str = "noise_conditional"
    hidden: int = 128
    depth: int = 3
    sigma_max: float = 1.0
    sigma_min: float = 0.01
    n_levels: int = 10
    weight_power: float = 2.0
    objective: str = "annealed_dsm"
    steps: int = 3000
    batch_size: int = 512
    lr: float = 3e-3
    ema_decay: float = 0.995
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    log_every: int = 50
    sampler: str = "ald"
    n_steps_each: int = 50
    step_size: float = 2e-5
    denoise: bool = True

    def validate(self) -> Config:
        """Check every field; raise :class:`ConfigError` with a fix-it message."""
        for name in ("n_data", "hidden", "depth", "n_levels", "steps", "batch_size", "checkpoint_every",
                     "log_every", "n_steps_each"):
            require_positive_int(name, getattr(self, name))
        for name in ("sigma_max", "sigma_min", "lr", "step_size"):
            require_positive(name, getattr(self, name))
        if self.sigma_min > self.sigma_max:
            raise ConfigError(f"sigma_min ({self.sigma_min}) must not exceed sigma_max ({self.sigma_max})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name, allowed in (("model", MODELS), ("objective", OBJECTIVES), ("sampler", SAMPLERS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; use one of: {', '.join(allowed)}")
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
        try:
            with open(path, "rb") as handle:
                values = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        return cls.from_dict(values)
