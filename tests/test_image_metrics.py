"""Feature metrics (FD, KID, precision/recall, memorisation, class coverage) on cases with known answers,
and the digit classifier whose features they use: its accuracy, determinism and cache."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from sklearn.datasets import load_digits

from scorelab.core.errors import ConfigError, DataError
from scorelab.metrics import classifier
from scorelab.metrics.classifier import (
    DigitClassifier,
    accuracy,
    classifier_for,
    embed,
    train_classifier,
)
from scorelab.metrics.features import (
    class_coverage,
    frechet_distance,
    kernel_inception_distance,
    memorisation,
    nearest_distances,
    precision_recall,
)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaussian(n: int, mean, std, seed: int) -> torch.Tensor:
    """n draws of N(mean, diag(std²))."""
    mean, std = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    return mean + std * torch.randn(n, len(mean), generator=generator(seed), dtype=torch.float64)


def random_rotation(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator(seed), dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


# --- Fréchet distance ------------------------------------------------------------------------------------


def test_fd_of_a_set_with_itself_is_zero():
    x = gaussian(500, [0.0] * 8, [1.0] * 8, seed=0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    # Fewer points than dimensions: a singular covariance, where a general sqrtm struggles.
    wide = gaussian(20, [0.0] * 50, [1.0] * 50, seed=1)
    assert frechet_distance(wide, wide) == pytest.approx(0.0, abs=1e-8)


def test_fd_between_samples_approaches_the_gaussians_fd():
    # Commuting covariances R diag(λ) Rᵀ: FD = ‖μ1 − μ2‖² + Σ_i (√λ1_i − √λ2_i)².
    mean_1, mean_2 = torch.tensor([0.0, 0.0, 0.0, 0.0]), torch.tensor([1.0, -0.5, 0.0, 2.0])
    std_1, std_2 = torch.tensor([1.0, 2.0, 0.5, 1.0]), torch.tensor([1.5, 1.0, 0.5, 3.0])
    closed_form = float((mean_1 - mean_2).pow(2).sum() + (std_1 - std_2).pow(2).sum())
    rotation = random_rotation(4, seed=9)

    def error(n: int, seed: int) -> float:
        a = gaussian(n, mean_1, std_1, seed) @ rotation.T
        b = gaussian(n, mean_2, std_2, seed + 1) @ rotation.T
        return abs(frechet_distance(a, b) - closed_form)

    large = np.mean([error(20_000, seed) for seed in range(3)])
    small = np.mean([error(200, seed) for seed in range(3)])
    assert large < 0.02 * closed_form and large < small


def with_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n points whose sample mean and covariance (n − 1) are exactly ``mean`` and ``cov``."""
    z = np.random.default_rng(seed).standard_normal((n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / (n - 1))).T  # whitened: sample covariance I
    return mean + z @ np.linalg.cholesky(cov).T


def test_fd_matches_the_closed_form_for_non_commuting_covariances():
    rng = np.random.default_rng(0)
    factors = rng.standard_normal((2, 5, 5))
    cov_1, cov_2 = factors[0] @ factors[0].T + 0.1 * np.eye(5), factors[1] @ factors[1].T + 0.1 * np.eye(5)
    mean_1, mean_2 = rng.standard_normal(5), rng.standard_normal(5)
    cross = scipy.linalg.sqrtm(cov_1 @ cov_2).real
    closed_form = np.sum((mean_1 - mean_2) ** 2) + np.trace(cov_1 + cov_2 - 2 * cross)
    a, b = with_moments(100, mean_1, cov_1, seed=1), with_moments(300, mean_2, cov_2, seed=2)
    assert frechet_distance(a, b) == pytest.approx(closed_form, rel=1e-8)


def test_fd_is_symmetric():
    a = gaussian(300, [0.0, 1.0, 2.0], [1.0, 2.0, 0.5], seed=0)
    b = gaussian(400, [1.0, 0.0, 0.0], [0.5, 1.0, 1.0], seed=1) @ random_rotation(3, seed=2)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a.numpy(), b) == pytest.approx(frechet_distance(a, b), rel=1e-12)


# --- Kernel inception distance ---------------------------------------------------------------------------


def cubic_mmd_u(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD² with k(x, y) = (xᵀy/d + 1)³, summed pair by pair."""
    d, m = x.shape[1], len(x)

    def k(u, v):
        return (u @ v / d + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    across = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return within / (m * (m - 1)) - 2 * across / m**2


def test_kid_with_whole_sets_is_the_unbiased_mmd():
    # subset_size ≥ n makes every subset the whole set (in another order), so KID is the U-statistic itself.
    a, b = gaussian(25, [0.0] * 3, [1.0] * 3, seed=0), gaussian(25, [0.5] * 3, [1.0] * 3, seed=1)
    assert kernel_inception_distance(a, b, subsets=3, subset_size=100) == pytest.approx(
        cubic_mmd_u(a.numpy(), b.numpy()), rel=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted_ones():
    same = [kernel_inception_distance(gaussian(1000, [0.0] * 16, [1.0] * 16, seed=s),
                                      gaussian(1000, [0.0] * 16, [1.0] * 16, seed=100 + s),
                                      subsets=20, subset_size=500) for s in range(3)]
    shifted = kernel_inception_distance(gaussian(1000, [0.0] * 16, [1.0] * 16, seed=0),
                                        gaussian(1000, [0.5] * 16, [1.0] * 16, seed=1), subsets=20, subset_size=500)
    assert max(abs(value) for value in same) < 0.01
    assert shifted > 0.3


def test_kid_is_deterministic_under_its_generator():
    a, b = gaussian(300, [0.0] * 4, [1.0] * 4, seed=0), gaussian(200, [0.2] * 4, [1.0] * 4, seed=1)

    def kid(seed: int | None) -> float:
        return kernel_inception_distance(a, b, subsets=5, subset_size=50,
                                         generator=None if seed is None else generator(seed))

    assert kid(None) == kid(None)
    assert kid(3) == kid(3)
    assert kid(3) != kid(4)  # the subsets do depend on the generator


# --- Precision and recall --------------------------------------------------------------------------------

CENTRES = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0], [0.0, -10.0]], dtype=torch.float64)


def modes(n: int, which: list[int], seed: int) -> torch.Tensor:
    """n points spread evenly over the unit Gaussians at ``CENTRES[which]``."""
    return CENTRES[which][torch.arange(n) % len(which)] + gaussian(n, [0.0, 0.0], [1.0, 1.0], seed)


def test_precision_recall_of_a_set_with_itself_and_with_a_far_set():
    real = modes(800, [0, 1, 2, 3], seed=0)
    assert precision_recall(real, real) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_half_the_modes_give_half_the_recall_and_full_precision():
    real, fake = modes(2000, [0, 1, 2, 3], seed=0), modes(2000, [0, 1], seed=1)
    precision, recall = precision_recall(real, fake)
    assert precision > 0.95
    assert 0.45 < recall <= 0.5  # half the real points lie in covered modes, all but the tails inside a ball
    precision, recall = precision_recall(real, modes(2000, [0, 1, 2, 3], seed=2))
    assert precision > 0.95 and recall > 0.95


def test_nearest_distances_against_brute_force():
    queries, references = gaussian(1500, [0.0] * 3, [1.0] * 3, seed=0), gaussian(5000, [0.0] * 3, [1.0] * 3, seed=1)
    brute = torch.cdist(queries, references).min(1).values
    torch.testing.assert_close(nearest_distances(queries, references), brute, rtol=1e-9, atol=1e-9)
    # Excluding itself: the nearest *other* point (across the blocks of 1024 rows too).
    within = torch.cdist(queries, queries) + torch.diag(torch.full((1500,), float("inf"), dtype=torch.float64))
    torch.testing.assert_close(nearest_distances(queries, queries, exclude_self=True), within.min(1).values,
                               rtol=1e-9, atol=1e-9)
    assert isinstance(nearest_distances(queries.numpy(), references), np.ndarray)


# --- Memorisation ----------------------------------------------------------------------------------------


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=generator(seed))


def test_copies_of_training_images_are_all_flagged():
    train, test = images(1000, 0), images(1000, 1)
    result = memorisation(train[torch.randperm(1000, generator=generator(2))[:300]], train, test, percentile=5)
    assert result["fraction"] == 1.0
    assert result["sample_median"] < 1e-5 < result["threshold"] < result["test_median"]


def test_fresh_draws_are_flagged_at_about_the_percentile():
    train, test = images(1000, 0), images(1000, 1)
    result = memorisation(images(2000, 2), train, test, percentile=5)
    assert 0.02 < result["fraction"] < 0.10
    assert result["sample_median"] == pytest.approx(result["test_median"], rel=0.05)


# --- Class coverage --------------------------------------------------------------------------------------


def test_uniform_labels_have_zero_chi2():
    coverage = class_coverage(torch.arange(10).repeat(50), 10)
    assert coverage["chi2"] == 0.0 and coverage["p_value"] == 1.0
    assert coverage["fractions"] == [0.1] * 10 and coverage["min_fraction"] == coverage["max_fraction"] == 0.1


def test_skewed_labels_are_detected():
    labels = np.concatenate([np.repeat(np.arange(1, 10), 50), np.zeros(5, dtype=np.int64)])  # class 0 is rare
    coverage = class_coverage(labels, 10)
    counts = np.bincount(labels, minlength=10)
    expected = len(labels) / 10
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert coverage["chi2"] == pytest.approx(chi2, rel=1e-12)
    assert coverage["p_value"] == pytest.approx(scipy.stats.chi2.sf(chi2, df=9), rel=1e-9) and coverage["p_value"] < 1e-3
    assert coverage["min_fraction"] == pytest.approx(5 / len(labels))


# --- Bad inputs ------------------------------------------------------------------------------------------

GOOD = np.zeros((10, 3))
WITH_NAN = np.where(np.eye(10, 3) > 0, np.nan, 0.0)


@pytest.mark.parametrize("call", [
    lambda: frechet_distance(GOOD, np.zeros((10, 4))),
    lambda: frechet_distance(GOOD[:1], GOOD),
    lambda: frechet_distance(WITH_NAN, GOOD),
    lambda: frechet_distance(np.zeros(10), GOOD),
    lambda: kernel_inception_distance(GOOD, np.zeros((10, 2))),
    lambda: precision_recall(GOOD, np.zeros((10, 3, 1))),
    lambda: nearest_distances(GOOD, GOOD[:5], exclude_self=True),
    lambda: memorisation(np.zeros((5, 1, 8, 8)), np.zeros((5, 1, 8, 7)), np.zeros((5, 1, 8, 8))),
    lambda: class_coverage(np.array([0, 1, 10]), 10),
    lambda: class_coverage(np.array([0.0, 1.0]), 10),
    lambda: train_classifier(torch.zeros(4, 1, 4, 4), torch.zeros(4, dtype=torch.long)),
    lambda: train_classifier(torch.zeros(4, 1, 8, 8), torch.zeros(3, dtype=torch.long)),
], ids=["fd-width", "fd-one-row", "fd-nan", "fd-1d", "kid-width", "pr-3d", "exclude-self-shape",
        "memorisation-shape", "label-range", "label-dtype", "classifier-small-image", "classifier-labels"])
def test_bad_inputs_give_one_line_data_errors(call):
    with pytest.raises(DataError) as error:
        call()
    assert "\n" not in str(error.value) and str(error.value)


@pytest.mark.parametrize("call", [
    lambda: precision_recall(GOOD, GOOD, k=10),
    lambda: kernel_inception_distance(GOOD, GOOD, subsets=0),
    lambda: memorisation(GOOD, GOOD, GOOD, percentile=0),
    lambda: class_coverage(np.array([0, 0]), 1),
])
def test_bad_settings_give_config_errors(call):
    with pytest.raises(ConfigError):
        call()


# --- The classifier --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """sklearn's 8×8 digits in [-1, 1], split 80/20 at random (seeded)."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 8 - 1
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=generator(0))
    train, test = order[: int(0.8 * len(x))], order[int(0.8 * len(x)) :]
    return x[train], y[train], x[test], y[test]


@pytest.mark.slow
def test_classifier_reaches_97_percent_on_digits(digits):
    train_x, train_y, test_x, test_y = digits
    model = train_classifier(train_x, train_y, seed=0, augment=True)  # as scorelab.evaluation.images trains it
    assert accuracy(model, test_x, test_y) >= 0.97
    assert embed(model, test_x, batch_size=100).shape == (len(test_x), classifier.FEATURES)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 9, 13)])
def test_classifier_takes_any_image_size(shape):
    model = DigitClassifier(shape[0], 10)
    x = torch.zeros(2, *shape)
    assert model(x).shape == (2, 10) and model.features(x).shape == (2, classifier.FEATURES)


@pytest.mark.slow
def test_training_is_seeded_and_leaves_the_global_rng_alone(digits):
    train_x, train_y = digits[0][:256], digits[1][:256]
    state = torch.get_rng_state()
    first, second, other = (train_classifier(train_x, train_y, seed=seed, epochs=2, augment=True).state_dict()
                            for seed in (5, 5, 6))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["head.weight"], other["head.weight"])


def test_shifts_move_images_by_at_most_one_pixel():
    x = torch.full((500, 1, 8, 8), -1.0)
    x[:, 0, 4, 3] = 1.0
    shifted = classifier._shifted(x, generator(0))
    rows, cols = (shifted[:, 0] == 1.0).nonzero()[:, 1:].T
    assert len(rows) == 500  # one bright pixel per image: nothing lost or duplicated
    assert set(rows.tolist()) == {3, 4, 5} and set(cols.tolist()) == {2, 3, 4}  # all 9 shifts occur


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(a.state_dict()[name], b.state_dict()[name]) for name in a.state_dict())


@pytest.mark.slow
def test_classifier_for_caches_and_retrains_a_corrupt_entry(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("SCORELAB_CACHE", str(tmp_path))
    train_x, train_y = digits[0][:256], digits[1][:256]
    first = classifier_for(train_x, train_y, key={"data": "digits"}, epochs=2)
    [entry] = (tmp_path / "classifiers").glob("*.safetensors")

    def fail(*args, **kwargs):
        raise AssertionError("retrained although the cache holds the model")

    with monkeypatch.context() as patch:
        patch.setattr(classifier, "train_classifier", fail)
        assert state_equal(classifier_for(train_x, train_y, key={"data": "digits"}, epochs=2), first)
        with pytest.raises(AssertionError):  # other images are another entry
            classifier_for(train_x[:-1], train_y[:-1], key={"data": "digits"}, epochs=2)

    entry.write_bytes(b"not a safetensors file")
    retrained = classifier_for(train_x, train_y, key={"data": "digits"}, epochs=2)
    assert state_equal(retrained, first)
    assert entry.stat().st_size > 1000  # rewritten


def test_classifier_for_skips_an_unwritable_cache(digits, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SCORELAB_CACHE", str(blocker))  # a file, so no directory can be made under it
    model = classifier_for(digits[0][:64], digits[1][:64], key={"data": "digits"}, epochs=1)
    assert isinstance(model, DigitClassifier)
