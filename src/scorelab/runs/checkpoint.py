"""Checkpoints: safetensors tensors plus a JSON config, written atomically.

One file, ``model.safetensors``, holds everything a run needs:
- ``ema.*``: the EMA weights, used for sampling;
- ``model.*``, ``optim.*``, ``rng.*``: the raw weights, Adam state and random
  state that make ``--resume`` bit-identical to an uninterrupted run;
- ``log.window``: the losses since the last row of ``train_log.csv``, so that a resumed run
  logs the same mean loss as an uninterrupted one;
- metadata: the format tag, the step, the resolved config as JSON, the model's parameter count and
  the text of ``train_log.csv`` up to the step (the checkpoint is the run's record; the log and
  ``config.toml`` beside it are rewritten from it, so a write of theirs that fails loses nothing).

Weights only ever load through safetensors, which cannot run code: nothing a
user hands us is unpickled. Checkpoints of scorelab 0.1.0 (format
``scorelab-checkpoint-1``) load with their config and weight names upgraded
(:mod:`scorelab.runs.legacy`); they can be sampled and evaluated, not resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import Tensor, nn

from scorelab.core.atomic import write_atomic
from scorelab.core.errors import CheckpointError, ConfigError
from scorelab.data.normalisation import Normalisation
from scorelab.models import MODELS
from scorelab.pretrained import require_writable
from scorelab.runs.config import Config
from scorelab.runs.legacy import V010_CHECKPOINT, saved_run_values

FORMAT = "scorelab-checkpoint-2"
CHECKPOINT_NAME = "model.safetensors"


@dataclass
class Checkpoint:
    """The contents of ``model.safetensors``."""

    step: int
    config: Config
    tensors: dict[str, torch.Tensor]
    legacy: bool = False  # written by scorelab 0.1.0
    parameters: int | None = None  # trainable parameters of the model (None: not recorded, as in 0.1.0)
    train_log: str | None = None  # train_log.csv as it stood at ``step`` (None: not recorded in older checkpoints)

    def group(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors under ``prefix.``, with the prefix removed."""
        start = len(prefix) + 1
        return {key[start:]: value for key, value in self.tensors.items() if key.startswith(prefix + ".")}


def save_checkpoint(run_dir: str | Path, checkpoint: Checkpoint, name: str = CHECKPOINT_NAME) -> Path:
    """Atomically write ``RUN_DIR/model.safetensors`` (or ``RUN_DIR/name``)."""
    metadata = {"format": FORMAT, "step": str(checkpoint.step), "config": json.dumps(checkpoint.config.to_dict())}
    if checkpoint.parameters is not None:
        metadata["parameters"] = str(checkpoint.parameters)
    if checkpoint.train_log is not None:
        metadata["train_log"] = checkpoint.train_log
    tensors = {key: value.detach().cpu().contiguous() for key, value in checkpoint.tensors.items()}
    path = Path(run_dir) / name
    write_atomic(path, save(tensors, metadata=metadata))
    return path


def save_config(run_dir: str | Path, config: Config) -> None:
    """Replace the config of the run in ``run_dir`` (work done on a trained run that sets its sampler's
    settings, WaveGrad's schedule search): the checkpoint's metadata, then ``config.toml`` from it."""
    require_writable(run_dir, "changed")
    path = Path(run_dir) / CHECKPOINT_NAME
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata()
        tensors = {key: file.get_tensor(key) for key in file.keys()}
    write_atomic(path, save(tensors, metadata={**metadata, "config": json.dumps(config.to_dict())}))
    write_atomic(Path(run_dir) / "config.toml", config.to_toml().encode())


def load_checkpoint(run_dir: str | Path) -> Checkpoint:
    """Read and validate ``RUN_DIR/model.safetensors``, or a checkpoint file named directly (a run's
    ``guide.safetensors``); raise :class:`CheckpointError` if unusable."""
    run_dir = Path(run_dir)
    path = run_dir if run_dir.suffix == ".safetensors" and run_dir.is_file() else run_dir / CHECKPOINT_NAME
    if not run_dir.is_dir() and path == run_dir / CHECKPOINT_NAME:
        raise CheckpointError(f"{run_dir}: no such run directory or checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {CHECKPOINT_NAME}; train a model there first with `scorelab train`")
    try:
        with safe_open(path, framework="pt") as file:
            metadata = file.metadata() or {}
            tensors = {key: file.get_tensor(key) for key in file.keys()}
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({exc})") from None
    if metadata.get("format") not in (FORMAT, V010_CHECKPOINT):
        raise CheckpointError(f"{path}: not a scorelab checkpoint (format {metadata.get('format')!r})")
    try:
        config = Config.from_dict(saved_run_values(json.loads(metadata["config"])))
        step = int(metadata["step"])
        parameters = int(metadata["parameters"]) if "parameters" in metadata else None
    except (KeyError, ValueError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({exc})") from None
    if metadata["format"] == V010_CHECKPOINT:
        upgrade = MODELS[config.model.name].upgrade
        weights = {f"{group}.{key}": value for group in ("ema", "model")
                   for key, value in upgrade(Checkpoint(step, config, tensors).group(group)).items()}
        rest = {key: value for key, value in tensors.items() if not key.startswith(("ema.", "model."))}
        return Checkpoint(step, config, weights | rest, legacy=True)
    return Checkpoint(step, config, tensors, parameters=parameters, train_log=metadata.get("train_log"))


def rng_key(rank: int) -> str:
    """The tensor of rank ``rank``'s generator state."""
    return "rng.train" if rank == 0 else f"rng.train.{rank}"


def saved_world_size(checkpoint: Checkpoint) -> int:
    """How many processes trained up to the checkpoint: one saved generator state each."""
    return 1 + sum(key.startswith("rng.train.") for key in checkpoint.tensors)


def training_tensors(model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer, rng_states: list[Tensor],
                     normalisation: Normalisation, window: list[float]) -> dict[str, Tensor]:
    """Everything a resume needs, as the checkpoint's tensors: the EMA and raw weights, Adam's state, each
    rank's generator state, the data's normalisation and the losses since the last log row."""
    tensors = {f"ema.{k}": v for k, v in ema.state_dict().items()}
    tensors |= {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"optim.{index}.{k}": torch.as_tensor(v) for k, v in state.items()}
    tensors |= {rng_key(rank): state for rank, state in enumerate(rng_states)}
    tensors["data.shift"] = normalisation.shift
    tensors["data.scale"] = normalisation.scale
    tensors["log.window"] = torch.tensor(window, dtype=torch.float64)
    return tensors


def restore_training_state(checkpoint: Checkpoint, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
             shape: tuple[int, ...]) -> None:
    """Load the full training state, or raise :class:`CheckpointError` if it does not fit."""
    try:
        model.load_state_dict(checkpoint.group("model"))
        ema.load_state_dict(checkpoint.group("ema"))
        state: dict[int, dict] = {}
        for key, value in checkpoint.group("optim").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match its config or data (shape {shape}): {exc}") from None
