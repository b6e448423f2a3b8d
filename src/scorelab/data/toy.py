"""Toy data sets by name.

Each generator takes ``(n, generator)`` and returns a float32 tensor [n, d].
A generator whose construction knows each point's class (the moon, mode, arm, component, circle,
spiral or ring it was drawn on) is labelled: it is registered in :data:`LABELLED` as ``(n, generator)
-> (points [n, d], labels int64 [n])`` with its class count in :data:`CLASSES`, and its points alone
are the plain generator of :data:`DATASETS`, so the two give the same points for the same generator.

Randomness comes from the ``torch.Generator`` only, so a seed fixes the data:
scikit-learn gets ``random_state=numpy_seed(generator)`` and numpy draws come
from ``np.random.default_rng(numpy_seed(generator))``. scikit-learn is imported by
the generators that use it, when they are called: it takes longer to import than
anything else scorelab needs besides torch.

The 2-D suite follows FFJORD's ``lib/toy_data.py`` (Grathwohl et al. 2019,
"FFJORD: Free-form continuous dynamics for scalable reversible generative
models"): the same constructions, constants, scaling and noise. Where the
published code returns fewer than ``n`` points (``pinwheel`` and ``2spirals``
round ``n`` down to a multiple of 5 or 2), we return exactly ``n`` points drawn
from the same distribution; the docstrings say how.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from scorelab.data.mixture import GaussianMixture

ToyGenerator = Callable[[int, torch.Generator | None], Tensor]
LabelledGenerator = Callable[[int, torch.Generator | None], tuple[Tensor, Tensor]]
DATASETS: dict[str, ToyGenerator] = {}
LABELLED: dict[str, LabelledGenerator] = {}
CLASSES: dict[str, int] = {}


def register(name: str) -> Callable[[ToyGenerator], ToyGenerator]:
    """Add a generator to :data:`DATASETS` under ``name``."""

    def add(fn: ToyGenerator) -> ToyGenerator:
        DATASETS[name] = fn
        return fn

    return add


def register_labelled(name: str, classes: int) -> Callable[[LabelledGenerator], LabelledGenerator]:
    """Add a labelled generator of ``classes`` classes to :data:`LABELLED` under ``name``, and its points
    alone to :data:`DATASETS`: one construction serves both."""

    def add(fn: LabelledGenerator) -> LabelledGenerator:
        LABELLED[name], CLASSES[name] = fn, classes
        register(name)(_points_of(fn))
        return fn

    return add


def _points_of(labelled: LabelledGenerator) -> ToyGenerator:
    @functools.wraps(labelled)
    def points(n: int, generator: torch.Generator | None = None) -> Tensor:
        return labelled(n, generator)[0]

    return points


def numpy_seed(generator: torch.Generator | None) -> int:
    """An integer seed for numpy/scikit-learn, drawn from a torch generator."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))


def _numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    return np.random.default_rng(numpy_seed(generator))


def _tensor(points: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(points)).float()


def _labels(labels: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))


@register("swiss_roll")
def swiss_roll(n: int, generator: torch.Generator | None = None) -> Tensor:
    """The seed tutorial's swiss roll: ``make_swiss_roll(n, noise=1.0)``, columns [0, 2], / 10."""
    from sklearn.datasets import make_swiss_roll

    points, _ = make_swiss_roll(n, noise=1.0, random_state=numpy_seed(generator))
    return torch.from_numpy(points[:, [0, 2]] / 10.0).float()


@register("swissroll")
def ffjord_swissroll(n: int, generator: torch.Generator | None = None) -> Tensor:
    """FFJORD's swiss roll: ``make_swiss_roll(n, noise=1.0)``, columns [0, 2], / 5 (twice the seed's scale)."""
    from sklearn.datasets import make_swiss_roll

    points, _ = make_swiss_roll(n, noise=1.0, random_state=numpy_seed(generator))
    return _tensor(points[:, [0, 2]] / 5.0)


@register_labelled("circles", 2)
def circles(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two concentric circles of radius 3 and 1.5: ``3 · make_circles(n, factor=0.5, noise=0.08)``.

    Angles are evenly spaced (scikit-learn's construction), ⌊n/2⌋ points on the
    outer circle; the Gaussian noise has std 0.08 before scaling, 0.24 after.
    Label: the circle, scikit-learn's y (0 the outer, 1 the inner).
    """
    from sklearn.datasets import make_circles

    points, circle = make_circles(n, factor=0.5, noise=0.08, random_state=numpy_seed(generator))
    return _tensor(points * 3.0), _labels(circle)


@register_labelled("moons", 2)
def moons(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two interleaved half circles: ``2 · make_moons(n, noise=0.1) + (−1, −0.2)``.

    Label: the moon, scikit-learn's y (0 the upper, centred at the origin; 1 the lower, centred at (1, 0.5)
    before scaling).
    """
    from sklearn.datasets import make_moons

    points, moon = make_moons(n, noise=0.1, random_state=numpy_seed(generator))
    return _tensor(points * 2.0 + np.array([-1.0, -0.2])), _labels(moon)


# FFJORD's 8gaussians: centres 4·(cos kπ/4, sin kπ/4), std 0.5, equal weights,
# everything then divided by 1.414 (sic, not √2). It is exactly a Gaussian
# mixture, so it is built as one and has an exact score at every σ.
EIGHT_GAUSSIANS = GaussianMixture(
    [[4.0 * math.cos(k * math.pi / 4) / 1.414, 4.0 * math.sin(k * math.pi / 4) / 1.414] for k in range(8)],
    stds=0.5 / 1.414,
)


@register_labelled("8gaussians", 8)
def eight_gaussians(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Eight equal-weight Gaussians on a circle of radius 4/1.414 ≈ 2.83, std 0.5/1.414 ≈ 0.354.

    The same distribution as :data:`EIGHT_GAUSSIANS`, sampled through it. Label: the mode k, at angle kπ/4.
    """
    return EIGHT_GAUSSIANS.sample_labelled(n, generator)


@register_labelled("pinwheel", 5)
def pinwheel(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Five curved arms (FFJORD's pinwheel, after Johnson et al. 2016).

    For arm k with base angle 2πk/5: f = (1 + 0.3·z₁, 0.1·z₂), z ~ N(0, I),
    rotated by the angle 2πk/5 + 0.25·exp(f₁), then scaled by 2. FFJORD draws
    ⌊n/5⌋ points per arm; we assign arms as i mod 5, so every arm gets ⌊n/5⌋ or
    ⌈n/5⌉ points and exactly ``n`` come back, in random order. Label: the arm k.
    """
    rng = _numpy_rng(generator)
    arm = np.arange(n) % 5
    features = rng.standard_normal((n, 2)) * np.array([0.3, 0.1])
    features[:, 0] += 1.0
    angle = 2 * np.pi * arm / 5 + 0.25 * np.exp(features[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    # Row vector times the rotation [[cos, −sin], [sin, cos]], as FFJORD's einsum("ti,tij->tj").
    rotated = np.stack([features[:, 0] * cos + features[:, 1] * sin,
                        -features[:, 0] * sin + features[:, 1] * cos], axis=1)
    order = rng.permutation(n)
    return _tensor(2.0 * rotated[order]), _labels(arm[order])


@register_labelled("2spirals", 2)
def two_spirals(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two interleaved spirals (FFJORD's 2spirals).

    Arm points: t = √u · 3π (u ~ U[0, 1), i.e. 540°), p = (−t·cos t + 0.5·u₁, t·sin t + 0.5·u₂)
    with u₁, u₂ ~ U[0, 1). The second spiral is the point reflection −p of the
    first arm's points, as published; then everything is divided by 3 and
    N(0, 0.1²) noise is added. The first ⌈n/2⌉ rows are the first spiral. Label: the spiral (0 the first).
    """
    rng = _numpy_rng(generator)
    half = n - n // 2
    t = np.sqrt(rng.random((half, 1))) * 3 * np.pi
    arm = np.hstack([-np.cos(t) * t + rng.random((half, 1)) * 0.5, np.sin(t) * t + rng.random((half, 1)) * 0.5])
    points = np.vstack([arm, -arm])[:n] / 3.0
    return _tensor(points + rng.standard_normal(points.shape) * 0.1), _labels(np.arange(n) >= half)


@register("checkerboard")
def checkerboard(n: int, generator: torch.Generator | None = None) -> Tensor:
    """Uniform on the 8 dark squares of a 4×4 checkerboard covering [−4, 4]² (FFJORD).

    x₁ ~ U[−2, 2); x₂ = u − 2b + (⌊x₁⌋ mod 2), u ~ U[0, 1), b ~ Bernoulli(½);
    both scaled by 2. Squares are 2 wide.
    """
    rng = _numpy_rng(generator)
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    return _tensor(np.stack([x1, x2], axis=1) * 2.0)


@register_labelled("rings", 4)
def rings(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Four concentric rings of radius 3, 2.25, 1.5 and 0.75 (FFJORD).

    ⌊n/4⌋ points on each of the three outer rings and the rest on the inner one,
    at evenly spaced angles 2πj/m (j < m), shuffled, plus N(0, 0.08²) noise. Label: the ring, from the
    outermost (0) to the innermost (3).
    """
    rng = _numpy_rng(generator)
    counts = [n // 4] * 3 + [n - 3 * (n // 4)]
    radii = [1.0, 0.75, 0.5, 0.25]
    angles = [np.linspace(0, 2 * np.pi, count, endpoint=False) for count in counts]
    points = 3.0 * np.concatenate([radius * np.stack([np.cos(a), np.sin(a)], axis=1)
                                   for radius, a in zip(radii, angles)])
    order = rng.permutation(n)
    points, ring = points[order], np.repeat(np.arange(4), counts)[order]
    return _tensor(points + rng.normal(scale=0.08, size=points.shape)), _labels(ring)


# The ``gmm`` data set: three 2-D components with unequal weights (1/2, 3/10, 1/5),
# one of them elongated (diagonal stds), placed so the modes are well apart but
# the low-weight mode is the closest to the others. Unequal weights are what
# plain Langevin gets wrong and annealed Langevin gets right (Song & Ermon 2019,
# Sec. 3.2.2), and the exact score makes the Fisher divergence computable.
DEFAULT_GMM = GaussianMixture(
    means=[[-2.0, -1.5], [2.0, -1.5], [0.0, 2.0]],
    stds=[[0.5, 0.5], [0.3, 0.8], [0.6, 0.4]],
    weights=[0.5, 0.3, 0.2],
)


@register_labelled("gmm", 3)
def gmm(n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Samples of :data:`DEFAULT_GMM`, the suite's density with an exact score. Label: the component."""
    return DEFAULT_GMM.sample_labelled(n, generator)


# The ground-truth densities whose exact score is known, by data set name.
EXACT_DENSITIES: dict[str, GaussianMixture] = {"8gaussians": EIGHT_GAUSSIANS, "gmm": DEFAULT_GMM}

# Differential entropies in nats of the suite's uniform densities: checkerboard is uniform on
# 8 squares of side 2, area 32.
ENTROPY = {"checkerboard": math.log(32.0)}


def reference_nll(name: str, x: Tensor) -> float | None:
    """The data's own mean NLL in nats at ``x``: exact for analytic densities, the entropy for
    uniform ones, None where unknown."""
    if name in EXACT_DENSITIES:
        return -EXACT_DENSITIES[name].log_prob(x.double()).mean().item()
    return ENTROPY.get(name)
