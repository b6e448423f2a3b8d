"""Sample-quality metrics against ground truth, for samples of any shape (each flattened).

The headline figure is the **W2 ratio**: the mean exact 2-Wasserstein distance
between model samples and fresh data, over the mean distance between two fresh
data sets of the same size (the real-vs-real floor). W2 between finite samples
is biased upwards and noisy, so a distance means little without its floor.

Sample metrics (``metric(a, b) -> float``, symmetric, 0 for identical sets):
exact :func:`wasserstein2`, :func:`sliced_wasserstein`, :func:`mmd` and
:func:`energy_distance`. :func:`quality` reports each of them beside its floor.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from scorelab import __version__
from scorelab.core.cache import lookup, store
from scorelab.core.errors import ConfigError, DataError, require_positive_int
from scorelab.core.shapes import batch_sum, require_batch

Sampler = Callable[[int, torch.Generator], Tensor]


def _as_numpy(a: Tensor | np.ndarray) -> np.ndarray:
    """Samples [n, *shape] as a float64 array [n, D] (each sample flattened)."""
    array = a.detach().cpu().double().numpy() if isinstance(a, Tensor) else np.asarray(a, dtype=np.float64)
    if array.ndim < 2:
        raise DataError(f"expected samples of shape [n, d] or [n, *shape], got {array.shape}")
    return array.reshape(len(array), int(np.prod(array.shape[1:])))


def _check_pair(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sample sets as float64 arrays [n, d] of the same dimension d."""
    a, b = _as_numpy(a), _as_numpy(b)
    if a.shape[1] != b.shape[1]:
        raise DataError(f"samples have different dimensions: {a.shape[1]} and {b.shape[1]}")
    if len(a) == 0 or len(b) == 0:
        raise DataError("cannot compare an empty sample set")
    return a, b


def wasserstein2(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Exact W2 between two empirical distributions with uniform weights.

        W2(a, b) = ( min_π Σ_ij π_ij ‖a_i − b_j‖² )^{1/2}

    solved as a linear program with POT's network simplex (``ot.emd2``).
    Cost is O(n³) in the worst case, the slowest metric here at n = 5000.
    """
    import ot  # POT: imported where it is used, so that importing scorelab stays fast

    a, b = _check_pair(a, b)
    cost = ot.dist(a, b, metric="sqeuclidean")
    return float(np.sqrt(max(ot.emd2([], [], cost, numItermax=10_000_000), 0.0)))


def sliced_wasserstein(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    *,
    n_projections: int = 200,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015).

        SW2(a, b) = ( E_θ W2²(θᵀa, θᵀb) )^{1/2},   θ uniform on the unit sphere,

    estimated with ``n_projections`` directions drawn from ``generator``; each
    1-D W2 is exact (sorted quantiles, POT's ``ot.sliced_wasserstein_distance``).
    SW2 ≤ W2, and it costs O(n log n) per direction, so it scales to large n.
    """
    import ot

    a, b = _check_pair(a, b)
    require_positive_int("n_projections", n_projections)
    directions = torch.randn(a.shape[1], n_projections, generator=generator, dtype=torch.float64).numpy()
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    return float(ot.sliced_wasserstein_distance(a, b, n_projections=n_projections, projections=directions, p=2))


# A block of rows at a time keeps the pairwise matrices to ~40 MB at n = 5000.
_BLOCK_ROWS = 1024


def _mean_over_pairs(a: np.ndarray, b: np.ndarray, kernel: Callable[[Tensor], Tensor]) -> float:
    """(1/(n m)) Σ_ij kernel(‖a_i − b_j‖²), over all pairs.

    The n·m kernel values are computed in float32 (the kernels are O(1), so their
    rounding stays at float32's 1e-7) and summed in float64. Centring on
    b's mean first keeps the ‖x‖² + ‖y‖² − 2xᵀy expansion from cancelling.
    """
    centre = b.mean(0)
    a_t, b_t = torch.from_numpy(a - centre).float(), torch.from_numpy(b - centre).float()
    b_norms = b_t.pow(2).sum(1)
    total = 0.0
    for block in a_t.split(_BLOCK_ROWS):
        squared = (block.pow(2).sum(1)[:, None] + b_norms[None] - 2 * block @ b_t.T).clamp_min_(0)
        total += float(kernel(squared).sum(dtype=torch.float64))
    return total / (len(a_t) * len(b_t))


# MMD bandwidths, as multiples of the median pairwise distance: fine scales
# matter on the toy suite, whose structure (arms, rings, squares) is ~10× finer
# than its overall spread.
BANDWIDTH_MULTIPLES = (0.125, 0.25, 0.5, 1.0, 2.0)


def mmd_bandwidths(x: Tensor | np.ndarray, max_points: int = 1000) -> tuple[float, ...]:
    """RBF bandwidths h_m = c_m · median ‖x_i − x_j‖ for c_m in :data:`BANDWIDTH_MULTIPLES`.

    The median heuristic (Gretton et al. 2012, Sec. 8) over the first ``max_points`` rows.
    """
    x = _as_numpy(x)[:max_points]
    distances = torch.pdist(torch.from_numpy(x))
    median = float(distances.median()) if len(distances) else 1.0
    return tuple(c * (median if median > 0 else 1.0) for c in BANDWIDTH_MULTIPLES)


def mmd(a: Tensor | np.ndarray, b: Tensor | np.ndarray, *, bandwidths: tuple[float, ...] | None = None) -> float:
    """Maximum mean discrepancy with a mixture of RBF kernels, biased (V-statistic) estimator.

        MMD²_b(a, b) = mean_ij k(a_i, a_j) + mean_ij k(b_i, b_j) − 2 mean_ij k(a_i, b_j)
        k(x, y) = (1/M) Σ_m exp(−‖x − y‖² / (2 h_m²))

    (Gretton et al. 2012, "A kernel two-sample test", eq. 5; the sum of RBF
    kernels as in Li et al. 2015, GMMN.) Returns MMD_b = √MMD²_b, which is ≥ 0,
    exactly 0 for identical sets, symmetric, and biased upwards by O(1/√n):
    read it beside its real-vs-real floor (:func:`quality`). The unbiased
    U-statistic would be centred on 0 but can be negative, so it has no square root.

    Args:
        bandwidths: the h_m. Default: :func:`mmd_bandwidths` of the pooled first
            500 rows of ``a`` and ``b`` (symmetric in a and b).
    """
    a, b = _check_pair(a, b)
    if bandwidths is None:
        bandwidths = mmd_bandwidths(np.concatenate([a[:500], b[:500]]))
    def kernel(squared: Tensor) -> Tensor:
        return sum(torch.exp(squared / (-2.0 * h * h)) for h in bandwidths) / len(bandwidths)

    squared_mmd = _mean_over_pairs(a, a, kernel) + _mean_over_pairs(b, b, kernel) - 2 * _mean_over_pairs(a, b, kernel)
    return float(np.sqrt(max(squared_mmd, 0.0)))


def energy_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Energy distance (Székely & Rizzo 2013), V-statistic, as a distance in data units.

        D(a, b) = ( 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ )^{1/2},   X, X' ~ a,  Y, Y' ~ b,

    with every expectation a mean over all pairs of the two sets. The square
    root follows ``scipy.stats.energy_distance``. D is 0 for identical sets and
    symmetric; like MMD it is biased upwards at finite n.
    """
    a, b = _check_pair(a, b)
    squared = (2 * _mean_over_pairs(a, b, torch.sqrt) - _mean_over_pairs(a, a, torch.sqrt)
               - _mean_over_pairs(b, b, torch.sqrt))
    return float(np.sqrt(max(squared, 0.0)))


def fisher_divergence(score: Callable[[Tensor], Tensor], true_score: Callable[[Tensor], Tensor], x: Tensor) -> float:
    """Fisher divergence ½ E_p‖s_θ(x) − ∇ₓ log p(x)‖² (Hyvärinen 2005), the mean over rows of ``x``.

    ``x`` [B, *shape] should be fresh samples from p; both scores are called as
    ``score(x)`` (wrap a conditional model, e.g. ``lambda x: model(x, sigma)``).
    This is the quantity score matching minimises, up to a constant; 0 means the
    score is exact on the data.
    """
    require_batch(x)
    with torch.no_grad():
        learned, truth = score(x), true_score(x)
    if learned.shape != x.shape or truth.shape != x.shape:
        raise DataError(f"both scores must return the shape of x {tuple(x.shape)}, "
                        f"got {tuple(learned.shape)} and {tuple(truth.shape)}")
    return 0.5 * float(batch_sum((learned - truth.to(learned)).pow(2)).mean())


@dataclass(frozen=True)
class RatioReport:
    """A metric between model and data beside its same-size real-vs-real floor (see :func:`quality`)."""

    model_mean: float
    model_std: float
    floor_mean: float
    floor_std: float
    ratio: float
    n: int
    repeats: int
    floor_repeats: int

    def to_dict(self) -> dict:
        return asdict(self)


Metric = Callable[[Tensor, Tensor], float]


def _model_set(samples_or_sampler: Sampler | Tensor, n: int, repeat: int, generator: torch.Generator) -> Tensor:
    """The model's samples for one repetition: fresh draws, or the repeat-th block of n rows."""
    if isinstance(samples_or_sampler, Tensor):
        return samples_or_sampler[repeat * n : (repeat + 1) * n]
    return samples_or_sampler(n, generator)


def _data_pair(truth: Sampler | Tensor, n: int, generator: torch.Generator,
               floor_pool: int) -> tuple[Tensor, Tensor]:
    """Data and the floor's second set: disjoint subsets of a finite pool, or fresh draws.

    From a sampler, the second set is ``n`` rows picked at random from a draw of
    ``floor_pool·n``, which makes it i.i.d. even when the sampler is stratified.
    """
    if isinstance(truth, Tensor):
        order = torch.randperm(len(truth), generator=generator)
        return truth[order[:n]], truth[order[n : 2 * n]]
    data, pool = truth(n, generator), truth(floor_pool * n, generator)
    return data, pool[torch.randperm(len(pool), generator=generator)[:n]]


def _data_pairs(truth: Sampler | Tensor, n: int, repeats: int, seed: int,
                floor_pool: int) -> Iterator[tuple[torch.Generator, Tensor, Tensor]]:
    """(generator, data, other data) for each repetition r, the generator seeded ``seed·1000 + r``."""
    for r in range(repeats):
        generator = torch.Generator().manual_seed(seed * 1000 + r)
        yield generator, *_data_pair(truth, n, generator, floor_pool)


def require_floor_repeats(repeats: int, floor_repeats: int) -> None:
    """The floor's repetitions include the model's, so F >= R; a :class:`ConfigError` otherwise."""
    if floor_repeats < repeats:
        raise ConfigError(f"floor_repeats must be >= repeats = {repeats}, got {floor_repeats}")


def _floor_cache_key(floor_key: dict, metric_names: list[str], n: int, floor_repeats: int, seed: int,
                     floor_pool: int) -> dict:
    """Everything that determines a floor's values (see :func:`quality`'s ``floor_key``)."""
    return {"truth": floor_key, "metrics": sorted(metric_names), "n": n, "floor_repeats": floor_repeats,
            "seed": seed, "floor_pool": floor_pool, "version": __version__}


def floor_mean(truth: Sampler, *, n: int = 5000, repeats: int = 3, seed: int = 0, floor_pool: int = 20,
               metric: Metric = wasserstein2, floor_key: dict | None = None) -> float:
    """The floor of :func:`quality` alone: mean metric(data_r, data'_r) over the same draws.

    Data sets r are those :func:`quality` draws with the same ``n``, ``seed`` and
    sampler ``truth``, so a second floor (another ``floor_pool``) can be set beside
    a model's mean without measuring the model again. ``floor_key`` caches W2 floors as
    :func:`quality` does (and shares its entries).
    """
    require_positive_int("floor_pool", floor_pool)
    key = (_floor_cache_key(floor_key, ["w2"], n, repeats, seed, floor_pool)
           if floor_key is not None and metric is wasserstein2 else None)
    cached_values = lookup("floors", key) if key else None
    if cached_values is not None:
        return statistics.fmean(cached_values["w2"])
    values = [metric(data, other) for _, data, other in _data_pairs(truth, n, repeats, seed, floor_pool)]
    if key:
        store("floors", key, {"w2": values})
    return statistics.fmean(values)


def _ratio_report(model_values: list[float], floor_values: list[float], n: int) -> RatioReport:
    def spread(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    model_mean, floor_mean = statistics.fmean(model_values), statistics.fmean(floor_values)
    ratio = model_mean / floor_mean if floor_mean > 0 else float("inf")
    return RatioReport(model_mean, spread(model_values), floor_mean, spread(floor_values), ratio, n,
                       len(model_values), len(floor_values))


def default_metrics(reference: Tensor, seed: int = 0) -> dict[str, Metric]:
    """Every sample metric, with its randomness and kernel fixed so model and floor are measured alike.

    ``sliced_w2`` uses the same projections for every pair (seeded by ``seed``);
    ``mmd`` uses bandwidths from ``reference`` (a data set) for every pair.
    """
    bandwidths = mmd_bandwidths(reference)
    return {
        "w2": wasserstein2,
        "sliced_w2": lambda a, b: sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(seed)),
        "mmd": lambda a, b: mmd(a, b, bandwidths=bandwidths),
        "energy": energy_distance,
    }


def quality(
    samples_or_sampler: Sampler | Tensor,
    truth: Sampler | Tensor,
    *,
    n: int = 5000,
    repeats: int = 3,
    seed: int = 0,
    metrics: dict[str, Metric] | None = None,
    floor_pool: int = 20,
    floor_repeats: int | None = None,
    floor_key: dict | None = None,
) -> dict[str, RatioReport]:
    """Every metric between model samples and data, beside its real-vs-real floor.

    For each repetition r (generators seeded ``seed·1000 + r``) draw data_r and
    data'_r from ``truth`` and model_r from the model, each of ``n`` points, and
    compute metric(model_r, data_r) and the floor metric(data_r, data'_r). Each
    :class:`RatioReport` holds both means, their spreads (sample std over the
    repetitions) and ratio = mean metric / mean floor; 1.0 means as close to
    the data as an i.i.d. sample of the data's distribution of the same size,
    which is what a perfect sampler produces.

    Why data'_r is drawn i.i.d.: several published toy generators are
    stratified, not i.i.d. FFJORD's ``rings``, ``circles`` and ``moons`` put
    their points at evenly spaced angles, and ``pinwheel`` and ``2spirals``
    give every arm exactly n/5 or n/2 points. Two such draws match each other
    better than any i.i.d. sample can (BENCHMARKS.md, "Design measurements",
    has by how much). So data'_r is ``n`` rows picked at random
    from a draw of ``floor_pool·n`` points; for an i.i.d. generator this is
    the same distribution as a plain second draw. ``floor_pool = 1`` gives the
    plain data-vs-data floor.

    Args:
        samples_or_sampler: a sampler ``(n, generator) -> Tensor``, or model
            samples with at least ``n·repeats`` rows (repetition r uses rows
            [r·n, (r+1)·n)).
        truth: a sampler of fresh data, or a finite data set, from which each
            repetition takes two disjoint random subsets (``n`` is then capped
            at half its size).
        metrics: name → ``metric(a, b) -> float``; default :func:`default_metrics`
            (``w2``, ``sliced_w2``, ``mmd``, ``energy``).
        floor_pool: see above; ignored for a finite ``truth``, whose disjoint
            random subsets are already i.i.d. draws from it.
        floor_repeats: repetitions behind the floor's mean (default ``repeats``;
            at least ``repeats``). The floor depends on the data alone, so more
            repetitions cost no model samples, and they take the floor's noise
            out of the ratio. That noise is large where separated clusters
            dominate W2 (BENCHMARKS.md "ratio_null" measures it). Repetitions
            r < ``repeats`` use the same data for the model and the floor.
        floor_key: what identifies ``truth`` (e.g. the data set's name and settings). With it each
            metric's floor values are kept in the user's cache (:mod:`scorelab.core.cache`), keyed by
            it, the metric's name, n, the repetitions, the seed, the pool and the scorelab
            version, and read back instead of recomputed. The data are drawn all the same, so the
            model's values do not change. Only for the metrics of :func:`default_metrics`, which
            their names identify.

    The metric evaluations run on two threads (POT and torch release the GIL).
    """
    require_positive_int("n", n)
    require_positive_int("repeats", repeats)
    require_positive_int("floor_pool", floor_pool)
    floor_repeats = repeats if floor_repeats is None else floor_repeats
    require_floor_repeats(repeats, floor_repeats)
    if isinstance(truth, Tensor):
        n = min(n, len(truth) // 2)
    if isinstance(samples_or_sampler, Tensor) and len(samples_or_sampler) < n * repeats:
        raise DataError(f"need at least n·repeats = {n * repeats} model samples, got {len(samples_or_sampler)}; "
                        "pass more samples, a smaller n, or a sampler")
    data_pairs = list(_data_pairs(truth, n, floor_repeats, seed, floor_pool))
    # The model's draws follow the data's on each repetition's generator.
    model_pairs = [(_model_set(samples_or_sampler, n, r, generator), data)
                   for r, (generator, data, _) in enumerate(data_pairs[:repeats])]
    floor_pairs = [(data, other) for _, data, other in data_pairs]
    metrics = metrics if metrics is not None else default_metrics(data_pairs[0][1], seed)

    floor_cache = None if floor_key is None else _floor_cache_key(floor_key, list(metrics), n, floor_repeats, seed,
                                                                  floor_pool)
    cached_floors = lookup("floors", floor_cache) if floor_cache else None
    pairs = model_pairs + (floor_pairs if cached_floors is None else [])
    tasks = [(metric, pair) for metric in metrics.values() for pair in pairs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        values = iter(list(pool.map(lambda task: task[0](*task[1]), tasks)))
    model_values, floor_values = {}, {}
    for name in metrics:
        model_values[name] = [next(values) for _ in model_pairs]
        floor_values[name] = cached_floors[name] if cached_floors else [next(values) for _ in floor_pairs]
    if floor_cache and cached_floors is None:
        store("floors", floor_cache, floor_values)
    return {name: _ratio_report(model_values[name], floor_values[name], n) for name in metrics}


def w2_ratio(
    sample_model: Sampler | Tensor,
    truth: Sampler | Tensor,
    *,
    n: int = 5000,
    repeats: int = 3,
    seed: int = 0,
    floor_pool: int = 20,
    floor_repeats: int | None = None,
    floor_key: dict | None = None,
) -> RatioReport:
    """The project's W2 ratio: mean W2(model, fresh data) / mean W2(data, i.i.d. fresh data).

    :func:`quality` restricted to exact W2; see there for the arguments.
    """
    return quality(sample_model, truth, n=n, repeats=repeats, seed=seed, metrics={"w2": wasserstein2},
                   floor_pool=floor_pool, floor_repeats=floor_repeats, floor_key=floor_key)["w2"]
