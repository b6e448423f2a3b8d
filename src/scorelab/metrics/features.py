"""Metrics on feature arrays [n, d]: the Fréchet and kernel distances, precision and recall, memorisation.

Features are a classifier's penultimate activations (:mod:`scorelab.metrics.classifier`) or raw
pixels, as torch Tensors or numpy arrays; every computation is in float64. Pairwise
distances are computed in blocks with ``torch.cdist`` on the inputs' device, so sets of
a few thousand points against tens of thousands stay fast and light on memory.

- :func:`frechet_distance` (FID) and :func:`kernel_inception_distance` (KID): how far
  apart two feature distributions are;
- :func:`precision_recall`: how much of the fake set is realistic, and how much of the
  real set the fake one covers;
- :func:`nearest_distances` and :func:`memorisation`: whether samples copy the training set;
- :func:`class_coverage`: whether a classifier's labels of the samples cover every class evenly.
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, DataError, require_positive_int

Array = Tensor | np.ndarray

# Distance blocks of 1024 × 4096 float64 entries are 32 MB.
_QUERY_ROWS = 1024
_REFERENCE_ROWS = 4096


def _as_tensor(x: Array, name: str, *, min_rows: int = 1, device: torch.device | None = None) -> Tensor:
    """``x`` as a float64 Tensor [n, d] on ``device`` (default: its own), with finite values and ≥ ``min_rows`` rows."""
    t = x.detach() if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float64))
    t = t.to(device=device if device is not None else t.device, dtype=torch.float64)
    if t.ndim != 2:
        raise DataError(f"{name} must have shape [n, d], got {tuple(t.shape)}")
    if len(t) < min_rows:
        raise DataError(f"{name} needs at least {min_rows} rows, got {len(t)}")
    if not bool(torch.isfinite(t).all()):
        raise DataError(f"{name} has NaN or infinite values")
    return t


def _pair(a: Array, b: Array, names: tuple[str, str], min_rows: int = 1) -> tuple[Tensor, Tensor]:
    """Two feature sets of the same width d, both on the first one's device."""
    a = _as_tensor(a, names[0], min_rows=min_rows)
    b = _as_tensor(b, names[1], min_rows=min_rows, device=a.device)
    if a.shape[1] != b.shape[1]:
        raise DataError(f"{names[0]} and {names[1]} have different widths: {a.shape[1]} and {b.shape[1]}")
    return a, b


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric PSD matrix, its rounding-negative eigenvalues taken as 0."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _moments(x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The mean [d] and sample covariance [d, d] (n − 1 in the denominator) of the rows of ``x``."""
    x = x.cpu().numpy()
    centred = x - x.mean(0)
    return x.mean(0), centred.T @ centred / (len(x) - 1)


def frechet_distance(a: Array, b: Array) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (FID: Heusel et al. 2017).

        FD = ‖μa − μb‖² + Tr(Σa + Σb − 2 (Σa Σb)^{1/2})

    with sample means and covariances (n − 1 in the denominator). ΣaΣb is not
    symmetric, so a general matrix square root can come out complex or inaccurate
    when the covariances are singular (fewer points than dimensions, dead units).
    Instead Tr((ΣaΣb)^{1/2}) = Σ_i √λ_i(Σa^{1/2} Σb Σa^{1/2}): the matrices are
    similar, and the second one is symmetric PSD, so its eigenvalues are real and
    a symmetric eigensolver finds them stably. Rounding can leave FD a hair below 0;
    it is clamped to 0.
    """
    a, b = _pair(a, b, ("a", "b"), min_rows=2)
    (mean_a, cov_a), (mean_b, cov_b) = _moments(a), _moments(b)
    root_a = _sqrtm_psd(cov_a)
    middle = root_a @ cov_b @ root_a
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    return float(max(distance, 0.0))


def kernel_inception_distance(
    a: Array,
    b: Array,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> float:
    """The kernel distance of Bińkowski et al. 2018 (KID): unbiased MMD² with a cubic polynomial kernel.

        k(x, y) = (xᵀy / d + 1)³
        MMD²_u = 1/(m(m−1)) Σ_{i≠j} [k(x_i, x_j) + k(y_i, y_j)] − 2/m² Σ_ij k(x_i, y_j)

    (Gretton et al. 2012, eq. 3), averaged over ``subsets`` pairs of random subsets
    of ``m = min(subset_size, len(a), len(b))`` rows each, drawn without replacement
    from ``generator`` (default: seeded with 0, so the same inputs give the same
    number). The estimator is unbiased, so it is centred on 0 for two samples of one
    distribution and can be slightly negative.
    """
    a, b = _pair(a, b, ("a", "b"), min_rows=2)
    require_positive_int("subsets", subsets)
    require_positive_int("subset_size", subset_size)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ConfigError(f"subset_size must be at least 2, got {subset_size}")
    width = a.shape[1]
    total = 0.0
    for _ in range(subsets):
        rows_a = torch.randperm(len(a), generator=generator)[:m].to(a.device)
        rows_b = torch.randperm(len(b), generator=generator)[:m].to(a.device)
        both = torch.cat([a[rows_a], b[rows_b]])
        kernel = (both @ both.T / width + 1).pow(3)
        within_a, within_b, across = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
        off_diagonal = within_a.sum() - within_a.trace() + within_b.sum() - within_b.trace()
        total += float(off_diagonal / (m * (m - 1)) - 2 * across.sum() / (m * m))
    return total / subsets


def _blocks(n: int, rows: int) -> list[tuple[int, int]]:
    return [(start, min(start + rows, n)) for start in range(0, n, rows)]


def _kth_nearest(queries: Tensor, references: Tensor, k: int, exclude_self: bool) -> Tensor:
    """The distance from each query to its k-th nearest reference [n], over blocks of the distance matrix.

    With ``exclude_self`` the queries are the references, and row i skips reference i.
    """
    result = torch.empty(len(queries), dtype=torch.float64, device=queries.device)
    for q0, q1 in _blocks(len(queries), _QUERY_ROWS):
        best = torch.full((q1 - q0, k), float("inf"), dtype=torch.float64, device=queries.device)
        for r0, r1 in _blocks(len(references), _REFERENCE_ROWS):
            block = torch.cdist(queries[q0:q1], references[r0:r1])
            if exclude_self and max(q0, r0) < min(q1, r1):
                same = torch.arange(max(q0, r0), min(q1, r1), device=queries.device)
                block[same - q0, same - r0] = float("inf")
            best = torch.cat([best, block], dim=1).topk(k, dim=1, largest=False).values
        result[q0:q1] = best[:, k - 1]
    return result


def nearest_distances(queries: Array, references: Array, *, exclude_self: bool = False) -> Array:
    """The Euclidean distance from each query [n, d] to its nearest reference [m, d]: shape [n].

    With ``exclude_self`` the queries must be the references themselves (same rows, same
    order), and each row's distance to itself is skipped: the distance to its nearest
    *other* point. Returns a float64 Tensor on the queries' device for Tensor queries,
    else a numpy array.
    """
    as_numpy = not isinstance(queries, Tensor)
    queries, references = _pair(queries, references, ("queries", "references"))
    if exclude_self and (queries.shape != references.shape or len(queries) < 2):
        raise DataError(f"exclude_self needs the references to be the ≥ 2 queries themselves, got shapes "
                        f"{tuple(queries.shape)} and {tuple(references.shape)}")
    distances = _kth_nearest(queries, references, 1, exclude_self)
    return distances.cpu().numpy() if as_numpy else distances


def _inside_any_ball(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """For each point, whether ‖point − centre_j‖ ≤ radius_j for some j: bool [n]."""
    inside = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for p0, p1 in _blocks(len(points), _QUERY_ROWS):
        for c0, c1 in _blocks(len(centres), _REFERENCE_ROWS):
            block = torch.cdist(points[p0:p1], centres[c0:c1])
            inside[p0:p1] |= (block <= radii[None, c0:c1]).any(dim=1)
    return inside


def precision_recall(real: Array, fake: Array, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019), from k-NN balls in feature space.

    Each point's ball has the radius of its k-th nearest neighbour in its own set
    (not counting itself); a set's manifold is the union of its points' balls.

        precision = (1/|fake|) Σ_f 1[f ∈ manifold(real)]   (how many samples look real)
        recall    = (1/|real|) Σ_r 1[r ∈ manifold(fake)]   (how much of the data the samples cover)

    Both lie in [0, 1]; mode dropping lowers recall, poor samples lower precision.
    """
    real, fake = _pair(real, fake, ("real", "fake"))
    require_positive_int("k", k)
    if k >= min(len(real), len(fake)):
        raise ConfigError(f"k must be less than the size of each set ({len(real)} real, {len(fake)} fake), got {k}")
    real_radii = _kth_nearest(real, real, k, exclude_self=True)
    fake_radii = _kth_nearest(fake, fake, k, exclude_self=True)
    precision = _inside_any_ball(fake, real, real_radii).double().mean()
    recall = _inside_any_ball(real, fake, fake_radii).double().mean()
    return float(precision), float(recall)


def memorisation(samples: Array, train: Array, test: Array, *, percentile: float = 1.0) -> dict[str, float]:
    """How many samples lie closer to the training set than held-out data does.

    For each sample, d_s = min_t ‖s − t‖ over the training images t; for each test
    image, d_x likewise. The threshold τ is the ``percentile``-th percentile of the
    d_x, and

        fraction = (1/|samples|) Σ_s 1[d_s ≤ τ].

    Samples drawn from the data distribution independently of the training set
    give fraction ≈ percentile/100, like the test set itself; a model that copies
    its training images gives fraction ≈ 1. This is the nearest-neighbour test
    for copying (cf. Carlini et al. 2023, "Extracting training data from diffusion
    models", who use a relative version). Images [n, C, H, W] (or any [n, ...]) are
    flattened; pass pixels, where a copy is at distance 0.

    Returns ``fraction``, ``threshold`` τ, and the medians ``sample_median`` of d_s
    and ``test_median`` of d_x.
    """
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile!r}")
    flat = []
    for name, x in (("samples", samples), ("train", train), ("test", test)):
        x = x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float64))
        if x.ndim < 2:
            raise DataError(f"{name} must have shape [n, d] or [n, *shape], got {tuple(x.shape)}")
        flat.append(x.reshape(len(x), -1))
    samples, train = _pair(flat[0], flat[1], ("samples", "train"))
    train, test = _pair(train, flat[2], ("train", "test"))
    sample_distances = _kth_nearest(samples, train, 1, exclude_self=False).cpu().numpy()
    test_distances = _kth_nearest(test, train, 1, exclude_self=False).cpu().numpy()
    threshold = float(np.percentile(test_distances, percentile))
    return {"fraction": float(np.mean(sample_distances <= threshold)), "threshold": threshold,
            "sample_median": float(np.median(sample_distances)), "test_median": float(np.median(test_distances))}


def class_coverage(labels: Array, n_classes: int) -> dict:
    """How evenly predicted labels cover the classes: their histogram and Pearson's χ² test against uniform.

        χ² = Σ_c (N_c − N/K)² / (N/K),   K − 1 degrees of freedom

    (Pearson 1900; ``scipy.stats.chisquare``) for counts N_c of each of the K
    classes among N labels. A small p-value says the labels are not uniform; a
    sampler that drops or favours classes shows it in ``min_fraction`` and
    ``max_fraction``. Returns ``fractions`` (a list of K), ``min_fraction``,
    ``max_fraction``, ``chi2`` and ``p_value``.
    """
    require_positive_int("n_classes", n_classes)
    if n_classes < 2:
        raise ConfigError(f"n_classes must be at least 2, got {n_classes}")
    labels = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a non-empty 1-D array of integers, got shape {labels.shape} "
                        f"and dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise DataError(f"labels must lie in [0, {n_classes}), got values from {labels.min()} to {labels.max()}")
    counts = np.bincount(labels, minlength=n_classes)
    fractions = counts / len(labels)
    test = scipy.stats.chisquare(counts)
    return {"fractions": fractions.tolist(), "min_fraction": float(fractions.min()),
            "max_fraction": float(fractions.max()), "chi2": float(test.statistic), "p_value": float(test.pvalue)}
