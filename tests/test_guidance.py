"""Guidance (classifier-free, its interval, autoguidance) against the exact Gaussian mixture's scores."""

from __future__ import annotations

import pytest
import torch

from scorelab.core.errors import ConfigError
from scorelab.core.guidance import NULL_LABEL, GuidedScore, guided
from scorelab.core.processes import PROCESSES
from scorelab.data.mixture import GaussianMixture
from scorelab.sampling import SAMPLERS


def _mixture(shape: tuple[int, ...], generator: torch.Generator) -> GaussianMixture:
    means = 3.0 * torch.randn(3, *shape, generator=generator, dtype=torch.float64)
    stds = 0.3 + torch.rand(3, *shape, generator=generator, dtype=torch.float64)
    return GaussianMixture(means, stds, weights=[0.5, 0.3, 0.2])


@pytest.mark.parametrize("shape", [(2,), (1, 4, 4), (1, 32)])
@pytest.mark.parametrize("sigma", [0.05, 0.7, 12.0])
def test_the_guided_score_is_the_formula_of_the_component_and_mixture_scores(shape, sigma):
    generator = torch.Generator().manual_seed(1)
    mixture = _mixture(shape, generator)
    x = torch.randn(12, *shape, generator=generator, dtype=torch.float64)
    sigmas = torch.full((12,), sigma, dtype=torch.float64)
    labels = torch.arange(12) % 3
    for weight in (0.0, 1.0, 2.5):
        expected = mixture.score(x, sigmas) + weight * (mixture.score(x, sigmas, labels) - mixture.score(x, sigmas))
        assert torch.allclose(GuidedScore(mixture, weight)(x, sigmas, cond=labels), expected, atol=1e-10)


def test_the_null_class_of_the_mixture_is_the_whole_mixture():
    generator = torch.Generator().manual_seed(2)
    mixture = _mixture((3,), generator)
    x = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    sigmas = torch.full((6,), 0.4, dtype=torch.float64)
    labels = torch.tensor([0, NULL_LABEL, 2, NULL_LABEL, 1, 0])
    scores = mixture.score(x, sigmas, labels)
    whole, alone = mixture.score(x, sigmas), mixture.score(x, sigmas, labels.clamp(min=0))
    null = labels == NULL_LABEL
    assert torch.allclose(scores[null], whole[null]) and torch.allclose(scores[~null], alone[~null])


class _Counting:
    """A score that counts its calls and the rows it saw."""

    def __init__(self, score):
        self.score, self.calls, self.rows = score, 0, 0

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        self.rows += len(x)
        return self.score(x, sigma, cond=cond)


def test_classifier_free_guidance_is_one_call_on_a_doubled_batch_equal_to_two_calls():
    generator = torch.Generator().manual_seed(3)
    mixture = _mixture((2,), generator)
    counting = _Counting(mixture)
    x = torch.randn(8, 2, generator=generator, dtype=torch.float64)
    sigmas = torch.full((8,), 1.3, dtype=torch.float64)
    labels = torch.arange(8) % 3
    once = GuidedScore(counting, 3.0)(x, sigmas, cond=labels)
    assert counting.calls == 1 and counting.rows == 16
    conditional = mixture(x, sigmas, cond=labels)
    unconditional = mixture(x, sigmas, cond=torch.full_like(labels, NULL_LABEL))
    assert torch.allclose(once, unconditional + 3.0 * (conditional - unconditional), atol=1e-6)


def test_the_guidance_interval_guides_only_inside_it():
    generator = torch.Generator().manual_seed(4)
    mixture = _mixture((2,), generator)
    counting = _Counting(mixture)
    x = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    sigmas = torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2])
    score = GuidedScore(counting, 2.0, interval=(0.5, 2.0))
    result = score(x, sigmas, cond=labels)
    conditional = mixture(x, sigmas, cond=labels)
    guided_by_two = GuidedScore(mixture, 2.0)(x, sigmas, cond=labels)
    assert torch.allclose(result[[0, 2]], conditional[[0, 2]]) and torch.allclose(result[1], guided_by_two[1])
    assert torch.equal(score.weights(sigmas), torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64))
    counting.calls = 0
    score(x, torch.full((3,), 5.0, dtype=torch.float64), cond=labels)  # nowhere inside: the conditional half only
    assert counting.calls == 1 and counting.rows == 3 + 6


def test_autoguidance_extrapolates_from_the_guide_with_the_same_condition():
    generator = torch.Generator().manual_seed(5)
    good = _mixture((2,), generator)
    bad = GaussianMixture(good.means, good.stds * 1.5, weights=good.weights)
    x = torch.randn(9, 2, generator=generator, dtype=torch.float64)
    sigmas = torch.full((9,), 0.8, dtype=torch.float64)
    for labels in (torch.arange(9) % 3, None):
        expected = bad(x, sigmas, cond=labels) + 2.0 * (good(x, sigmas, cond=labels) - bad(x, sigmas, cond=labels))
        assert torch.allclose(guided(good, 2.0, guide=bad)(x, sigmas, cond=labels), expected, atol=1e-10)


def test_the_guided_denoiser_is_the_denoiser_of_the_guided_score():
    generator = torch.Generator().manual_seed(6)
    mixture = _mixture((2,), generator)
    x = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    sigmas = torch.full((5,), 0.9, dtype=torch.float64)
    labels = torch.arange(5) % 3
    score = GuidedScore(mixture, 1.7)
    assert torch.allclose(score.denoise(x, sigmas, cond=labels), x + 0.81 * score(x, sigmas, cond=labels))


def test_without_a_class_classifier_free_guidance_is_the_unconditional_model():
    generator = torch.Generator().manual_seed(7)
    mixture = _mixture((2,), generator)
    x = torch.randn(4, 2, generator=generator, dtype=torch.float64)
    sigmas = torch.full((4,), 0.5, dtype=torch.float64)
    assert torch.equal(GuidedScore(mixture, 4.0)(x, sigmas), mixture(x, sigmas))
    assert guided(mixture, 1.0) is mixture


def test_a_bad_interval_is_refused():
    with pytest.raises(ConfigError, match="LO < HI"):
        GuidedScore(lambda x, sigma, cond=None: x, 2.0, interval=(3.0, 1.0))


@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_sampling_a_component_with_its_exact_conditional_score(sampler):
    """γ = 1 with the exact conditional score puts >= 99% of samples in the asked component, with its moments.

    From the prior N(0, σ_max²), the probability-flow ODE of one Gaussian N(μ, s²) is linear per coordinate and
    sends x to μ + s·(x − μ)/√(s² + σ_max²): the samples have mean μ(1 − s/√(s² + σ_max²)) and std
    s·σ_max/√(s² + σ_max²), the component's own up to the prior's mismatch, which this checks exactly."""
    generator = torch.Generator().manual_seed(8)
    mixture = GaussianMixture([[-4.0, 0.0], [4.0, 1.0], [0.0, 5.0]], stds=[[0.5, 0.8], [0.7, 0.3], [0.4, 0.4]])
    sigma_max = 20.0
    process = PROCESSES["ve"].build(PROCESSES["ve"].make({"sigma_max": sigma_max, "continuous": True}))
    part = SAMPLERS[sampler]
    n = 4000
    start = process.prior((n, 2), generator=generator).double()
    samples = part.sample(guided(mixture, 1.0), process, part.make({"sample_steps": 40}), start, generator, None,
                          torch.full((n,), 1))
    nearest = torch.cdist(samples, mixture.means).argmin(1)
    assert (nearest == 1).double().mean() >= 0.99
    mean, std = mixture.means[1], mixture.stds[1]
    spread = torch.sqrt(std**2 + sigma_max**2)
    assert torch.allclose(samples.mean(0), mean * (1 - std / spread), atol=4 * std.max().item() / n**0.5)
    assert torch.allclose(samples.std(0), std * sigma_max / spread, rtol=0.05)
