"""The training loop: minibatch Adam, an EMA of the weights, checkpoints and resume.

``train(config, run_dir)`` writes into ``run_dir``:
- ``config.toml``: the fully resolved configuration;
- ``model.safetensors``: EMA weights for sampling plus the full training state,
  written atomically every ``checkpoint_every`` steps and at the end;
- ``train_log.csv``: step, mean loss since the last row, elapsed seconds.

Resuming from a checkpoint restores weights, Adam moments, the EMA and the
random state, so the final weights equal those of an uninterrupted run.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from scorelab import data as data_module
from scorelab.checkpoint import CHECKPOINT_NAME, Checkpoint, load_checkpoint, save_checkpoint, write_atomic
from scorelab.config import Config
from scorelab.diffusion import make_chain
from scorelab.errors import CheckpointError, ConfigError, TrainingDiverged
from scorelab.models import build_model
from scorelab.noise import geometric_sigmas, n_levels_from_gamma, sigma_max_from_data
from scorelab.objectives import (
    annealed_denoising_score_matching,
    denoising_score_matching,
    diffusion_simple_loss,
    exact_score_matching,
    sliced_score_matching,
)

Objective = Callable[[nn.Module, Tensor, Tensor, Config, torch.Generator], Tensor]

OBJECTIVES: dict[str, Objective] = {
    # The rows past batch_size are the stable-target references (see ``extra_rows``).
    "annealed_dsm": lambda model, batch, sigmas, config, generator: annealed_denoising_score_matching(
        model, batch[:config.batch_size], sigmas, weight_power=config.weight_power,
        reference=batch[config.batch_size:] if config.reference_size else None, generator=generator
    ),
    # Single-level objectives train an unconditional model, called as model(x).
    "exact": lambda model, batch, sigmas, config, generator: exact_score_matching(model, batch),
    "sliced": lambda model, batch, sigmas, config, generator: sliced_score_matching(
        model, batch, n_projections=config.n_projections, projection=config.projection, generator=generator
    ),
    "sliced_vr": lambda model, batch, sigmas, config, generator: sliced_score_matching(
        model, batch, n_projections=config.n_projections, projection=config.projection,
        variance_reduction=True, generator=generator
    ),
    "dsm": lambda model, batch, sigmas, config, generator: denoising_score_matching(
        model, batch, config.sigma_min, generator=generator
    ),
    # DDPM's L_simple over the config's β schedule (the geometric sigmas are not used).
    "eps": lambda model, batch, sigmas, config, generator: diffusion_simple_loss(
        model, batch, _ddpm_chain(config.schedule, config.timesteps), generator=generator
    ),
}


@functools.cache
def _ddpm_chain(schedule: str, timesteps: int) -> Tensor:
    """ᾱ of the training chain, built once per (schedule, T) rather than at every step; never mutated."""
    return make_chain(schedule, timesteps)

LOG_COLUMNS = ("step", "loss", "seconds")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class Normalisation:
    """x_model = (x − shift) / scale, per dimension; identity when not standardising."""

    shift: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, x: Tensor, standardize: bool) -> Normalisation:
        if not standardize:
            return cls(torch.zeros(x.shape[1]), torch.ones(x.shape[1]))
        return cls(x.mean(0), x.std(0).clamp_min(1e-12))

    def to_model(self, x: Tensor) -> Tensor:
        return (x - self.shift.to(x)) / self.scale.to(x)

    def to_data(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x) + self.shift.to(x)


def training_data(config: Config) -> Tensor:
    """The training set: ``n_data`` seeded points of a named set, or every row of a file."""
    generator = torch.Generator().manual_seed(config.seed)
    n = None if data_module.is_file_source(config.dataset) else config.n_data
    return data_module.load(config.dataset, n, generator=generator)


def _read_log(path: Path, up_to_step: int) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= up_to_step]


def _write_log(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue().encode())


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    steps: int
    seconds: float
    final_loss: float


def extra_rows(config: Config) -> int:
    """Rows drawn with each batch beyond batch_size: the annealed DSM's stable-target references."""
    return config.reference_size if config.objective == "annealed_dsm" else 0


def train(config: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train ``config.model`` with ``config.objective`` and write the run directory.

    Args:
        config: the run configuration (ignored on ``resume`` except ``steps``,
            which may extend the run).
        run_dir: where to write; created if needed.
        resume: continue from ``run_dir/model.safetensors``.
        overwrite: replace a trained model already in ``run_dir``.
        progress: show a tqdm progress bar with the loss.

    Raises:
        TrainingDiverged: the loss became NaN or inf. The last checkpoint on disk is kept.
    """
    run_dir = Path(run_dir)
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(run_dir)
        config = checkpoint.config.replace(steps=max(config.steps, checkpoint.step))
    elif (run_dir / CHECKPOINT_NAME).exists() and not overwrite:
        raise CheckpointError(f"{run_dir} already holds a trained model; use --resume, --overwrite or another --out")
    config.validate()
    device = resolve_device(config.device)
    raw = training_data(config)
    normalisation = Normalisation.fit(raw, config.standardize)
    data = normalisation.to_model(raw).to(device)
    if not config.sigma_max:
        config = config.replace(sigma_max=round(sigma_max_from_data(data), 4))
    if not config.n_levels:
        config = config.replace(n_levels=n_levels_from_gamma(config.sigma_max, config.sigma_min, data.shape[1]))
    sigmas = geometric_sigmas(config.sigma_max, config.sigma_min, config.n_levels).to(device)
    model = build_model(config, data.shape[1], sigma_data=float(data.std())).to(device)
    ema = build_model(config, data.shape[1]).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    start = 0
    write_atomic(run_dir / "config.toml", config.to_toml().encode())
    if checkpoint is not None:
        start = checkpoint.step
        _restore(checkpoint, model, ema, optimizer, generator, data.shape[1])
    log_path = run_dir / "train_log.csv"
    log_rows = _read_log(log_path, start) if resume else []

    objective = OBJECTIVES[config.objective]
    begin = time.perf_counter() - (float(log_rows[-1]["seconds"]) if log_rows else 0.0)
    window: list[float] = []
    loss_value = math.nan
    bar = tqdm(total=config.steps, initial=start, desc="train", disable=not progress, dynamic_ncols=True)
    for step in range(start + 1, config.steps + 1):
        rows = torch.randint(len(data), (config.batch_size + extra_rows(config),), generator=generator)
        batch = data[rows.to(device)]
        loss = objective(model, batch, sigmas, config, generator)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            bar.close()
            kept = f"the last good checkpoint ({run_dir / CHECKPOINT_NAME}) is kept" if (
                run_dir / CHECKPOINT_NAME).exists() else "no checkpoint had been written yet"
            raise TrainingDiverged(
                f"training diverged at step {step} (loss = {loss_value}); {kept}; try a smaller --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        optimizer.step()
        _update_ema(ema, model, config.ema_decay, step)
        window.append(loss_value)
        bar.update(1)
        if step % config.log_every == 0 or step == config.steps:
            log_rows.append({"step": step, "loss": f"{sum(window) / len(window):.6g}",
                             "seconds": f"{time.perf_counter() - begin:.3f}"})
            bar.set_postfix(loss=f"{sum(window) / len(window):.4g}")
            window = []
        if step % config.checkpoint_every == 0 or step == config.steps:
            # Log first: on resume, rows past the checkpoint's step are dropped, rows missing are not recoverable.
            _write_log(log_path, log_rows)
            _save(run_dir, step, config, model, ema, optimizer, generator, normalisation)
    bar.close()
    return TrainResult(run_dir, config.steps, time.perf_counter() - begin, loss_value)


def learning_rate(config: Config, step: int) -> float:
    """The learning rate of step t = 1…steps: constant, or cosine decay lr·½(1 + cos(π(t − 1)/steps)).

    A function of the step alone, so a resumed run follows the same schedule.
    Cosine decay (Loshchilov & Hutter 2017, SGDR) lowers the gradient noise of
    the last steps; it was chosen with the other defaults on the toy suite
    (README, "Status").
    """
    if config.lr_schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / config.steps))


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA with the usual warm-up, min(decay, (1 + t)/(10 + t)), so early weights fade fast."""
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    for averaged, current in zip(ema.parameters(), model.parameters()):
        averaged.lerp_(current, rate)


def _save(run_dir: Path, step: int, config: Config, model: nn.Module, ema: nn.Module,
          optimizer: torch.optim.Optimizer, generator: torch.Generator, normalisation: Normalisation) -> None:
    tensors = {f"ema.{k}": v for k, v in ema.state_dict().items()}
    tensors |= {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"optim.{index}.{k}": torch.as_tensor(v) for k, v in state.items()}
    tensors["rng.train"] = generator.get_state()
    tensors["data.shift"] = normalisation.shift
    tensors["data.scale"] = normalisation.scale
    save_checkpoint(run_dir, Checkpoint(step, config, tensors))


def _restore(checkpoint: Checkpoint, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
             generator: torch.Generator, dim: int) -> None:
    """Load the full training state, or raise :class:`CheckpointError` if it does not fit."""
    try:
        model.load_state_dict(checkpoint.group("model"))
        ema.load_state_dict(checkpoint.group("ema"))
        state: dict[int, dict] = {}
        for key, value in checkpoint.group("optim").items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
        generator.set_state(checkpoint.tensors["rng.train"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match its config or data (dim {dim}): {exc}") from None
