"""WaveGrad's few-step noise schedules, found by a search and saved in the run.

A network trained on a continuum of noise levels (WaveGrad's draw of √ᾱ, :class:`scorelab.core.processes.VP`
with ``continuous``) can walk any chain β_1, …, β_N at sampling time. Chen et al. 2020 (Sec. 4.2 and
App. B) choose a short chain by a grid search scored on held-out audio; here the candidates for N
steps are

- ``respaced``: the training chain at N evenly spaced steps (what sampling does without a search);
- ``geometric β_1→β_N``: β_n = β_1·(β_N/β_1)^((n−1)/(N−1)), each β a fixed multiple of the last, over a
  small grid of ends, which for a chain that starts from Griffin-Lim's waveform (the sampler's ``start``)
  reaches down to the small levels that only refine it;

each vocoding validation segments, held out of the train split (:attr:`scorelab.data.audio.AudioSet.validation`),
from the run's start, and scored by the mean log-mel L1 distance to them
(:func:`scorelab.metrics.audio.log_mel_distance`). The chosen chain is the one a listener would rate best, by
the mean DNSMOS overall score (:func:`scorelab.metrics.speech_quality.dnsmos`), among those whose log-mel L1 is
within :data:`L1_FACTOR` times Griffin-Lim-32's on the same segments, and the one with the least log-mel L1
where none is (then no DNSMOS is needed, which saves seconds a clip). The best for each N becomes the run's ``wavegrad`` sampler setting
``schedules`` (a plain setting, as diffusers saves ``trained_betas``), which the sampler reads for its
``sample_steps``; the search's record, every candidate's scores, is written to ``RUN_DIR/schedule_search.json``.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scorelab.core.atomic import write_atomic
from scorelab.core.errors import CheckpointError
from scorelab.core.noise import alphas_cumprod, beta_schedule, spaced_timesteps
from scorelab.data.audio import HOP, SAMPLE_RATE, segments
from scorelab.data.griffin_lim import griffin_lim
from scorelab.data.mel import log_mel
from scorelab.evaluation.audio import audio_set_of, run_start
from scorelab.evaluation.vocoding import first_estimate
from scorelab.metrics.audio import log_mel_distance
from scorelab.metrics.speech_quality import dnsmos
from scorelab.runs.checkpoint import save_config
from scorelab.runs.config import Config
from scorelab.runs.trained import TrainedRun
from scorelab.sampling.settings import format_betas, format_schedules

RECORD_FILE = "schedule_search.json"
SEARCHED_STEPS = (6, 25, 50)
# Ends of the geometric candidates: the first β sets the last level's noise, the last how far from the data x_N starts
# (from Griffin-Lim's waveform, also the small levels that only refine it).
FIRST_BETAS, LAST_BETAS = (1e-6, 1e-5, 1e-4, 1e-3), (0.1, 0.3, 0.5, 0.8)
REFINING_LAST_BETAS = (1e-4, 1e-3, 1e-2, 0.03)
# Segments of 1.5 s: DNSMOS repeats a shorter clip until it fills its 9 s window, and reads a phrase better than a
# syllable.
VALIDATION_SEGMENTS, VALIDATION_FRAMES = 2, 128
L1_FACTOR, GRIFFIN_LIM_ITERATIONS = 1.5, 32


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


def candidates(training_betas: Tensor, n_steps: int, start: str = "noise") -> dict[str, list[float]]:
    """The schedules the search scores for ``n_steps`` from ``start``, by name (see the module docstring)."""
    found = {"respaced": respaced_betas(training_betas, n_steps)}
    lasts = LAST_BETAS if start == "noise" else (*REFINING_LAST_BETAS, *LAST_BETAS)
    for first in FIRST_BETAS:
        for last in lasts:
            if first < last:
                found[f"geometric {first:g}→{last:g}"] = geometric_betas(first, last, n_steps)
    return found


def validation_segments(run: TrainedRun, count: int = VALIDATION_SEGMENTS, frames: int = VALIDATION_FRAMES) -> Tensor:
    """Up to ``count`` segments of ``frames`` mel frames from the run's validation utterances, [K, 1, L]
    (shorter where the utterances are short)."""
    validation = audio_set_of(run).validation
    length = min(frames * HOP, max(len(wave) for wave in validation) // HOP * HOP)
    return segments(validation, length, HOP)[:count]


def reconstruction(run: TrainedRun, mel: Tensor, guess: Tensor | None, betas: list[float], seed: int = 0) -> Tensor:
    """The run's reconstructions [K, 1, L] of the waveforms whose log-mel spectrograms are ``mel`` [K, n_mels, frames]
    along the chain ``betas``, from ``guess`` (the run's first estimate, :func:`first_estimate`) where it has one
    (seeded, so every candidate sees the same noise)."""
    return run.sample(len(mel), sampler="wavegrad", cond=mel.to(run.device), shape=(1, mel.shape[-1] * HOP),
                      generator=torch.Generator().manual_seed(seed), betas=format_betas(betas), guess=guess)


def rated(out: Tensor) -> float:
    """The mean DNSMOS overall score of the waveforms ``out`` [K, 1, L]."""
    return statistics.fmean(dnsmos(wave, SAMPLE_RATE)["ovrl"] for wave in out[:, 0])


def choose(found: dict[str, dict[str, float]], l1_bound: float) -> str:
    """The candidate with the best DNSMOS among those whose log-mel L1 is at most ``l1_bound``; else the least L1."""
    within = [name for name, score in found.items() if score["log_mel_l1"] <= l1_bound]
    if within:
        return max(within, key=lambda name: found[name]["dnsmos"])
    return min(found, key=lambda name: found[name]["log_mel_l1"])


def searches(config: Config) -> bool:
    """Whether a run of ``config`` has its schedules searched after training: its sampler walks them."""
    return config.sampler.name == "wavegrad"


def prepare(run_dir: Path, steps: tuple[int, ...] = SEARCHED_STEPS) -> dict[str, Any]:
    """Search a schedule for each N of ``steps`` for the trained WaveGrad run in ``run_dir``, save them as its
    sampler's ``schedules`` and the search's record in :data:`RECORD_FILE`."""
    run = TrainedRun.load(run_dir)
    waves = validation_segments(run)
    mel = log_mel(waves[:, 0])
    guess = first_estimate(run, mel, sampler="wavegrad")  # the same for every candidate: made once
    griffin = griffin_lim(mel, n_iter=GRIFFIN_LIM_ITERATIONS)[:, None]
    griffin_scores = {"log_mel_l1": log_mel_distance(griffin[:, 0], waves[:, 0]).mean().item(), "dnsmos": rated(griffin)}
    bound = L1_FACTOR * griffin_scores["log_mel_l1"]
    process = run.config.process
    training = beta_schedule(process.schedule, process.timesteps)
    start = run_start(run)
    saved = {}
    for n_steps in steps:
        chains = candidates(training, n_steps, start)
        found = {}
        for name, betas in chains.items():
            out = reconstruction(run, mel, guess, betas)
            found[name] = {"log_mel_l1": log_mel_distance(out[:, 0], waves[:, 0]).mean().item()}
            if found[name]["log_mel_l1"] <= bound:  # DNSMOS takes seconds a clip: only where it can choose
                found[name]["dnsmos"] = rated(out)
        name = choose(found, bound)
        saved[str(n_steps)] = {"name": name, "betas": chains[name], "log_mel_error": found[name]["log_mel_l1"],
                               "dnsmos": found[name].get("dnsmos"), "start": start, "griffin_lim": griffin_scores,
                               "candidates": found}
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
