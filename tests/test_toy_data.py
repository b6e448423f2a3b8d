"""The 2-D suite: every name loads, is seeded, and matches FFJORD's published construction."""

from __future__ import annotations

import math

import pytest
import torch

import scorelab as sl
from scorelab.data.toy import DEFAULT_GMM, EIGHT_GAUSSIANS, numpy_seed

SUITE = ["swiss_roll", "swissroll", "circles", "moons", "8gaussians", "pinwheel", "2spirals", "checkerboard",
         "rings", "gmm"]
N = 4000


def load(name: str, n: int = N, seed: int = 0) -> torch.Tensor:
    return sl.data.load(name, n, generator=torch.Generator().manual_seed(seed))


def radius(x: torch.Tensor) -> torch.Tensor:
    return x.norm(dim=1)


def test_the_suite_is_registered():
    assert set(SUITE) <= set(sl.data.DATASETS)


@pytest.mark.parametrize("name", SUITE)
def test_loads_exactly_n_finite_float32_points(name):
    for n in (2, 1001):  # odd n: pinwheel and 2spirals must not round down as FFJORD does
        x = load(name, n)
        assert x.shape == (n, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()


@pytest.mark.parametrize("name", SUITE)
def test_seeded(name):
    assert torch.equal(load(name, 500, seed=3), load(name, 500, seed=3))
    assert not torch.equal(load(name, 500, seed=3), load(name, 500, seed=4))


def test_numpy_seed_follows_the_generator():
    assert numpy_seed(torch.Generator().manual_seed(1)) == numpy_seed(torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("name", "scale"), [("swiss_roll", 10.0), ("swissroll", 5.0)])
def test_swiss_rolls(name, scale):
    # make_swiss_roll: t ~ U[1.5π, 4.5π], (t cos t, t sin t) + N(0, 1) noise, then / scale.
    r = radius(load(name)) * scale
    assert r.min() > 1.5 * math.pi - 4.5 and r.max() < 4.5 * math.pi + 4.5
    assert abs(r.mean().item() - 3 * math.pi) < 0.4


def test_circles_two_rings_of_radius_3_and_1_5():
    r = radius(load("circles"))
    outer = r > 2.25
    assert abs(outer.float().mean().item() - 0.5) < 0.01  # ⌊n/2⌋ on the outer circle
    assert abs(r[outer].mean().item() - 3.0) < 0.03 and abs(r[~outer].mean().item() - 1.5) < 0.03
    assert abs(r[outer].std().item() - 0.24) < 0.02  # noise 0.08 scaled by 3


def test_moons_mean_and_support():
    x = load("moons")
    # make_moons has mean (0.5, 0.25); ×2 + (−1, −0.2) gives (0, 0.3).
    assert torch.allclose(x.mean(0), torch.tensor([0.0, 0.3]), atol=0.05)
    assert x[:, 0].min() > -3.0 - 1.0 and x[:, 0].max() < 3.0 + 1.0
    assert x[:, 1].min() > -1.2 - 1.0 and x[:, 1].max() < 1.8 + 1.0


def test_8gaussians_eight_equal_modes_on_radius_4_over_1_414():
    x = load("8gaussians")
    centres = EIGHT_GAUSSIANS.means.float()
    assert torch.allclose(radius(centres), torch.full((8,), 4 / 1.414))
    nearest = torch.cdist(x, centres).argmin(1)
    assert torch.allclose(torch.bincount(nearest, minlength=8) / N, torch.full((8,), 1 / 8), atol=0.02)
    assert abs((x - centres[nearest]).std().item() - 0.5 / 1.414) < 0.01


def test_pinwheel_five_arms_follow_the_published_rotation():
    x = load("pinwheel", 4000)
    r, phi = radius(x), torch.atan2(x[:, 1], x[:, 0])
    # A point is 2·f rotated by −(2πk/5 + 0.25·exp(f₁)) with f ≈ (r/2, 0): recover the arm k.
    arm_angle = -phi - 0.25 * torch.exp(r / 2)
    k = torch.round(arm_angle / (2 * math.pi / 5))
    residual = arm_angle - k * (2 * math.pi / 5)
    assert (residual.abs() < 0.6).float().mean() > 0.97
    counts = torch.bincount(k.long() % 5, minlength=5) / len(x)
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.03)


def test_2spirals_are_point_reflections_up_to_noise():
    x = load("2spirals", 4000)
    first, second = x[:2000], x[2000:]
    # Both spirals come from the same arm points, ±p/3, plus independent N(0, 0.1²) noise.
    assert abs((first + second).std().item() - 0.1 * math.sqrt(2)) < 0.01
    assert radius(x).max() < math.pi + 0.5 / 3 * math.sqrt(2) + 0.5


def test_checkerboard_only_dark_squares_of_4x4_board():
    x = load("checkerboard")
    assert x.min() >= -4 and x.max() < 4
    column, row = torch.floor(x[:, 0] / 2), torch.floor(x[:, 1] / 2)
    assert ((column + row) % 2 == 0).all()
    squares = torch.bincount(((column + 2) * 4 + row + 2).long(), minlength=16)
    assert (squares > 0).sum() == 8
    assert torch.allclose(squares[squares > 0] / N, torch.full((8,), 1 / 8), atol=0.02)


def test_rings_four_radii_evenly_filled():
    r = radius(load("rings"))
    radii = torch.tensor([3.0, 2.25, 1.5, 0.75])
    nearest = (r[:, None] - radii).abs().argmin(1)
    assert ((r - radii[nearest]).abs() < 0.4).all()
    assert torch.allclose(torch.bincount(nearest, minlength=4) / N, torch.full((4,), 0.25), atol=0.01)


def test_gmm_is_the_default_mixture():
    x = load("gmm")
    expected_mean = (DEFAULT_GMM.weights[:, None] * DEFAULT_GMM.means).sum(0).float()
    assert torch.allclose(x.mean(0), expected_mean, atol=0.08)
    assert sl.data.EXACT_DENSITIES["gmm"] is DEFAULT_GMM
    assert len(set(DEFAULT_GMM.weights.tolist())) == 3  # unequal weights
