"""The quality of an image run, measured on the test split of its data set.

No Inception weights exist offline, so features come from a small classifier that scorelab trains
on the run's *training* split (:mod:`scorelab.metrics.classifier`, cached). In its penultimate features:

- Fréchet distance and KID between model samples and the test split, each beside its floor: the
  same distance between an equal-size draw from the training split and the test split; the ratio
  reads like the W2 ratio (1 = as close as real images of the same size).
- Precision and recall (k = 3) of the samples against the test split, and the same of the draw.
- Class coverage: the classifier's labels of the samples, against uniform.
- For a class-conditional run, whose samples are drawn class by class (sample i of class i mod K, guided as
  asked): per class, the share of its samples that the classifier assigns to it (class agreement) and the
  Fréchet distance ratio against that class's test images.

In pixels: memorisation (how many samples sit closer to a training image than nearly every test
image does), and bits per dimension of the test split (:mod:`scorelab.metrics.bits`) beside a Gaussian and
a Gaussian mixture. Sets without labels (a user's images) get the pixel measures only.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import require_positive_int
from scorelab.data.images import ImageSet
from scorelab.data.sources import data_part
from scorelab.metrics.bits import bits_per_dim, dequantise, gaussian_bits, mixture_bits
from scorelab.metrics.classifier import accuracy, classifier_for, embed, predict
from scorelab.metrics.features import (
    class_coverage,
    frechet_distance,
    kernel_inception_distance,
    memorisation,
    precision_recall,
)
from scorelab.runs.trained import TrainedRun


def image_set_of(run: TrainedRun) -> ImageSet:
    """The run's data set, split as it was for training."""
    data = run.config.data
    return data_part(data.name).images(data.name, data.settings)


def classifier_of(run: TrainedRun):
    """The feature classifier of the run's data set, trained on its training split (cached)."""
    image_set, data = image_set_of(run), run.config.data
    # One-pixel shifts: digits' 1437 training images alone leave the classifier short of 97% test accuracy.
    return classifier_for(run.normalisation.to_model(image_set.train), image_set.train_labels,
                          key={"dataset": data.name, **data.to_dict()}, augment=True)


def _ratio(model_values: list[float], floor_values: list[float]) -> dict:
    """Means over the blocks and their ratio; None where the floor is not positive (KID is unbiased, so
    its floor is centred on 0 and can fall below it)."""
    model, floor = statistics.fmean(model_values), statistics.fmean(floor_values)
    return {"model": model, "floor": floor, "ratio": model / floor if floor > 0 else None,
            "repeats": len(model_values)}


def _feature_blocks(run: TrainedRun, samples: Tensor, image_set: ImageSet,
                    seed: int) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Classifier features of the test split (m images), of blocks of m samples, and of as many seeded draws of
    m training images (the floor)."""
    classifier = classifier_of(run)
    to_model = run.normalisation.to_model
    test = to_model(image_set.test)
    m = len(test)
    blocks = max(1, min(3, len(samples) // m))
    generator = torch.Generator().manual_seed(seed)
    draws = [to_model(image_set.train[torch.randperm(len(image_set.train), generator=generator)[:m]])
             for _ in range(blocks)]
    sample_features = embed(classifier, to_model(samples))
    return (embed(classifier, test), [sample_features[b * m:(b + 1) * m] for b in range(blocks)],
            [embed(classifier, draw) for draw in draws])


def feature_quality(run: TrainedRun, samples: Tensor, image_set: ImageSet, seed: int) -> dict:
    """FD, KID, precision/recall and class coverage of ``samples`` (data units) in classifier features.

    The test split (m images) is compared with blocks of m samples and with as many seeded draws of
    m training images (the floor); ``samples`` must hold at least m.
    """
    classifier = classifier_of(run)
    test_features, sample_blocks, draw_blocks = _feature_blocks(run, samples, image_set, seed)
    result: dict[str, Any] = {"classifier_test_accuracy": accuracy(
        classifier, run.normalisation.to_model(image_set.test), image_set.test_labels), "block_size": len(test_features)}
    for name, distance in (("fd", frechet_distance), ("kid", kernel_inception_distance)):
        result[name] = _ratio([distance(block, test_features) for block in sample_blocks],
                              [distance(block, test_features) for block in draw_blocks])
    model_pr = [precision_recall(test_features, block, k=3) for block in sample_blocks]
    floor_pr = [precision_recall(test_features, block, k=3) for block in draw_blocks]
    result["precision"] = {"model": statistics.fmean(p for p, _ in model_pr),
                           "floor": statistics.fmean(p for p, _ in floor_pr)}
    result["recall"] = {"model": statistics.fmean(r for _, r in model_pr),
                        "floor": statistics.fmean(r for _, r in floor_pr)}
    predicted = predict(classifier, run.normalisation.to_model(samples))
    result["classes"] = class_coverage(predicted, int(image_set.train_labels.max()) + 1)
    return result


def of_class(image_set: ImageSet, label: int) -> ImageSet:
    """The images of class ``label`` alone, from each split."""
    return dataclasses.replace(image_set, train=image_set.train[image_set.train_labels == label],
                               test=image_set.test[image_set.test_labels == label],
                               train_labels=image_set.train_labels[image_set.train_labels == label],
                               test_labels=image_set.test_labels[image_set.test_labels == label])


def class_quality(run: TrainedRun, samples: Tensor, labels: Tensor, image_set: ImageSet, seed: int) -> dict:
    """Per requested class: the share of its samples the feature classifier assigns to it (agreement) and
    the FD ratio of its samples against the class's test images (floor: its training images); and the
    agreement over all samples."""
    classifier = classifier_of(run)
    predicted = predict(classifier, run.normalisation.to_model(samples))
    rows = []
    for label in range(run.classes):
        chosen = labels == label
        test_features, sample_blocks, draw_blocks = _feature_blocks(run, samples[chosen], of_class(image_set, label),
                                                                    seed)
        fd = _ratio([frechet_distance(block, test_features) for block in sample_blocks],
                    [frechet_distance(block, test_features) for block in draw_blocks])
        rows.append({"class": label, "n": int(chosen.sum()),
                     "agreement": (predicted[chosen] == label).float().mean().item(), "fd": fd})
    return {"agreement": (predicted == labels).float().mean().item(), "per_class": rows}


def test_bits(run: TrainedRun, image_set: ImageSet, seed: int, n_test: int | None = None) -> dict:
    """Bits per dimension of (the first ``n_test`` of) the test split, dequantised once, under the run's
    probability-flow ODE, a Gaussian and a Gaussian mixture fitted to the dequantised training split."""
    generator = torch.Generator().manual_seed(seed + 104729)
    test = dequantise(image_set.test[:n_test], generator)
    train = dequantise(image_set.train, generator)
    model = bits_per_dim(lambda x: run.log_prob(x, generator=generator), test)
    mixture, components = mixture_bits(train, test, seed=seed)
    gaussian = gaussian_bits(train, test)

    def summary(values: Tensor) -> dict:
        return {"mean": values.mean().item(), "se": values.std().item() / len(values) ** 0.5}

    return {"n": len(test), "levels": image_set.levels, "model": summary(model), "gaussian": summary(gaussian),
            "mixture": summary(mixture), "mixture_components": components}


def evaluate_images(run: TrainedRun, *, n: int = 1000, seed: int = 1, bits: bool = True,
                    n_test: int | None = None, samples: Tensor | None = None, **options: Any) -> dict:
    """Every measure of the module docstring for ``n`` samples of ``run`` (seeded by ``seed``, or
    ``samples`` drawn already, in data units); ``bits`` adds bits per dimension of the test split
    (``n_test`` images of it; default all), which integrates the ODE once. ``options``: the sampler's
    (guidance's among them), for the samples drawn here."""
    require_positive_int("n", n)
    image_set = image_set_of(run)
    labels = torch.arange(n) % run.classes if run.classes else None
    if samples is None:
        samples = run.sample(n, generator=torch.Generator().manual_seed(seed), cond=labels, **options)
    n = len(samples)
    result: dict[str, Any] = {"n": n}
    if image_set.labelled:
        result |= feature_quality(run, samples, image_set, seed)
    if labels is not None and image_set.labelled:
        _, guidance = run.sampler_settings(None, **options)
        result["guidance"] = {"weight": guidance.guidance, "interval": guidance.guidance_interval,
                              "guide": guidance.guide}
        result |= class_quality(run, samples, labels, image_set, seed)
    result["memorisation"] = memorisation(samples, image_set.train, image_set.test)
    if bits and image_set.levels is not None:
        result["bits_per_dim"] = test_bits(run, image_set, seed, n_test)
    return result


def format_image_report(metrics: dict) -> str:
    """The lines ``scorelab evaluate`` prints for an image run."""
    lines = []
    if "fd" in metrics:
        lines += [(f"classifier      test accuracy {metrics['classifier_test_accuracy']:.4f} (trained on the "
                   f"training split); features compared on blocks of {metrics['block_size']} images"),
                  f"{'metric':<16}{'model':>12}{'floor (train vs test)':>24}{'ratio':>8}"]
        for name, label in (("fd", "Fréchet dist."), ("kid", "KID")):
            row = metrics[name]
            ratio = "—" if row["ratio"] is None else f"{row['ratio']:.3f}"
            lines.append(f"{label:<16}{row['model']:>12.4g}{row['floor']:>24.4g}{ratio:>8}")
        for name in ("precision", "recall"):
            row = metrics[name]
            lines.append(f"{name:<16}{row['model']:>12.3f}{row['floor']:>24.3f}")
        classes = metrics["classes"]
        lines.append(f"classes         {metrics['n']} samples: {classes['min_fraction']:.1%} to "
                     f"{classes['max_fraction']:.1%} per class; χ² = {classes['chi2']:.1f} (p = {classes['p_value']:.3g})")
    if "per_class" in metrics:
        guidance = metrics["guidance"]
        interval = f", interval ({guidance['interval']}]" if guidance["interval"] else ""
        guide = f", guide {guidance['guide']}" if guidance["guide"] else ""
        lines.append(f"per class       guidance γ = {guidance['weight']:g}{interval}{guide}; class agreement "
                     f"{metrics['agreement']:.1%} over all samples")
        lines.append(f"{'class':<8}{'samples':>8}{'agreement':>11}{'FD ratio':>10}  (against the class's test images)")
        for row in metrics["per_class"]:
            ratio = "—" if row["fd"]["ratio"] is None else f"{row['fd']['ratio']:.3f}"
            lines.append(f"{row['class']:<8}{row['n']:>8}{row['agreement']:>11.1%}{ratio:>10}")
    copies = metrics["memorisation"]
    lines.append(f"memorisation    {copies['fraction']:.1%} of samples nearer a training image than 99% of test "
                 f"images are (threshold {copies['threshold']:.3g})")
    if "bits_per_dim" in metrics:
        bits = metrics["bits_per_dim"]
        lines.append(f"bits/dim        model {bits['model']['mean']:.4f} ± {bits['model']['se']:.4f}; Gaussian "
                     f"{bits['gaussian']['mean']:.4f}; mixture of {bits['mixture_components']} "
                     f"{bits['mixture']['mean']:.4f}  (test split, n = {bits['n']}, dequantised)")
    return "\n".join(lines)
