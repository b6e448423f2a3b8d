"""Reading what scorelab 0.1.0 wrote: flat configs and the checkpoint format ``scorelab-checkpoint-1``.

0.1.0 saved one flat config with every setting, used or not, and had no noise-process
setting: a run was a DDPM (the VP process) when its model was ``ddpm`` or its objective
``eps``, and an NCSN (the VE process) otherwise. Its weights are renamed by each model's
registered ``upgrade`` (:class:`scorelab.models.ModelPart`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from scorelab.core.errors import CheckpointError, ConfigError
from scorelab.sampling.settings import format_schedules

# Every key of 0.1.0's Config, in its order.
V010_KEYS = frozenset((
    "dataset", "n_data", "standardize", "model", "hidden", "depth", "fourier_features", "sigma_max", "sigma_min",
    "n_levels", "weight_power", "reference_size", "objective", "n_projections", "projection", "steps",
    "batch_size", "lr", "lr_schedule", "ema_decay", "seed", "device", "checkpoint_every", "log_every", "sampler",
    "n_steps_each", "step_size", "denoise", "snr", "schedule", "timesteps", "sample_steps", "eta",
))
V010_CHECKPOINT = "scorelab-checkpoint-1"

# Settings a part gained after runs were saved without them, by (section, part name), with the value
# that rebuilds those runs. The ddpm MLP had no Fourier features until 0.2 (0.1.0's config carried a
# fourier_features key that it did not use); WaveGrad's chains started from noise until they could start
# from Griffin-Lim's waveform.
ADDED_SETTINGS = {("model", "ddpm"): {"fourier_features": 0}, ("sampler", "wavegrad"): {"start": "noise"}}
# A waveform data set's table (any data table with mel segments: a named set or a folder's path) gained its noise
# prior; runs saved before diffused with white noise.
ADDED_WAVEFORM_SETTINGS = {"prior": "white"}


def is_v010(values: Mapping[str, Any]) -> bool:
    """True for a config that 0.1.0 wrote: flat, with exactly its keys."""
    return set(values) == V010_KEYS


def v010_stated(values: Mapping[str, Any], name_keys: Mapping[str, str]) -> dict[str, Any]:
    """The settings of a 0.1.0 config with the noise process it implied made explicit. ``name_keys`` maps
    the flat keys that name parts to their sections (``config.NAME_KEYS``): 0.1.0 named parts as flat
    configs do."""
    flat_key = {section: key for key, section in name_keys.items()}
    is_ddpm = values["model"] == "ddpm" or values["objective"] == "eps"
    added = {key: value for (section, name), settings in ADDED_SETTINGS.items()
             if values.get(flat_key[section]) == name for key, value in settings.items()}
    return {**values, "process": "vp" if is_ddpm else "ve", **added}


def saved_run_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A run's saved config (every setting resolved, in tables) with :data:`ADDED_SETTINGS` filled in
    where the run was saved before they existed; a 0.1.0 config is returned as it is (see :func:`v010_stated`)."""
    if is_v010(values):
        return dict(values)
    filled = {key: dict(table) if isinstance(table, Mapping) else table for key, table in values.items()}
    for (section, name), settings in ADDED_SETTINGS.items():
        table = filled.get(section)
        if isinstance(table, dict) and table.get("name") == name:
            filled[section] = {**settings, **table}
    data = filled.get("data")
    if isinstance(data, dict) and "segment_frames" in data:
        filled["data"] = {**ADDED_WAVEFORM_SETTINGS, **data}
    return filled


# Until 0.2, a WaveGrad run's searched schedules lay beside its checkpoint in this file, which the sampler read.
SCHEDULES_FILE = "noise_schedules.json"


def with_schedules_saved_beside(config: Any, run_dir: str | Path) -> Any:
    """``config`` (a :class:`~scorelab.runs.config.Config`) with the ``wavegrad`` sampler's ``schedules`` read from
    :data:`SCHEDULES_FILE` in ``run_dir``, for a run whose schedules were searched before they became a setting."""
    path = Path(run_dir) / SCHEDULES_FILE
    settings = config.sampler.settings
    if config.sampler.name != "wavegrad" or settings.schedules or not path.is_file():
        return config
    try:
        return config.replace(schedules=format_schedules(json.loads(path.read_text())))
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc}); delete it and run the schedule search again") from None
