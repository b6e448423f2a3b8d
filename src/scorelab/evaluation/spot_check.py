"""A spot check: one seeded score of a trained run on a small sample, in seconds.

It guards the runs that ship (:mod:`scorelab.pretrained`) against regressions: ``benchmarks/pretrain.py`` records
the check at several seeds, and a test recomputes one of them and asks it to lie within a few of the recorded
seeds' standard deviations, the metric's own noise at that size. By the run's modality:

- points: the exact W2 distance between :data:`SIZES` ["points"] samples and as many fresh data points;
- images: the Fréchet distance *in pixel space* between :data:`SIZES` ["images"] samples (a class-conditional
  run's classes in turn) and the test split: no feature classifier to train, so it costs only the sampling;
- waveforms: the log-mel L1 distance between the run's default vocoding of its first test utterance and the
  utterance itself.

Seed ``s`` draws the same samples on the same machine; the numbers are not comparable across modalities.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from scorelab.evaluation.audio import distances, test_utterances
from scorelab.evaluation.evaluate import truth_of
from scorelab.evaluation.images import image_set_of
from scorelab.evaluation.vocoding import vocode
from scorelab.metrics import wasserstein2
from scorelab.metrics.features import frechet_distance
from scorelab.runs.trained import TrainedRun

SIZES = {"points": 1000, "images": 200, "waveforms": 1}
LABELS = {"points": "W2 of 1000 points", "images": "pixel FD of 200 images",
          "waveforms": "log-mel L1 of test utterance 0"}


def _points(run: TrainedRun, seed: int) -> float:
    n, truth = SIZES["points"], truth_of(run)
    data = truth if isinstance(truth, torch.Tensor) else truth(n, torch.Generator().manual_seed(seed + 1))
    samples = run.sample(n, generator=torch.Generator().manual_seed(seed))
    return wasserstein2(samples, data[:n])


def _images(run: TrainedRun, seed: int) -> float:
    samples = run.sample_rows(0, SIZES["images"], seed=seed)
    return frechet_distance(samples.flatten(1), image_set_of(run).test.flatten(1))


def _waveforms(run: TrainedRun, seed: int) -> float:
    (wave,), _ = test_utterances(run, SIZES["waveforms"])
    return distances(vocode(run, wave, generator=torch.Generator().manual_seed(seed)).wave, wave)[0]


CHECKS: dict[str, Callable[[TrainedRun, int], float]] = {"points": _points, "images": _images,
                                                         "waveforms": _waveforms}


def spot_check(run: TrainedRun, seed: int = 0) -> float:
    """The run's spot check at ``seed`` (what is measured: :data:`LABELS`, by the run's modality)."""
    return CHECKS[run.modality.name](run, seed)
