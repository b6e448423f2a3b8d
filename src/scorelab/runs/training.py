"""The training loop: minibatch Adam, an EMA of the weights, checkpoints and resume.

``train(config, run_dir)`` writes into ``run_dir``:
- ``config.toml``: the fully resolved configuration;
- ``model.safetensors``: EMA weights for sampling plus the full training state,
  written atomically every ``checkpoint_every`` steps and at the end;
- ``train_log.csv``: step, mean loss since the last row, elapsed seconds, and a
  note on the row of a resume that changed settings.

The checkpoint is the run's record: it carries the config and the log too, and is
written first, then ``train_log.csv``, then ``config.toml``. A write that fails (a full
disk) therefore leaves every file as it was, or a checkpoint newer than the two text
files, which the next resume rewrites from it.

Resuming from a checkpoint restores weights, Adam moments, the EMA and the
random state, so the final weights equal those of an uninterrupted run. A resume
may change only the :data:`RESUMABLE` settings and the sampler's; each change is
recorded in ``config.toml`` and the log, and any other is refused.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.atomic import write_atomic
from scorelab.runs.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from scorelab.runs.config import NAME_KEYS, Config, OptimSettings, flat_fields, read_toml
from scorelab.data.sources import data_part
from scorelab.runs.distributed import World, collective, gather_to_all, mean_over_ranks, process_group, wait_for_main
from scorelab.core.errors import CheckpointError, ConfigError, TrainingDiverged
from scorelab.runs.legacy import saved_run_values
from scorelab.models import build_model
from scorelab.objectives import OBJECTIVES
from scorelab.core.processes import PROCESSES, NoiseProcess
from scorelab.core.rng import derived_seed
from scorelab.runs.lock import run_lock

# "note": a resumed run's changed settings, on a row of its own at the step it resumed from.
LOG_COLUMNS = ("step", "loss", "seconds", "note")
# What a resumed run may change: how long and how fast it trains, how often it writes, where it runs,
# and how it samples afterwards; never what shapes the model, the data or the objective.
RESUMABLE = frozenset({"steps", "lr", "lr_schedule", "checkpoint_every", "log_every", "device"})


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None


@dataclass(frozen=True)
class Normalisation:
    """x_model = (x − shift) / scale, per entry of a sample; identity when not standardising."""

    shift: Tensor
    scale: Tensor

    @classmethod
    def fit(cls, x: Tensor, standardize: bool) -> Normalisation:
        if not standardize:
            return cls(torch.zeros(x.shape[1:]), torch.ones(x.shape[1:]))
        return cls(x.mean(0), x.std(0).clamp_min(1e-12))

    @classmethod
    def of_scale(cls, scale: float, shape: tuple[int, ...]) -> Normalisation:
        """x_model = x/scale for every entry."""
        return cls(torch.zeros(shape), torch.full(shape, scale))

    @classmethod
    def of_range(cls, low: float, high: float, shape: tuple[int, ...]) -> Normalisation:
        """The map of [low, high] onto [-1, 1], the model space of images."""
        return cls(torch.full(shape, (low + high) / 2), torch.full(shape, (high - low) / 2))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample."""
        return tuple(self.shift.shape)

    def to_model(self, x: Tensor) -> Tensor:
        return (x - self.shift.to(x)) / self.scale.to(x)

    def to_data(self, x: Tensor, *, any_shape: bool = False) -> Tensor:
        """x·scale + shift; with ``any_shape``, samples of another shape than the training data's, which
        needs one shift and one scale for every entry (images and waveforms have them)."""
        if not any_shape:
            return x * self.scale.to(x) + self.shift.to(x)
        shift, scale = self.shift.flatten(), self.scale.flatten()
        if not (bool((shift == shift[0]).all()) and bool((scale == scale[0]).all())):
            raise ConfigError("samples of another shape than the training data need one shift and scale for every "
                              "entry; this run standardised each coordinate")
        return x * scale[0].item() + shift[0].item()

    def log_det(self) -> float:
        """log |det ∂x/∂x_model| = Σ log scale, which a density in model units loses in data units."""
        return self.scale.log().sum().item()


def training_data(config: Config) -> Tensor:
    """The training set [n, *shape]: ``n_data`` seeded points of a named set, or every row of a file."""
    generator = torch.Generator().manual_seed(config.seed)
    return data_part(config.data.name).load(config.data.name, config.data.settings, generator)


def data_normalisation(config: Config, raw: Tensor) -> Normalisation:
    """Images: their units' range onto [-1, 1]; waveforms: divided by their standard deviation; other data:
    identity, or per-coordinate standardising.

    Waveforms are scaled rather than left in [-1, 1] because speech has a standard deviation near 0.1: in its
    own units, nearly every level of WaveGrad's chain (σ from 0.001 to 12) would bury it far below the noise,
    and a network trained for minutes would learn little of the levels near σ_data where a waveform's detail
    is decided (Karras et al. 2022, Sec. 5, on scaling to unit variance; Chen 2023, "On the importance of noise
    scheduling", on a chain's signal-to-noise ratio against the data's scale).
    """
    part = data_part(config.data.name)
    if part.images is not None:
        image_set = part.images(config.data.name, config.data.settings)
        return Normalisation.of_range(image_set.low, image_set.high, tuple(raw.shape[1:]))
    if part.audio is not None:
        return Normalisation.of_scale(float(raw.std()), tuple(raw.shape[1:]))
    return Normalisation.fit(raw, config.data.standardize)


def parameter_count(model: nn.Module) -> int:
    """The number of parameters (weights, not buffers), whether or not they are frozen, as for a loaded run."""
    return sum(p.numel() for p in model.parameters())


def build_process(config: Config) -> NoiseProcess:
    """The run's noise process (its settings resolved; see :func:`resolve_process`)."""
    return PROCESSES[config.process.name].build(config.process.settings)


def resolve_process(config: Config, data: Tensor) -> Config:
    """``config`` with the process settings that are measured on the training data (0 = "from the
    data", e.g. σ_1 of the NCSNv2 rule) filled in, so that config.toml holds the numbers used."""
    resolved = PROCESSES[config.process.name].resolve(config.process.settings, data)
    return config.replace(**asdict(resolved))


def saved_config(run_dir: str | Path) -> Config:
    """The config a resumed run starts from, before flags: its ``config.toml`` as it is now, a user's
    edits included (:func:`resume_changes` applies or refuses them), or the checkpoint's where there is no
    such file."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        return load_checkpoint(run_dir).config
    return Config.from_dict(saved_run_values(read_toml(path)))


def resume_changes(saved: Config, asked: Config) -> dict[str, tuple[Any, Any]]:
    """The settings in which ``asked`` differs from the ``saved`` run, as {flat name: (saved, asked)}.

    Raises :class:`ConfigError` naming the first that a resumed run may not change: every setting but
    :data:`RESUMABLE` and the sampler's (which the training never reads).
    """
    index = flat_fields()
    old, new = saved.flat(), asked.flat()
    changes = {key: (old[key], new[key]) for key in new if old.get(key) != new[key]}
    for key, (before, after) in changes.items():
        section = NAME_KEYS[key] if key in NAME_KEYS else index[key][0]
        if key not in RESUMABLE and section != "sampler":
            raise ConfigError(f"{key} cannot change on resume (the run has {before!r}, asked for {after!r} by a flag, "
                              "--config or an edited config.toml); train a new run with another --out")
    return changes


def _logged_rows(checkpoint: Checkpoint, log_path: Path) -> list[dict]:
    """The log rows up to the checkpoint's step: those it carries, or (older checkpoints) the log file's."""
    if checkpoint.train_log is not None:
        return list(csv.DictReader(io.StringIO(checkpoint.train_log)))
    if not log_path.is_file():
        return []
    with log_path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= checkpoint.step]


def _log_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass(frozen=True)
class TrainResult:
    """``steps``: where the run stands; ``resumed_from``: where this call began (0 for a new run);
    ``seconds``: the run's training time, resumed parts included; ``final_loss``: NaN if no step ran;
    ``changes``: the settings a resume changed, {flat name: (before, after)}."""

    run_dir: Path
    steps: int
    seconds: float
    final_loss: float
    parameters: int
    resumed_from: int = 0
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)


def train(config: Config, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> TrainResult:
    """Train ``config``'s model with its objective on its noise process, and write the run directory.

    Args:
        config: the run configuration. On ``resume``, the checkpoint's run with the changes this
            config asks for (:func:`resume_changes`: steps, lr and its schedule, checkpoint and log
            intervals, device, sampler); a change to anything else is a :class:`ConfigError`.
        run_dir: where to write; created if needed.
        resume: continue from ``run_dir/model.safetensors``.
        overwrite: replace a trained model already in ``run_dir``.
        progress: show a tqdm progress bar with the loss.

    Raises:
        TrainingDiverged: the loss became NaN or inf. The last checkpoint on disk is kept.
        RunDirectoryBusy: another process is training into ``run_dir`` (one writer per run
            directory: :func:`scorelab.runs.lock.run_lock`).
    """
    run_dir = Path(run_dir)
    with process_group(resolve_device(config.device)) as world, collective(world):  # DDP's collectives too
        if not world.main:
            wait_for_main(world)  # rank 0 checks the run first; if it fails, its message is the one to read
            return _train(config, run_dir, resume, overwrite, progress, world)
        with run_lock(run_dir):
            return _train(config, run_dir, resume, overwrite, progress, world)


def _train(config: Config, run_dir: Path, resume: bool, overwrite: bool, progress: bool,
           world: World) -> TrainResult:
    from tqdm.auto import tqdm

    checkpoint, asked = None, config
    if resume:
        checkpoint = load_checkpoint(run_dir)
        if checkpoint.legacy:
            raise CheckpointError(f"{run_dir} was written by scorelab 0.1.0; it can be sampled and evaluated, "
                                  "but not resumed: train a new run")
        config = checkpoint.config
    elif (run_dir / CHECKPOINT_NAME).exists() and not overwrite:
        raise CheckpointError(f"{run_dir} already holds a trained model; use --resume, --overwrite or another --out")
    device = world.device(resolve_device(asked.device))
    raw = training_data(config)
    normalisation = data_normalisation(config, raw)
    data = normalisation.to_model(raw).to(device)
    config = resolve_process(config, data)
    changes: dict[str, tuple[Any, Any]] = {}
    if checkpoint is not None:
        asked = resolve_process(asked, data)  # "from the data" settings, as the saved run resolved them
        changes = resume_changes(config, asked)
        if asked.optim.steps < checkpoint.step:
            raise ConfigError(f"steps = {asked.optim.steps} is below the checkpoint's step {checkpoint.step}; "
                              "a run cannot be shortened")
        config = asked
    optim = config.optim
    if optim.batch_size % world.size:
        raise ConfigError(f"batch_size = {optim.batch_size} does not split over {world.size} processes; "
                          f"use a multiple of {world.size}")
    if world.main:
        wait_for_main(world)  # the run checks out: the other ranks may set up too
    process = build_process(config)
    shape = normalisation.shape

    def new_model(sigma_data: float = 1.0) -> nn.Module:
        return build_model(config.model.name, config.model.settings, shape=shape, process=process,
                           sigma_data=sigma_data, seed=config.seed).to(device)

    model = new_model(float(data.std()))
    ema = new_model()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=optim.lr)
    generator = torch.Generator().manual_seed(rank_seed(config.seed, world.rank))
    start = 0
    if world.main and not (run_dir / CHECKPOINT_NAME).exists():  # a new run shows its config at once
        write_atomic(run_dir / "config.toml", config.to_toml().encode())
    log_path = run_dir / "train_log.csv"
    log_rows: list[dict] = []
    if checkpoint is not None:
        start = checkpoint.step
        _restore(checkpoint, model, ema, optimizer, shape)
        saved_world = _restore_generator(checkpoint, generator, world)
        if saved_world != world.size:
            changes["world_size"] = (saved_world, world.size)
        log_rows = _logged_rows(checkpoint, log_path)
    # DDP averages the gradients over the ranks; the EMA and the checkpoint read the module inside.
    net = model if world.size == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    if changes:
        note = "; ".join(f"{key} {before} -> {after}" for key, (before, after) in changes.items())
        log_rows.append({"step": start, "loss": "", "seconds": log_rows[-1]["seconds"] if log_rows else "0",
                         "note": f"resumed: {note}"})

    objective = OBJECTIVES[config.objective.name]
    condition = data_part(config.data.name).condition  # e.g. each waveform segment's log-mel spectrogram
    extra_rows = objective.extra_rows(config.objective.settings)
    begin = time.perf_counter() - (float(log_rows[-1]["seconds"]) if log_rows else 0.0)
    # The losses since the last log row: a resume between rows carries them on (older checkpoints lack them).
    window: list[float] = checkpoint.group("log").get("window", torch.zeros(0)).tolist() if checkpoint else []
    loss_value = math.nan
    bar = tqdm(total=optim.steps, initial=start, disable=not (progress and world.main), dynamic_ncols=True,
               desc=f"train {config.model.name} ({parameter_count(model):,} parameters)")
    rows_per_rank = optim.batch_size // world.size + extra_rows
    for step in range(start + 1, optim.steps + 1):
        batch = data[minibatch_rows(len(data), rows_per_rank, generator).to(device)]
        cond = None if condition is None else condition(normalisation.to_data(batch))
        loss = objective.loss(net, batch, cond, process, config.objective.settings, generator)
        loss_value = mean_over_ranks(loss.detach(), world).item()  # every rank sees a NaN on any of them
        if not math.isfinite(loss_value):
            bar.close()
            kept = f"the last good checkpoint ({run_dir / CHECKPOINT_NAME}) is kept" if (
                run_dir / CHECKPOINT_NAME).exists() else "no checkpoint had been written yet"
            raise TrainingDiverged(
                f"training diverged at step {step} (loss = {loss_value}); {kept}; try a smaller --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(optim, step)
        optimizer.step()
        _update_ema(ema, model, optim.ema_decay, step)
        window.append(loss_value)
        bar.update(1)
        if step % optim.log_every == 0 or step == optim.steps:
            log_rows.append({"step": step, "loss": f"{sum(window) / len(window):.6g}",
                             "seconds": f"{time.perf_counter() - begin:.3f}"})
            bar.set_postfix(loss=f"{sum(window) / len(window):.4g}")
            window = []
        if step % optim.checkpoint_every == 0 or step == optim.steps:
            _save(run_dir, step, config, model, ema, optimizer, generator, normalisation, window, log_rows, world)
    bar.close()
    if changes and start == optim.steps:  # nothing left to train, but the run's record takes the new settings
        _save(run_dir, start, config, model, ema, optimizer, generator, normalisation, window, log_rows, world)
    return TrainResult(run_dir, optim.steps, time.perf_counter() - begin, loss_value, parameter_count(model), start,
                       changes)


def minibatch_rows(n_data: int, count: int, generator: torch.Generator) -> Tensor:
    """The rows of one rank's minibatch: ``count`` uniform draws from [0, n_data), with replacement."""
    return torch.randint(n_data, (count,), generator=generator)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s rows and noise: the run's own for rank 0 (so a run of one process is
    what it always was), :func:`~scorelab.core.rng.derived_seed` (seed, rank) for the others."""
    return seed if rank == 0 else derived_seed(seed, "rank", rank)


def learning_rate(optim: OptimSettings, step: int) -> float:
    """The learning rate of step t = 1…steps: constant, or cosine decay lr·½(1 + cos(π(t − 1)/steps)).

    A function of the step alone, so a resumed run follows the same schedule.
    Cosine decay (Loshchilov & Hutter 2017, SGDR) lowers the gradient noise of
    the last steps; it was chosen with the other defaults on the toy suite
    (README, "Status").
    """
    if optim.lr_schedule == "constant":
        return optim.lr
    return optim.lr * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / optim.steps))


@torch.no_grad()
def _update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """EMA with the usual warm-up, min(decay, (1 + t)/(10 + t)), so early weights fade fast."""
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    for averaged, current in zip(ema.parameters(), model.parameters()):
        averaged.lerp_(current, rate)


def _save(run_dir: Path, step: int, config: Config, model: nn.Module, ema: nn.Module,
          optimizer: torch.optim.Optimizer, generator: torch.Generator, normalisation: Normalisation,
          window: list[float], log_rows: list[dict], world: World) -> None:
    """Write the checkpoint, then the log and the config beside it (see the module's docstring for why);
    rank 0 writes, with every rank's random state."""
    states = gather_to_all(generator.get_state(), world)
    if not world.main:
        return
    tensors = {f"ema.{k}": v for k, v in ema.state_dict().items()}
    tensors |= {f"model.{k}": v for k, v in model.state_dict().items()}
    for index, state in optimizer.state_dict()["state"].items():
        tensors |= {f"optim.{index}.{k}": torch.as_tensor(v) for k, v in state.items()}
    tensors |= {_rng_key(rank): state for rank, state in enumerate(states)}
    tensors["data.shift"] = normalisation.shift
    tensors["data.scale"] = normalisation.scale
    tensors["log.window"] = torch.tensor(window, dtype=torch.float64)
    log = _log_text(log_rows)
    save_checkpoint(run_dir, Checkpoint(step, config, tensors, parameters=parameter_count(model), train_log=log))
    write_atomic(run_dir / "train_log.csv", log.encode())
    write_atomic(run_dir / "config.toml", config.to_toml().encode())


def _rng_key(rank: int) -> str:
    return "rng.train" if rank == 0 else f"rng.train.{rank}"


def _restore_generator(checkpoint: Checkpoint, generator: torch.Generator, world: World) -> int:
    """Give this rank's generator its saved state and return the world size the checkpoint was written by.

    Under another world size the ranks draw other rows than they would have, so each starts a stream of
    its own, named by the step it resumes from: the run goes on, with other minibatches from there."""
    saved_world = 1 + sum(key.startswith("rng.train.") for key in checkpoint.tensors)
    if saved_world == world.size:
        generator.set_state(checkpoint.tensors[_rng_key(world.rank)])
    else:
        generator.manual_seed(derived_seed(checkpoint.config.seed, "resume", checkpoint.step, "rank", world.rank))
    return saved_world


def _restore(checkpoint: Checkpoint, model: nn.Module, ema: nn.Module, optimizer: torch.optim.Optimizer,
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
