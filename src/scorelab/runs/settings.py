"""A run's settings, without torch: the sections of the config, the catalogue of each section's parts by
name with their settings dataclasses, and the optimiser's and the run's own settings.

The command line builds its flags from this module alone; :mod:`scorelab.runs.config` holds the parts
themselves (their registries, which load torch) and the :class:`~scorelab.runs.config.Config`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from scorelab.core import process_settings
from scorelab.core.errors import ConfigError
from scorelab.core.registry import (
    at_least_zero,
    one_of,
    positive,
    positive_int,
    setting,
    within,
)
from scorelab.data import settings as data_settings
from scorelab.models import settings as model_settings
from scorelab.objectives import settings as objective_settings
from scorelab.sampling import settings as sampler_settings

# The sections whose settings depend on a chosen part, the key that names the part when
# settings are given flat, and the default part.
CHOICE_SECTIONS = ("data", "model", "process", "objective", "sampler")
NAME_KEYS = {"dataset": "data", "model": "model", "process": "process", "objective": "objective",
             "sampler": "sampler"}
# The default family on points is flow matching (the linear interpolant, the log-noise MLP under EDM's
# preconditioning), sampled with DPM-Solver++(2M) in 20 steps: of the NCSN, DDPM, EDM and flow families it scored
# best at <= 20 network evaluations on the 2-D suite, by its worst density and its mean (BENCHMARKS.md "families").
# Images imply the U-Net and its DDPM family, waveforms WaveGrad (their data sets imply the model); the NCSN is
# --model noise_conditional (or --process ve), EDM's family --model edm.
DEFAULTS = {"data": "swiss_roll", "model": "noise_conditional", "process": "flow", "objective": "flow_matching",
            "sampler": "dpmpp_2m"}
LR_SCHEDULES = ("cosine", "constant")

# Each section's parts by name, in registration order, with their settings dataclasses (the registries
# register exactly these); the data sets that stand for a path (file, images, wav) come last.
CATALOGUES: dict[str, dict[str, type]] = {
    "data": data_settings.SETTINGS | data_settings.PATH_SETTINGS,
    "model": model_settings.SETTINGS,
    "process": process_settings.SETTINGS,
    "objective": objective_settings.SETTINGS,
    "sampler": sampler_settings.SETTINGS,
}


@dataclass(frozen=True)
class OptimSettings:
    steps: int = setting(3000, "optimisation steps", positive_int)
    batch_size: int = setting(2048, "minibatch size", positive_int)
    lr: float = setting(1e-2, "Adam learning rate", positive)
    lr_schedule: str = setting("cosine", "cosine (decay to 0 over the run) | constant", one_of(*LR_SCHEDULES))
    ema_decay: float = setting(0.995, "EMA decay of the sampling weights", within(0.0, 1.0, high_open=True))
    checkpoint_every: int = setting(500, "write model.safetensors every N steps", positive_int)
    log_every: int = setting(50, "append a train_log.csv row every N steps", positive_int)
    keep_guide_at: int = setting(0, "also keep the checkpoint of step N as guide.safetensors, a shorter-trained "
                                    "model for autoguidance (--guide RUN/guide.safetensors; 0: none)",
                                 at_least_zero("none"))

    def check(self) -> None:
        if self.keep_guide_at >= self.steps:
            raise ConfigError(f"keep_guide_at = {self.keep_guide_at} must be below steps = {self.steps}: the guide "
                              "is an earlier, weaker model than the run's own")


def _device(name: str, value: str) -> None:
    if value not in ("auto", "cpu") and not value.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda[:N], got {value!r}")


@dataclass(frozen=True)
class RunSettings:
    seed: int = setting(0, "random seed (data, init, minibatches, noise)")
    device: str = setting("auto", "auto | cpu | cuda[:N]", _device)


def settings_classes(section: str) -> list[type]:
    """The settings dataclasses of ``section`` (a choice section, ``optim`` or ``run``), each once."""
    if section == "optim":
        return [OptimSettings]
    if section == "run":
        return [RunSettings]
    return list(dict.fromkeys(CATALOGUES[section].values()))


def flat_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every setting by its flat name: (its section, its field in the first settings class that has it)."""
    index: dict[str, tuple[str, dataclasses.Field]] = {}
    for section in ("run", *CHOICE_SECTIONS, "optim"):
        for settings in settings_classes(section):
            for spec in dataclasses.fields(settings):
                if spec.name in index and index[spec.name][0] != section:
                    raise ValueError(f"setting {spec.name!r} is in both [{index[spec.name][0]}] and [{section}]")
                index.setdefault(spec.name, (section, spec))
    return index
