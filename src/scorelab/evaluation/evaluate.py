"""Evaluation of a trained run: the W2 ratio against fresh data and held-out likelihoods, or for images
the measures of :mod:`scorelab.evaluation.images`, and for waveforms those of :mod:`scorelab.evaluation.audio`.

``scorelab evaluate RUN_DIR`` prints the table of :func:`evaluate_run`, which also writes
``RUN_DIR/metrics.json``; what is measured and printed depends on the run's modality (:data:`EVALUATIONS`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from scorelab.core.atomic import write_atomic
from scorelab.data import reference_nll
from scorelab.data.sources import Truth, data_part
from scorelab.evaluation.audio import (
    WAVEGRAD_STEPS,
    evaluate_audio,
    format_audio_report,
)
from scorelab.evaluation.images import evaluate_images, format_image_report
from scorelab.metrics import RatioReport, w2_ratio
from scorelab.pretrained import name_of
from scorelab.runs.trained import TrainedRun
from scorelab.sampling.likelihood import variational_bound


def truth_of(run: TrainedRun) -> Truth:
    """Fresh data for the run's data set: a sampler for a named set, the rows themselves for a file."""
    data = run.config.data
    return data_part(data.name).truth(data.name, data.settings)


def truth_key(name: str, truth: Truth) -> dict:
    """What determines the fresh data ``truth`` of the data set ``name``: the name of a generated
    set, the rows of a file (the key of its cached W2 floor, :func:`scorelab.metrics.quality`)."""
    if isinstance(truth, torch.Tensor):
        return {"rows_sha256": hashlib.sha256(truth.contiguous().numpy().tobytes()).hexdigest()}
    return {"dataset": name}


def evaluate_run(run: TrainedRun, *, n: int | None = None, repeats: int = 3, seed: int = 1,
                 n_test: int | None = None, wavegrad_steps: tuple[int, ...] | None = None, **options: Any) -> dict:
    """The W2 ratio of ``run`` for ``n`` points (default 5000; with ``n_test`` the test NLL), or for an
    image run :func:`scorelab.evaluation.images.evaluate_images` of ``n`` images (default 1000; ``n_test``
    test images for bits/dim, None: none), or for a waveform run :func:`scorelab.evaluation.audio.evaluate_audio`
    of ``n`` test utterances (default 4) at ``wavegrad_steps``, written to ``RUN_DIR/metrics.json`` (but for a
    pretrained run, which is read-only: ``scorelab evaluate`` evaluates a copy of it).

    ``options`` are the sampler's for the samples drawn (guidance's among them: an image run trained on labels is
    measured class by class, guided as they say).

    The W2 floor is computed once per data set, n, repetitions and seed, and then read from the user's cache.
    """
    metrics: dict = {"step": run.step, "dataset": run.config.data.name}
    metrics |= EVALUATIONS[run.modality.name].measure(run, n, repeats, seed, n_test, wavegrad_steps, options)
    if name_of(run.run_dir) is None:
        write_atomic(run.run_dir / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


def held_out_nll(run: TrainedRun, n_test: int, seed: int) -> dict:
    """Mean ± standard error of −log p in nats on fresh test points (for a file: random rows of it,
    which the model was trained on): through the probability-flow ODE, and the variational bound
    of the ancestral chain on the run's grid."""
    generator = torch.Generator().manual_seed(seed + 7919)
    truth = truth_of(run)
    x = truth[torch.randperm(len(truth), generator=generator)[:n_test]] if isinstance(truth, torch.Tensor) \
        else truth(n_test, generator)
    nll = -run.log_prob(x, generator=generator)
    bound = variational_bound(run.model, run.normalisation.to_model(x).to(run.device), run.process,
                              generator=generator).total.cpu() + run.normalisation.log_det()
    return {"n": len(x), "ode_nll": nll.mean().item(), "ode_nll_se": nll.std().item() / len(x) ** 0.5,
            "bound": bound.mean().item(), "bound_se": bound.std().item() / len(x) ** 0.5,
            "data_nll": reference_nll(run.config.data.name, x)}


def format_report(report: RatioReport) -> str:
    return "\n".join([
        f"{'metric':<10}{'model':>18}{'floor (data vs iid data)':>26}{'ratio':>8}",
        f"{'W2':<10}{report.model_mean:>10.4f} ± {report.model_std:<6.4f}"
        f"{report.floor_mean:>18.4f} ± {report.floor_std:<6.4f}{report.ratio:>8.3f}",
        f"(means ± std over {report.repeats} repetitions, the floor's over {report.floor_repeats}, "
        f"n = {report.n} per set)",
    ])


def format_nll(nll: dict) -> str:
    lines = [f"test NLL (probability-flow ODE)  {nll['ode_nll']:.4f} ± {nll['ode_nll_se']:.4f} nats  (n = {nll['n']})",
             f"variational bound (ancestral)    {nll['bound']:.4f} ± {nll['bound_se']:.4f} nats"]
    if nll["data_nll"] is not None:
        lines.append(f"data's own NLL (exact/entropy)   {nll['data_nll']:.4f} nats")
    return "\n".join(lines)


def _measure_points(run: TrainedRun, n: int | None, repeats: int, seed: int, n_test: int | None,
                    wavegrad_steps: tuple[int, ...] | None, options: dict) -> dict:
    truth = truth_of(run)
    measured = {"w2": w2_ratio(lambda k, g: run.sample(k, generator=g, **options), truth, n=n or 5000, repeats=repeats, seed=seed,
                               floor_key=truth_key(run.config.data.name, truth)).to_dict()}
    if n_test is not None:
        measured["nll"] = held_out_nll(run, n_test, seed)
    return measured


def _format_points(metrics: dict) -> str:
    lines = [format_report(RatioReport(**metrics["w2"]))]
    if "nll" in metrics:
        lines.append(format_nll(metrics["nll"]))
    return "\n".join(lines)


@dataclass(frozen=True)
class ModalityEvaluation:
    """How a run of one modality is measured: ``measure(run, n, repeats, seed, n_test, wavegrad_steps, options)``
    (``options``: the sampler's, for the samples drawn) gives
    the entries of ``metrics.json``, ``format(metrics)`` the table ``scorelab evaluate`` prints, and
    ``likelihood_by_default`` whether the command measures the test likelihood without ``--nll``."""

    measure: Callable[[TrainedRun, int | None, int, int, int | None, tuple[int, ...] | None, dict], dict]
    format: Callable[[dict], str]
    likelihood_by_default: bool = False


# By the run's modality (:attr:`scorelab.data.modality.Modality.name`).
EVALUATIONS = {
    "points": ModalityEvaluation(_measure_points, _format_points),
    "images": ModalityEvaluation(
        lambda run, n, repeats, seed, n_test, wavegrad_steps, options: {"images": evaluate_images(
            run, n=n or 1000, seed=seed, bits=n_test is not None, n_test=n_test, **options)},
        lambda metrics: format_image_report(metrics["images"]), likelihood_by_default=True),
    "waveforms": ModalityEvaluation(
        lambda run, n, repeats, seed, n_test, wavegrad_steps, options: {"audio": evaluate_audio(
            run, n=n or 4, wavegrad_steps=wavegrad_steps or WAVEGRAD_STEPS, seed=seed)},
        lambda metrics: format_audio_report(metrics["audio"])),
}
