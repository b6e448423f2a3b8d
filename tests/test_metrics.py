"""Sample metrics on cases with known answers, their symmetry, and the quality report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from scorelab import metrics
from scorelab.core.errors import ConfigError, DataError


def normal(n: int, seed: int, shift=(0.0, 0.0)) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed)) + torch.tensor(shift)


def point_mass(point, n: int) -> torch.Tensor:
    return torch.tensor([point], dtype=torch.float64).expand(n, -1).clone()


def seeded_sliced(a, b):
    return metrics.sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0))


ALL_METRICS = [metrics.wasserstein2, seeded_sliced, metrics.mmd, metrics.energy_distance]


def test_w2_between_point_masses_is_their_distance():
    a, b = point_mass([1.0, 2.0], 50), point_mass([4.0, -2.0], 30)
    assert metrics.wasserstein2(a, b) == pytest.approx(5.0, rel=1e-9)


@pytest.mark.slow
def test_w2_between_shifted_gaussians_approaches_the_shift():
    shift = (3.0, 4.0)  # ‖m‖ = 5: W2(N(0, I), N(m, I)) = ‖m‖

    def mean_error(n: int) -> float:
        return np.mean([abs(metrics.wasserstein2(normal(n, s), normal(n, 100 + s, shift)) - 5.0) for s in range(6)])

    # The error shrinks like n^(−1/2): it is dominated by the sample means' noise, std √(2/n).
    small, large = mean_error(50), mean_error(800)
    assert large < 0.5 * small and large < 0.08


def test_sliced_w2_between_point_masses():
    # SW2² = E_θ (θᵀ(p − q))² = ‖p − q‖²/D for θ uniform on the sphere.
    a, b = point_mass([0.0, 0.0], 10), point_mass([3.0, 4.0], 10)
    sliced = metrics.sliced_wasserstein(a, b, n_projections=5000, generator=torch.Generator().manual_seed(0))
    assert sliced == pytest.approx(5.0 / math.sqrt(2), rel=0.02)


def test_sliced_w2_is_at_most_w2_and_seeded():
    a, b = normal(300, 0), normal(300, 1, (1.0, 0.0))
    assert seeded_sliced(a, b) <= metrics.wasserstein2(a, b)
    assert seeded_sliced(a, b) == seeded_sliced(a, b)


def test_mmd_and_energy_between_point_masses():
    p, q = [0.0, 0.0], [0.6, 0.8]  # distance 1
    a, b = point_mass(p, 20), point_mass(q, 10)
    bandwidths = (0.5, 2.0)
    kernel = np.mean([math.exp(-1.0 / (2 * h * h)) for h in bandwidths])
    assert metrics.mmd(a, b, bandwidths=bandwidths) == pytest.approx(math.sqrt(2 - 2 * kernel), rel=1e-5)
    assert metrics.energy_distance(a, b) == pytest.approx(math.sqrt(2.0), rel=1e-5)


def test_energy_distance_matches_scipy_in_one_dimension():
    u, v = normal(200, 0)[:, :1], normal(150, 1, (0.5, 0.0))[:, :1]
    expected = scipy.stats.energy_distance(u[:, 0].numpy(), v[:, 0].numpy())
    assert metrics.energy_distance(u, v) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_identical_sets_are_at_distance_zero(metric):
    a = normal(400, 0)
    assert metric(a, a.clone()) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_symmetric(metric):
    a, b = normal(300, 0), normal(200, 1, (0.5, -0.5))
    assert metric(a, b) == pytest.approx(metric(b, a), rel=1e-5)


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_grows_with_the_shift(metric):
    a = normal(300, 0)
    near, far = metric(a, normal(300, 1, (0.3, 0.0))), metric(a, normal(300, 1, (2.0, 0.0)))
    assert 0 < near < far


def test_mismatched_or_malformed_samples_are_data_errors():
    with pytest.raises(DataError):
        metrics.mmd(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(DataError):
        metrics.energy_distance(torch.zeros(5), torch.zeros(5))
    with pytest.raises(DataError):
        metrics.wasserstein2(torch.zeros(0, 2), torch.zeros(5, 2))


def gaussian_sampler(shift=(0.0, 0.0)):
    return lambda n, generator: torch.randn(n, 2, generator=generator) + torch.tensor(shift)


def test_quality_of_the_truth_itself_is_near_one():
    reports = metrics.quality(gaussian_sampler(), gaussian_sampler(), n=300, repeats=3)
    assert set(reports) == {"w2", "sliced_w2", "mmd", "energy"}
    for report in reports.values():
        assert report.repeats == report.floor_repeats == 3 and report.n == 300
        assert report.ratio == pytest.approx(report.model_mean / report.floor_mean)
        assert 0.5 < report.ratio < 2.0 and report.model_std > 0 and report.floor_std > 0


def test_quality_sees_a_wrong_model():
    reports = metrics.quality(gaussian_sampler((1.0, 0.0)), gaussian_sampler(), n=300, repeats=3)
    assert all(report.ratio > 2.0 for report in reports.values())


def test_quality_is_seeded_and_w2_ratio_is_its_w2():
    first = metrics.quality(gaussian_sampler(), gaussian_sampler(), n=200, repeats=3, seed=4)
    again = metrics.quality(gaussian_sampler(), gaussian_sampler(), n=200, repeats=3, seed=4)
    assert first == again
    assert metrics.w2_ratio(gaussian_sampler(), gaussian_sampler(), n=200, repeats=3, seed=4) == first["w2"]


def test_quality_takes_fixed_samples_and_a_finite_data_set():
    model = gaussian_sampler()(600, torch.Generator().manual_seed(9))
    data = gaussian_sampler()(400, torch.Generator().manual_seed(10))
    reports = metrics.quality(model, data, n=500, repeats=3, metrics={"w2": metrics.wasserstein2})
    assert reports["w2"].n == 200  # capped at half the finite data set
    with pytest.raises(DataError, match="n·repeats"):
        metrics.quality(model, data, n=200, repeats=4)


@pytest.mark.slow
def test_floor_is_iid_so_a_perfect_sampler_of_a_stratified_generator_scores_one():
    """``rings`` puts its points at evenly spaced angles; an i.i.d. sampler of the same density
    (rows picked at random from a 20× larger draw) reaches ratio ≈ 1 only against the i.i.d. floor."""
    import scorelab as sl

    def rings(n, generator):
        return sl.data.load("rings", n, generator=generator)

    def perfect_sampler(n, generator):
        pool = rings(20 * n, generator)
        return pool[torch.randperm(len(pool), generator=generator)[:n]]

    iid = metrics.w2_ratio(perfect_sampler, rings, n=1000, repeats=3, seed=2)
    stratified = metrics.w2_ratio(perfect_sampler, rings, n=1000, repeats=3, seed=2, floor_pool=1)
    assert 0.85 < iid.ratio < 1.15
    assert stratified.ratio > 1.4


@pytest.mark.parametrize("floor_pool", [1, 20])
def test_floor_mean_is_the_floor_that_quality_reports(floor_pool):
    from scorelab.data import load

    def rings(n, generator):
        return load("rings", n, generator=generator)

    samples = torch.randn(3 * 400, 2, generator=torch.Generator().manual_seed(0))
    report = metrics.w2_ratio(samples, rings, n=400, repeats=3, seed=2, floor_pool=floor_pool)
    assert metrics.floor_mean(rings, n=400, repeats=3, seed=2, floor_pool=floor_pool) == report.floor_mean


def test_more_floor_repetitions_keep_the_model_side_and_extend_the_floor():
    """floor_repeats = F averages the floor over F data sets; the first R are the model's."""
    def rings(n, generator):
        from scorelab.data import load
        return load("rings", n, generator=generator)

    samples = torch.randn(3 * 300, 2, generator=torch.Generator().manual_seed(0))
    plain = metrics.w2_ratio(samples, rings, n=300, repeats=3, seed=5)
    extended = metrics.w2_ratio(samples, rings, n=300, repeats=3, seed=5, floor_repeats=8)
    assert (extended.repeats, extended.floor_repeats) == (3, 8)
    assert (extended.model_mean, extended.model_std) == (plain.model_mean, plain.model_std)
    assert extended.floor_mean == pytest.approx(metrics.floor_mean(rings, n=300, repeats=8, seed=5))
    assert extended.floor_mean != plain.floor_mean
    assert extended.ratio == pytest.approx(extended.model_mean / extended.floor_mean)
    with pytest.raises(ConfigError, match="floor_repeats must be >= repeats"):
        metrics.w2_ratio(samples, rings, n=300, repeats=3, floor_repeats=2)


def _counting_w2():
    calls = []

    def w2(a, b):
        calls.append(1)
        return metrics.wasserstein2(a, b)

    return w2, calls


def _gaussian_truth(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator)


def test_a_cached_floor_is_computed_once_and_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORELAB_CACHE", str(tmp_path))
    model = torch.randn(600, 2, generator=torch.Generator().manual_seed(5)) * 1.1
    plain = metrics.quality(model, _gaussian_truth, n=200, repeats=3, floor_repeats=5, metrics={"w2": metrics.wasserstein2})
    key = {"dataset": "gaussian"}
    w2, calls = _counting_w2()
    first = metrics.quality(model, _gaussian_truth, n=200, repeats=3, floor_repeats=5, metrics={"w2": w2}, floor_key=key)
    assert len(calls) == 3 + 5 and first == plain
    calls.clear()
    again = metrics.quality(model, _gaussian_truth, n=200, repeats=3, floor_repeats=5, metrics={"w2": w2}, floor_key=key)
    assert len(calls) == 3 and again == plain  # the model's three, no floor
    # Another n, seed or number of repetitions is another floor.
    calls.clear()
    metrics.quality(model, _gaussian_truth, n=100, repeats=3, floor_repeats=5, metrics={"w2": w2}, floor_key=key)
    assert len(calls) == 3 + 5


def test_a_damaged_or_unwritable_cache_is_recomputed_or_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORELAB_CACHE", str(tmp_path))
    model = torch.randn(400, 2, generator=torch.Generator().manual_seed(6))
    key = {"dataset": "gaussian"}
    first = metrics.w2_ratio(model, _gaussian_truth, n=200, repeats=2, floor_key=key)
    (entry,) = (tmp_path / "floors").iterdir()
    entry.write_text("{not json")
    w2, calls = _counting_w2()
    assert metrics.quality(model, _gaussian_truth, n=200, repeats=2, metrics={"w2": w2}, floor_key=key)["w2"] == first
    assert len(calls) == 4
    blocked = tmp_path / "a file, not a directory"
    blocked.write_text("")
    monkeypatch.setenv("SCORELAB_CACHE", str(blocked))
    assert metrics.w2_ratio(model, _gaussian_truth, n=200, repeats=2, floor_key=key) == first
