"""Reading what scorelab 0.1.0 wrote: flat configs and the checkpoint format ``scorelab-checkpoint-1``.

0.1.0 saved one flat config with every setting, used or not, and had no noise-process
setting: a run was a DDPM (the VP process) when its model was ``ddpm`` or its objective
``eps``, and an NCSN (the VE process) otherwise. Its weights are renamed by each model's
registered ``upgrade`` (:class:`scorelab.models.ModelPart`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every key of 0.1.0's Config, in its order.
V010_KEYS = frozenset((
    "dataset", "n_data", "standardize", "model", "hidden", "depth", "fourier_features", "sigma_max", "sigma_min",
    "n_levels", "weight_power", "reference_size", "objective", "n_projections", "projection", "steps",
    "batch_size", "lr", "lr_schedule", "ema_decay", "seed", "device", "checkpoint_every", "log_every", "sampler",
    "n_steps_each", "step_size", "denoise", "snr", "schedule", "timesteps", "sample_steps", "eta",
))
V010_CHECKPOINT = "scorelab-checkpoint-1"


def is_v010(values: Mapping[str, Any]) -> bool:
    """True for a config that 0.1.0 wrote: flat, with exactly its keys."""
    return set(values) == V010_KEYS


def v010_stated(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a 0.1.0 config with the noise process it implied made explicit."""
    is_ddpm = values["model"] == "ddpm" or values["objective"] == "eps"
    return {**values, "process": "vp" if is_ddpm else "ve"}
