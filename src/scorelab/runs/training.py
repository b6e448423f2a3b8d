"""The training loop: minibatch Adam, an EMA of the weights, checkpoints and resume.

``train(config, run_dir)`` writes into ``run_dir``:
- ``config.toml``: the fully resolved configuration;
- ``model.safetensors``: EMA weights for sampling plus the full training state,
  written atomically every ``checkpoint_every`` steps and at the end;
- ``train_log.csv``: step, mean loss since the last row, elapsed seconds, and a
  note on the row of a resume that changed settings;
- ``guide.safetensors``: with ``keep_guide_at = N``, the checkpoint of step N, a shorter-trained model of
  the same data for autoguidance (:mod:`scorelab.core.guidance`).

A class-conditional run (``conditional``) trains on (x, label), each label replaced by the null class with
probability ``label_dropout`` (Ho & Salimans 2022), so that one network learns s(x|c) and s(x|∅).

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

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.atomic import write_atomic
from scorelab.core.errors import CheckpointError, ConfigError, TrainingDiverged, one_line
from scorelab.core.guidance import NULL_LABEL
from scorelab.core.processes import NoiseProcess
from scorelab.core.rng import derived_seed
from scorelab.core.score import Score
from scorelab.core.threads import ThreadGovernor, step_work
from scorelab.data.normalisation import Normalisation
from scorelab.data.sources import data_part
from scorelab.models import build_model
from scorelab.objectives import OBJECTIVES, LossContext
from scorelab.pretrained import require_writable, resolve
from scorelab.runs.checkpoint import (
    CHECKPOINT_NAME,
    Checkpoint,
    load_checkpoint,
    restore_training_state,
    rng_key,
    save_checkpoint,
    saved_world_size,
    training_tensors,
)
from scorelab.runs.config import (
    NAME_KEYS,
    Config,
    OptimSettings,
    build_process,
    flat_fields,
    label_classes,
    read_toml,
    resolve_from_data,
)
from scorelab.runs.distributed import (
    World,
    collective,
    gather_to_all,
    mean_over_ranks,
    process_group,
    resolve_device,
    wait_for_main,
)
from scorelab.runs.legacy import saved_run_values
from scorelab.runs.lock import run_lock
from scorelab.runs.train_log import log_text, logged_rows
from scorelab.runs.trained import TrainedRun

# The checkpoint that keep_guide_at keeps: autoguidance's shorter-trained model of the run's data.
GUIDE_NAME = "guide.safetensors"

# What a resumed run may change: how long and how fast it trains, how often it writes, where it runs,
# and how it samples afterwards; never what shapes the model, the data or the objective.
RESUMABLE = frozenset({"steps", "lr", "lr_schedule", "checkpoint_every", "log_every", "device"})


def training_data(config: Config) -> Tensor:
    """The training set [n, *shape]: ``n_data`` seeded points of a named set, or every row of a file."""
    generator = torch.Generator().manual_seed(config.seed)
    return data_part(config.data.name).load(config.data.name, config.data.settings, generator)


def training_labels(config: Config) -> Tensor | None:
    """The class labels [n] of :func:`training_data`'s rows for a class-conditional run (None for another run):
    the data part draws them from a generator seeded as the data's was."""
    if not label_classes(config):
        return None
    generator = torch.Generator().manual_seed(config.seed)
    return data_part(config.data.name).labels(config.data.name, config.data.settings, generator)


def dropped_labels(labels: Tensor, dropout: float, generator: torch.Generator) -> Tensor:
    """``labels`` with each replaced by ``NULL_LABEL`` with probability ``dropout``, independently: the label
    dropout that teaches a class-conditional network its unconditional score (Ho & Salimans 2022)."""
    drop = torch.rand(labels.shape, generator=generator) < dropout
    return torch.where(drop.to(labels.device), NULL_LABEL, labels)


def data_normalisation(config: Config, raw: Tensor) -> Normalisation:
    """The map of the run's data ``raw`` to the model's units, as its modality sets it
    (:attr:`scorelab.data.modality.Modality.normalisation`)."""
    part = data_part(config.data.name)
    return part.modality.normalisation(part, config.data.name, config.data.settings, raw)


def parameter_count(model: nn.Module) -> int:
    """The number of parameters (weights, not buffers), whether or not they are frozen, as for a loaded run."""
    return sum(p.numel() for p in model.parameters())


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
          progress: bool = True, compile: bool = False, init_from: str | Path | None = None) -> TrainResult:
    """Train ``config``'s model with its objective on its noise process, and write the run directory.

    Args:
        config: the run configuration. On ``resume``, the checkpoint's run with the changes this
            config asks for (:func:`resume_changes`: steps, lr and its schedule, checkpoint and log
            intervals, device, sampler); a change to anything else is a :class:`ConfigError`.
        run_dir: where to write; created if needed.
        resume: continue from ``run_dir/model.safetensors``.
        overwrite: replace a trained model already in ``run_dir``.
        progress: show a tqdm progress bar with the loss.
        compile: train the network compiled by ``torch.compile`` (in place: its weights and checkpoint are
            the same); a one-time cost, then faster steps where the network is large enough to gain.
        init_from: fine-tune: start from this run's EMA weights (a run directory, or ``"pretrained:NAME"``)
            rather than a fresh initialisation, with a fresh optimiser, from step 0. ``config`` must build the
            same network (the run's own config with changes, as ``scorelab train --init-from`` makes it).

    Raises:
        TrainingDiverged: the loss became NaN or inf. The last checkpoint on disk is kept.
        RunDirectoryBusy: another process is training into ``run_dir`` (one writer per run
            directory: :func:`scorelab.runs.lock.run_lock`).
    """
    run_dir = Path(run_dir)
    require_writable(run_dir, "trained into")
    init = None if init_from is None else load_checkpoint(resolve(init_from))
    with process_group(resolve_device(config.device)) as world, collective(world):  # DDP's collectives too
        if not world.main:
            wait_for_main(world)  # rank 0 checks the run first; if it fails, its message is the one to read
            return _train(config, run_dir, resume, overwrite, progress, compile, world, init)
        with run_lock(run_dir):
            return _train(config, run_dir, resume, overwrite, progress, compile, world, init)


@dataclass
class _Setup:
    """What a training call starts from: the run's config (a resume's changes applied), the checkpoint it
    resumes from, those changes, the device, the training data in the model's units on it, and the trained
    run whose score the objective distils (None for most objectives)."""

    config: Config
    checkpoint: Checkpoint | None
    changes: dict[str, tuple[Any, Any]]
    device: torch.device
    normalisation: Normalisation
    data: Tensor
    labels: Tensor | None = None
    teacher: TrainedRun | None = None


@dataclass
class _State:
    """What the loop updates: the weights, their EMA, Adam, this rank's generator, the log rows and the
    losses since the last row."""

    model: nn.Module
    ema: nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    log_rows: list[dict]
    window: list[float]


def _train(config: Config, run_dir: Path, resume: bool, overwrite: bool, progress: bool, compile: bool,
           world: World, init: Checkpoint | None) -> TrainResult:
    setup = _setup(config, run_dir, resume, overwrite, world)
    config, checkpoint, changes = setup.config, setup.checkpoint, setup.changes
    process = build_process(config)
    shape = setup.normalisation.shape

    def new_model(sigma_data: float = 1.0) -> nn.Module:
        return build_model(config.model.name, config.model.settings, shape=shape, process=process,
                           sigma_data=sigma_data, seed=config.seed, classes=label_classes(config)).to(setup.device)

    model = new_model(float(setup.data.std()))
    if init is not None:
        start_fine_tuning(model, init)
    if setup.teacher is not None and OBJECTIVES[config.objective.name].starts_from_teacher(config.objective.settings):
        start_from(model, setup.teacher.model)
    ema = new_model()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    if compile:
        model.compile()
    state = _State(model, ema, torch.optim.Adam(model.parameters(), lr=config.optim.lr),
                   torch.Generator().manual_seed(rank_seed(config.seed, world.rank)), [], [])
    start = 0
    if world.main and not (run_dir / CHECKPOINT_NAME).exists():  # a new run shows its config at once
        write_atomic(run_dir / "config.toml", config.to_toml().encode())
    if checkpoint is not None:
        start = checkpoint.step
        restore_training_state(checkpoint, state.model, state.ema, state.optimizer, shape)
        saved_world = _restore_generator(checkpoint, state.generator, world)
        if saved_world != world.size:
            changes["world_size"] = (saved_world, world.size)
        state.log_rows = logged_rows(checkpoint, run_dir / "train_log.csv")
        # The losses since the last log row: a resume between rows carries them on (older checkpoints lack them).
        state.window = checkpoint.group("log").get("window", torch.zeros(0)).tolist()
    if changes:
        note = "; ".join(f"{key} {before} -> {after}" for key, (before, after) in changes.items())
        state.log_rows.append({"step": start, "loss": "", "note": f"resumed: {note}",
                               "seconds": state.log_rows[-1]["seconds"] if state.log_rows else "0"})
    return _loop(setup, state, process, start, run_dir, progress, world)


def _setup(config: Config, run_dir: Path, resume: bool, overwrite: bool, world: World) -> _Setup:
    """Check the run directory, load the data and resolve the config (a resume's changes reconciled)."""
    checkpoint, asked = None, config
    if resume:
        checkpoint = load_checkpoint(run_dir)
        if checkpoint.legacy:
            raise CheckpointError(f"{run_dir} was written by scorelab 0.1.0; it can be sampled and evaluated, "
                                  "but not resumed: train a new run")
        if not checkpoint.group("optim") and not checkpoint.group("model"):
            raise CheckpointError(f"{run_dir} holds EMA weights only (a pretrained run's), not a training state to "
                                  f"resume; fine-tune it with --init-from {run_dir} --out RUN")
        config = checkpoint.config
    elif (run_dir / CHECKPOINT_NAME).exists() and not overwrite:
        raise CheckpointError(f"{run_dir} already holds a trained model; use --resume, --overwrite or another --out")
    device = world.device(resolve_device(asked.device))
    raw = training_data(config)
    normalisation = data_normalisation(config, raw)
    data = normalisation.to_model(raw).to(device)
    config = resolve_from_data(config, data)
    changes: dict[str, tuple[Any, Any]] = {}
    if checkpoint is not None:
        config, changes = _reconcile_resume(checkpoint, config, asked, data)
    if config.optim.batch_size % world.size:
        raise ConfigError(f"batch_size = {config.optim.batch_size} does not split over {world.size} processes; "
                          f"use a multiple of {world.size}")
    labels = training_labels(config)
    teacher = _teacher(config, normalisation, device)
    if world.main:
        wait_for_main(world)  # the run checks out: the other ranks may set up too
    return _Setup(config, checkpoint, changes, device, normalisation, data,
                  None if labels is None else labels.to(device), teacher)


def _teacher(config: Config, normalisation: Normalisation, device: torch.device) -> TrainedRun | None:
    """The trained run whose score the objective distils, loaded read-only onto ``device`` (None where it
    distils none), after checking that it is a noise-conditional score of the student's data units."""
    run_dir = OBJECTIVES[config.objective.name].teacher(config.objective.settings)
    if not run_dir:
        return None
    teacher = TrainedRun.load(run_dir, str(device))
    check_teacher(teacher)
    if not teacher.normalisation.matches(normalisation):
        raise ConfigError(f"the teacher {run_dir} learned data of another shape or normalisation than this run's; "
                          "distil on the teacher's own data (as `scorelab distill` does)")
    return teacher


def check_teacher(teacher: TrainedRun) -> None:
    """A :class:`ConfigError` unless ``teacher`` is a noise-conditional score model s(x, σ), one that a
    consistency distillation can step the probability-flow ODE with (not itself a consistency model)."""
    if not teacher.noise_conditional:
        raise ConfigError(f"{teacher.run_dir} holds model {teacher.config.model.name!r}, an unconditional score s(x); "
                          "a teacher must be a noise-conditional score model s(x, σ) (e.g. --model edm)")
    if getattr(teacher.config.model.settings, "parameterisation", None) == "consistency":
        raise ConfigError(f"{teacher.run_dir} is a consistency model, not a score model: distil a diffusion run "
                          "(e.g. one trained with --model edm)")


def start_fine_tuning(model: nn.Module, init: Checkpoint) -> None:
    """Load ``init``'s EMA weights into ``model``; a one-line error if the networks differ."""
    try:
        model.load_state_dict(init.group("ema"))
    except RuntimeError as exc:
        raise CheckpointError(f"--init-from: the run's weights do not fit the network asked for; change only "
                              f"settings that keep the network ({one_line(exc)[:200]})") from None


def start_from(model: nn.Module, teacher: nn.Module) -> bool:
    """Copy the teacher's backbone weights into ``model``'s where the two backbones have the same tensors
    (names and shapes); whether they did. σ_d and σ_min stay the model's own."""
    own = {key: value for key, value in model.state_dict().items() if key.startswith("backbone.")}
    theirs = {key: value for key, value in teacher.state_dict().items() if key.startswith("backbone.")}
    if own.keys() != theirs.keys() or any(own[key].shape != theirs[key].shape for key in own):
        return False
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(theirs[key])
    return True


def _reconcile_resume(checkpoint: Checkpoint, saved: Config, asked: Config,
                      data: Tensor) -> tuple[Config, dict[str, tuple[Any, Any]]]:
    """The config a resume trains on (``asked``, its "from the data" settings resolved as the saved run
    resolved them) and what it changes, or a :class:`ConfigError` for a change a resume may not make."""
    asked = resolve_from_data(asked, data)
    changes = resume_changes(saved, asked)
    if asked.optim.steps < checkpoint.step:
        raise ConfigError(f"steps = {asked.optim.steps} is below the checkpoint's step {checkpoint.step}; "
                          "a run cannot be shortened")
    return asked, changes


def _loop(setup: _Setup, state: _State, process: NoiseProcess, start: int, run_dir: Path, progress: bool,
          world: World) -> TrainResult:
    """Steps ``start + 1`` … ``steps``: a minibatch, the loss, Adam, the EMA; a log row every ``log_every``
    steps and a checkpoint every ``checkpoint_every``; a non-finite loss stops the run."""
    from tqdm.auto import tqdm

    config, data, normalisation, device = setup.config, setup.data, setup.normalisation, setup.device
    optim = config.optim
    # DDP averages the gradients over the ranks; the EMA and the checkpoint read the module inside.
    net = state.model if world.size == 1 else nn.parallel.DistributedDataParallel(
        state.model, device_ids=[device.index] if device.type == "cuda" else None)
    objective = OBJECTIVES[config.objective.name]
    part = data_part(config.data.name)
    condition = part.condition  # e.g. each waveform segment's log-mel spectrogram
    prior = part.noise_prior(config.data.settings, normalisation)  # PriorGrad's or SpecGrad's: noise shaped by the mel
    extra_rows = objective.extra_rows(config.objective.settings)
    begin = time.perf_counter() - (float(state.log_rows[-1]["seconds"]) if state.log_rows else 0.0)
    loss_value = math.nan
    bar = tqdm(total=optim.steps, initial=start, disable=not (progress and world.main), dynamic_ncols=True,
               desc=f"train {config.model.name} ({parameter_count(state.model):,} parameters)")
    rows_per_rank = optim.batch_size // world.size + extra_rows
    teacher: Score | None = None if setup.teacher is None else setup.teacher.model
    threads = ThreadGovernor(step_work(state.model, rows_per_rank, data.shape[1:]))
    for step in range(start + 1, optim.steps + 1):
        threads.tick()
        rows = minibatch_rows(len(data), rows_per_rank, state.generator).to(device)
        batch = data[rows]
        cond = None if condition is None else condition(normalisation.to_data(batch))
        if prior is not None:  # diffusing u = L_c⁻¹x with white noise is diffusing x with N(0, L_c L_cᵀ)
            batch = prior.whiten(batch, cond)
        if setup.labels is not None:
            cond = dropped_labels(setup.labels[rows], config.data.label_dropout, state.generator)
        loss = objective.loss(net, batch, cond, process, config.objective.settings, state.generator,
                              LossContext(step, optim.steps, teacher))
        loss_value = mean_over_ranks(loss.detach(), world).item()  # every rank sees a NaN on any of them
        if not math.isfinite(loss_value):
            bar.close()
            kept = f"the last good checkpoint ({run_dir / CHECKPOINT_NAME}) is kept" if (
                run_dir / CHECKPOINT_NAME).exists() else "no checkpoint had been written yet"
            raise TrainingDiverged(
                f"training diverged at step {step} (loss = {loss_value}); {kept}; try a smaller --lr")
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(optim, step)
        state.optimizer.step()
        _update_ema(state.ema, state.model, optim.ema_decay, step)
        state.window.append(loss_value)
        bar.update(1)
        if step % optim.log_every == 0 or step == optim.steps:
            mean_loss = sum(state.window) / len(state.window)
            state.log_rows.append({"step": step, "loss": f"{mean_loss:.6g}",
                                   "seconds": f"{time.perf_counter() - begin:.3f}"})
            bar.set_postfix(loss=f"{mean_loss:.4g}")
            state.window = []
        if step % optim.checkpoint_every == 0 or step == optim.steps:
            _save(run_dir, step, config, state, normalisation, world)
        if step == optim.keep_guide_at:
            _save(run_dir, step, config, state, normalisation, world, GUIDE_NAME)
    bar.close()
    if setup.changes and start == optim.steps:  # nothing left to train, but the run's record takes the new settings
        _save(run_dir, start, config, state, normalisation, world)
    return TrainResult(run_dir, optim.steps, time.perf_counter() - begin, loss_value, parameter_count(state.model),
                       start, setup.changes)


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


def _save(run_dir: Path, step: int, config: Config, state: _State, normalisation: Normalisation,
          world: World, name: str = CHECKPOINT_NAME) -> None:
    """Write the checkpoint, then the log and the config beside it (see the module's docstring for why);
    rank 0 writes, with every rank's random state. Under another ``name`` (the guide) only the checkpoint."""
    rng_states = gather_to_all(state.generator.get_state(), world)
    if not world.main:
        return
    tensors = training_tensors(state.model, state.ema, state.optimizer, rng_states, normalisation, state.window)
    log = log_text(state.log_rows)
    save_checkpoint(run_dir, Checkpoint(step, config, tensors, parameters=parameter_count(state.model), train_log=log),
                    name)
    if name != CHECKPOINT_NAME:
        return
    write_atomic(run_dir / "train_log.csv", log.encode())
    write_atomic(run_dir / "config.toml", config.to_toml().encode())


def _restore_generator(checkpoint: Checkpoint, generator: torch.Generator, world: World) -> int:
    """Give this rank's generator its saved state and return the world size the checkpoint was written by.

    Under another world size the ranks draw other rows than they would have, so each starts a stream of
    its own, named by the step it resumes from: the run goes on, with other minibatches from there."""
    saved_world = saved_world_size(checkpoint)
    if saved_world == world.size:
        generator.set_state(checkpoint.tensors[rng_key(world.rank)])
    else:
        generator.manual_seed(derived_seed(checkpoint.config.seed, "resume", checkpoint.step, "rank", world.rank))
    return saved_world


