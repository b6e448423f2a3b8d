"""Run configuration: the parts a run is made of and their settings, saved as sectioned TOML.

A run is a data set, a model, a noise process, an objective and a sampler, each a part
registered by name with its own settings dataclass (:mod:`scorelab.core.registry`), plus the
optimiser's settings, a seed and a device. ``config.toml`` holds one table per section:

    seed = 0
    device = "auto"
    [data]
    name = "swiss_roll"
    n_data = 10000
    [model]
    name = "noise_conditional"
    hidden = 128
    ...

The same settings can be given flat, as 0.1.0 wrote them and as the command line takes
them: every setting's name is unique across sections, so ``hidden = 64`` (or ``--hidden
64``) means ``[model] hidden = 64``, and ``dataset``, ``model``, ``process``, ``objective``
and ``sampler`` name the parts. Choosing a part implies the parts that go with it unless
they are chosen too (``--model energy`` trains by sliced score matching); each part
declares what it implies. A setting that the chosen part does not have is an error.

The sections, each part's settings dataclass and the optimiser's and run's settings are in
:mod:`scorelab.runs.settings`, which imports no torch; this module adds the parts themselves.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tomli_w
from torch import Tensor

from scorelab.core.errors import ConfigError
from scorelab.core.processes import PROCESSES, NoiseProcess
from scorelab.core.registry import Part, make_settings
from scorelab.data.sources import DATA, FILE, IMAGE_FILES, WAV_FILES, data_part
from scorelab.models import MODELS
from scorelab.objectives import OBJECTIVES
from scorelab.runs.legacy import is_v010, v010_stated
from scorelab.runs.settings import (  # noqa: F401 (the settings, read here as before)
    CATALOGUES,
    CHOICE_SECTIONS,
    DEFAULTS,
    LR_SCHEDULES,
    NAME_KEYS,
    OptimSettings,
    RunSettings,
    flat_fields,
    settings_classes,
)
from scorelab.sampling.registry import SAMPLERS

# The registries of the sections whose parts are registered by name; data sets are also file paths.
REGISTRIES = {"model": MODELS, "process": PROCESSES, "objective": OBJECTIVES, "sampler": SAMPLERS}


def part_of(section: str, name: str) -> Part:
    """The registered part ``name`` of ``section`` (a data set may also be a file path)."""
    return data_part(name) if section == "data" else REGISTRIES[section][name]


def parts(section: str) -> list[Part]:
    """Every registered part of ``section``."""
    return [*DATA.parts(), FILE, IMAGE_FILES, WAV_FILES] if section == "data" else REGISTRIES[section].parts()


@dataclass(frozen=True)
class Choice:
    """A chosen part and its settings; the settings' fields read as attributes (``config.model.hidden``)."""

    name: str
    settings: Any

    def __getattr__(self, field: str) -> Any:
        if field.startswith("__"):
            raise AttributeError(field)
        try:
            return getattr(self.settings, field)
        except AttributeError:
            raise AttributeError(f"{self.name!r} has no setting {field!r}") from None

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self.settings)}


def _stated_sections(values: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, dict], dict[str, Any]]:
    """Split stated values, flat or in tables, into part names, settings by section and run settings."""
    index = flat_fields()
    names: dict[str, str] = {}
    settings: dict[str, dict] = {section: {} for section in (*CHOICE_SECTIONS, "optim", "run")}
    unknown = []

    def put(section: str, key: str, value: Any) -> None:
        if key in settings[section]:
            raise ConfigError(f"{key} is given twice (at the top level and in [{section}])")
        settings[section][key] = value

    for key, value in values.items():
        if isinstance(value, Mapping):
            if key not in (*CHOICE_SECTIONS, "optim"):
                raise ConfigError(f"unknown config table [{key}]; use: {', '.join((*CHOICE_SECTIONS, 'optim'))}")
            for inner, inner_value in value.items():
                if inner == "name" and key != "optim":
                    names[key] = inner_value
                elif inner in index and index[inner][0] == key:
                    put(key, inner, inner_value)
                elif inner in index:
                    raise ConfigError(f"{inner} belongs in [{index[inner][0]}], not [{key}]")
                else:
                    unknown.append(f"[{key}] {inner}")
        elif key in NAME_KEYS:
            names[NAME_KEYS[key]] = value
        elif key in index:
            put(index[key][0], key, value)
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    for section, name in names.items():
        if not isinstance(name, str):
            raise ConfigError(f"the {section} name should be a string, got {name!r}")
        if section in REGISTRIES:
            names[section] = REGISTRIES[section].canonical(name)
    return names, settings, settings.pop("run")


def _chosen_names(stated: dict[str, str]) -> dict[str, str]:
    """Stated part names, then what they imply (in section order, repeatedly), then the defaults; on image
    data, a model that stands for another there is replaced: ``noise_conditional`` and ``ddpm`` name the NCSN
    and DDPM families, whose network on images is the U-Net."""
    chosen = dict(stated)
    changed = True
    while changed:
        changed = False
        for section in CHOICE_SECTIONS:
            if section in chosen:
                for other, name in part_of(section, chosen[section]).implies.items():
                    if other not in chosen:
                        chosen[other] = name
                        changed = True
    chosen = {section: chosen.get(section, DEFAULTS[section]) for section in CHOICE_SECTIONS}
    chosen["model"] = _stand_in(chosen["model"], chosen["data"])
    return chosen


def _stand_in(model: str, data: str) -> str:
    """The model that ``model`` stands for on ``data``'s modality (the U-Net for a family's name on images)."""
    modality = part_of("data", data).modality.name
    return MODELS[model].stands_for.get(modality, model) if model in MODELS else model


def _apply_presets(names: dict[str, str], stated: dict[str, dict]) -> None:
    """Add to ``stated`` the presets of the chosen parts (in section order) that are not stated and that
    the chosen part of their section has. A preset for a section in which the presetting part implies a
    part applies only when that part is chosen: the U-Net's 100 DDPM steps are not another sampler's."""
    index = flat_fields()
    for section in CHOICE_SECTIONS:
        part = part_of(section, names[section])
        for key, value in part.presets.items():
            target = index[key][0]
            implied = part.implies.get(target)
            if implied is not None and names[target] != (_stand_in(implied, names["data"]) if target == "model"
                                                         else implied):
                continue
            fields = ({f.name for f in dataclasses.fields(part_of(target, names[target]).settings)}
                      if target in CHOICE_SECTIONS else {f.name for f in dataclasses.fields(OptimSettings)})
            if key in fields:
                stated[target].setdefault(key, value)


class Config:
    """Everything that defines a training run and its default sampler.

        sl.Config()                                    # every default
        sl.Config(dataset="moons", steps=2000)         # flat settings
        sl.Config(model={"name": "mlp", "hidden": 64}) # a section table

    Attributes: ``data``, ``model``, ``process``, ``objective`` and ``sampler`` are
    :class:`Choice` s (a part's name and settings), ``optim`` an :class:`OptimSettings`,
    and ``seed`` and ``device``. Each part's settings and defaults are in its registration;
    ``scorelab train --help`` lists them all. Validation happens here: a bad value, a
    setting the chosen part lacks, and parts that do not go together are each one
    :class:`ConfigError`.
    """

    def __init__(self, **values: Any) -> None:
        self._build(values, lenient=False)

    data: Choice
    model: Choice
    process: Choice
    objective: Choice
    sampler: Choice

    def _build(self, values: Mapping[str, Any], *, lenient: bool) -> None:
        stated_names, stated, run = _stated_sections(values)
        names = _chosen_names(stated_names)
        _apply_presets(names, stated)
        for section in CHOICE_SECTIONS:
            part = part_of(section, names[section])
            given = stated[section]
            if lenient:
                given = {k: v for k, v in given.items() if k in {f.name for f in dataclasses.fields(part.settings)}}
            setattr(self, section, Choice(names[section], part.make(given)))
        self.optim: OptimSettings = make_settings(OptimSettings, stated["optim"], "[optim]")
        run_settings = make_settings(RunSettings, run, "the run")
        self.seed: int = run_settings.seed
        self.device: str = run_settings.device
        self._check_parts()

    def _check_parts(self) -> None:
        model, objective = self.model, self.objective
        model_part, objective_part = MODELS[model.name], OBJECTIVES[objective.name]
        if model_part.noise_conditional and not objective_part.noise_conditional:
            unconditional = " or ".join(part.name for part in MODELS.parts() if not part.noise_conditional)
            raise ConfigError(f"objective {objective.name!r} trains an unconditional score, not {model.name!r}; "
                              f"use --model {unconditional} (or --objective annealed_dsm)")
        if objective_part.noise_conditional and not model_part.noise_conditional:
            single = " | ".join(part.name for part in OBJECTIVES.parts() if not part.noise_conditional)
            raise ConfigError(f"model {model.name!r} has no noise-level input, so it cannot train with "
                              f"{objective.name!r}; use --objective {single}")
        if getattr(objective.settings, "coupling", "independent") == "ot" and data_part(self.data.name).condition is not None:
            raise ConfigError(f"--coupling ot pairs data with noise within classes; {self.data.name!r} conditions "
                              "each example on its own features, so its noise must stay independent: leave it out")
        limit = PROCESSES[self.process.name].max_steps(self.process.settings)
        steps = getattr(self.sampler.settings, "sample_steps", 0)
        if limit is not None and SAMPLERS[self.sampler.name].respaces_process and steps > limit:
            raise ConfigError(f"sample_steps must be in [0, timesteps = {limit}], got {steps}; "
                              "set --sample-steps (0: every level)")

    # -- copies, comparison and files ------------------------------------------------------------

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (flat settings or tables) applied and validated.

        Choosing another part for a section starts that section from the new part's
        defaults; the other sections keep what they have (nothing more is implied).
        """
        tables = self.to_dict()
        change_names, change_settings, change_run = _stated_sections(changes)
        for section, name in change_names.items():
            if name != tables[section]["name"]:
                tables[section] = {"name": name}
        for section, values in change_settings.items():
            tables[section].update(values)
        tables.update(change_run)
        return Config(**tables)

    @property
    def choices(self) -> dict[str, Choice]:
        """The chosen part of each section: ``data``, ``model``, ``process``, ``objective``, ``sampler``."""
        return {section: getattr(self, section) for section in CHOICE_SECTIONS}

    def to_dict(self) -> dict:
        """Every setting, resolved: ``seed``, ``device`` and one table per section."""
        return {"seed": self.seed, "device": self.device,
                **{section: choice.to_dict() for section, choice in self.choices.items()},
                "optim": dataclasses.asdict(self.optim)}

    def flat(self) -> dict:
        """Every setting under its flat name (``dataset``, ``model``, ..., ``hidden``, ``steps``)."""
        flat: dict[str, Any] = {"seed": self.seed, "device": self.device}
        names = {section: key for key, section in NAME_KEYS.items()}
        for section, choice in self.choices.items():
            flat[names[section]] = choice.name
            flat |= dataclasses.asdict(choice.settings)
        return flat | dataclasses.asdict(self.optim)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Config:
        """A config from a dict of flat settings and/or tables; 0.1.0's fully resolved flat
        configs load too (settings their parts do not use are dropped, as 0.1.0 ignored them)."""
        return cls.from_layers(values)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path))

    @classmethod
    def from_layers(cls, *layers: Mapping[str, Any]) -> Config:
        """A config from layers of stated settings, each flat or in tables, later layers winning
        (a config file, then command-line flags); a 0.1.0 config among them is read as :meth:`from_dict` does."""
        lenient = any(is_v010(layer) for layer in layers)
        merged: dict[str, Any] = {}
        for layer in layers:
            names, settings, run = _stated_sections(v010_stated(layer, NAME_KEYS) if is_v010(layer) else layer)
            for section, values in settings.items():
                table = merged.setdefault(section, {})
                table.update(values)
            for section, name in names.items():
                merged.setdefault(section, {})["name"] = name
            merged.update(run)
        config = cls.__new__(cls)
        config._build(merged, lenient=lenient)
        return config

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        parts = ", ".join(f"{section}={choice.name!r}" for section, choice in self.choices.items())
        return f"Config({parts}, seed={self.seed})"


def read_toml(path: str | Path) -> dict:
    """The contents of a TOML config file, or a :class:`ConfigError`."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def label_classes(config: Config) -> int:
    """The classes that a class-conditional run learns (its data's ``classes``), 0 for any other run."""
    settings = config.data.settings
    return settings.classes if getattr(settings, "conditional", False) else 0


def build_process(config: Config) -> NoiseProcess:
    """The run's noise process (its settings resolved; see :func:`resolve_from_data`)."""
    return PROCESSES[config.process.name].build(config.process.settings)


def resolve_from_data(config: Config, data: Tensor) -> Config:
    """``config`` with the settings that are measured on the training data (0 = "from the data": σ_1 of
    the NCSNv2 rule, EDM's σ_d) filled in by each chosen part, so that config.toml holds the numbers used."""
    resolved = {}
    for section, choice in config.choices.items():
        resolved |= asdict(part_of(section, choice.name).resolve(choice.settings, data))
    return config.replace(**resolved)
