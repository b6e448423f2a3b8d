"""WaveGrad's few-step noise schedules, found by a search and saved in the run.

A network trained on a continuum of noise levels (WaveGrad's draw of √ᾱ, :class:`scorelab.core.processes.VP`
with ``continuous``) can walk any chain β_1, …, β_N at sampling time. Chen et al. 2020 (Sec. 4.2 and
App. B) choose a short chain by a grid search scored on held-out audio; here the candidates for N
steps are

- ``respaced``: the training chain at N evenly spaced steps (what sampling does without a search);
- ``geometric β_1→β_N``: β_n = β_1·(β_N/β_1)^((n−1)/(N−1)), each β a fixed multiple of the last, over a
  small grid of ends;

each scored by the mean log-mel L1 distance (:func:`scorelab.metrics.audio.log_mel_distance`)
between validation segments, held out of the train split (:attr:`scorelab.data.audio.AudioSet.validation`),
and their reconstruction by the chain. The best for each N becomes the run's ``wavegrad`` sampler setting
``schedules`` (a plain setting, as diffusers saves ``trained_betas``), which the sampler reads for its
``sample_steps``; the search's record, every candidate's error, is written to ``RUN_DIR/schedule_search.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scorelab.core.atomic import write_atomic
from scorelab.core.errors import CheckpointError
from scorelab.core.noise import alphas_cumprod, beta_schedule, spaced_timesteps
from scorelab.data.audio import HOP, segments
from scorelab.data.mel import log_mel
from scorelab.evaluation.audio import audio_set_of
from scorelab.metrics.audio import log_mel_distance
from scorelab.runs.checkpoint import save_config
from scorelab.runs.config import Config
from scorelab.runs.trained import TrainedRun
from scorelab.sampling.settings import format_betas, format_schedules

RECORD_FILE = "schedule_search.json"
SEARCHED_STEPS = (6, 25, 50)
# Ends of the geometric candidates: the first β sets the last level's noise, the last how far from the data x_N starts.
FIRST_BETAS, LAST_BETAS = (1e-6, 1e-5, 1e-4, 1e-3), (0.1, 0.3, 0.5, 0.8)
VALIDATION_SEGMENTS, VALIDATION_FRAMES = 2, 32


def geometric_betas(first: float, last: float, n_steps: int) -> list[float]:
    """β_n = first·(last/first)^((n − 1)/(N − 1)), n = 1…N (just ``last`` for N = 1)."""
    if n_steps == 1:
        return [last]
    return [first * (last / first) ** (n / (n_steps - 1)) for n in range(n_steps)]


def respaced_betas(betas: Tensor, n_steps: int) -> list[float]:
    """The chain ``betas`` at ``n_steps`` evenly spaced steps t_1 < … < t_N: β'_n = 1 − ᾱ_{t_n}/ᾱ_{t_{n−1}}
    (ᾱ_{t_0} = 1), so that the short chain reaches the same ᾱ at each kept step (Song et al. 2020, DDIM)."""
    kept = alphas_cumprod(betas)[spaced_timesteps(len(betas), n_steps)]
    previous = torch.cat([torch.ones(1, dtype=kept.dtype), kept[:-1]])
    return (1 - kept / previous).tolist()


def candidates(training_betas: Tensor, n_steps: int) -> dict[str, list[float]]:
    """The schedules the search scores for ``n_steps``, by name (see the module docstring)."""
    found = {"respaced": respaced_betas(training_betas, n_steps)}
    for first in FIRST_BETAS:
        for last in LAST_BETAS:
            found[f"geometric {first:g}→{last:g}"] = geometric_betas(first, last, n_steps)
    return found


@dataclass(frozen=True)
class SearchResult:
    """The best schedule's name, its β's and every candidate's error."""

    name: str
    betas: list[float]
    errors: dict[str, float]


def search(error: Callable[[list[float]], float], schedules: dict[str, list[float]]) -> SearchResult:
    """The schedule of ``schedules`` with the smallest ``error`` (ties: the first), and every error."""
    errors = {name: float(error(betas)) for name, betas in schedules.items()}
    best = min(errors, key=errors.__getitem__)
    return SearchResult(best, schedules[best], errors)


def validation_segments(run: TrainedRun, count: int = VALIDATION_SEGMENTS, frames: int = VALIDATION_FRAMES) -> Tensor:
    """Up to ``count`` segments of ``frames`` mel frames from the run's validation utterances, [K, 1, L]
    (shorter where the utterances are short)."""
    validation = audio_set_of(run).validation
    length = min(frames * HOP, max(len(wave) for wave in validation) // HOP * HOP)
    return segments(validation, length, HOP)[:count]


def reconstruction_error(run: TrainedRun, waves: Tensor, betas: list[float], seed: int = 0) -> float:
    """The mean log-mel L1 distance between ``waves`` [K, 1, L] and the run's reconstructions of them from
    their mel spectrograms along the chain ``betas`` (seeded, so every candidate sees the same noise)."""
    mel = log_mel(waves[:, 0]).to(run.device)
    out = run.sample(len(waves), sampler="wavegrad", cond=mel, shape=tuple(waves.shape[1:]),
                     generator=torch.Generator().manual_seed(seed), betas=format_betas(betas))
    return log_mel_distance(out[:, 0], waves[:, 0]).mean().item()


def searches(config: Config) -> bool:
    """Whether a run of ``config`` has its schedules searched after training: its sampler walks them."""
    return config.sampler.name == "wavegrad"


def prepare(run_dir: Path, steps: tuple[int, ...] = SEARCHED_STEPS) -> dict[str, Any]:
    """Search a schedule for each N of ``steps`` for the trained WaveGrad run in ``run_dir``, save them as its
    sampler's ``schedules`` and the search's record in :data:`RECORD_FILE`."""
    run = TrainedRun.load(run_dir)
    waves = validation_segments(run)
    process = run.config.process
    training = beta_schedule(process.schedule, process.timesteps)
    saved = {}
    for n_steps in steps:
        result = search(lambda betas: reconstruction_error(run, waves, betas), candidates(training, n_steps))
        saved[str(n_steps)] = {"name": result.name, "betas": result.betas, "log_mel_error": result.errors[result.name],
                               "candidates": result.errors}
    save_config(run_dir, run.config.replace(schedules=format_schedules(saved)))
    write_atomic(Path(run_dir) / RECORD_FILE, (json.dumps(saved, indent=1) + "\n").encode())
    return saved


def saved_record(run_dir: Path) -> dict[str, Any]:
    """The search's record saved in ``run_dir`` by :func:`prepare` ({} if none was)."""
    path = Path(run_dir) / RECORD_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc}); delete it and run the schedule search again") from None
