"""How far the W2 ratio of a perfect sampler strays from 1: the criterion's own noise.

A perfect sampler's W2 to fresh data has the same distribution as the floor's
(data vs an i.i.d. draw of the same size, as ``sl.metrics.quality`` draws it). So K data-vs-data W2 values at n = 5000
give that distribution, and splitting them into R "model" values and F "floor"
values, many times at random, gives the spread of the ratio mean(R) / mean(F)
that ``scorelab bench`` reports, with no model involved. Where separated
clusters dominate W2 (gmm, 8gaussians), one W2 is mostly mass moved between
clusters whose counts differ by chance, and the spread is wide.

The same values give what "within noise" means when a benchmark is re-run after a
change: two perfect samplers measured against the same floor (the benchmarks fix
their evaluation seeds, so a re-run meets the same data sets) differ by
(mean(R values) − mean(R others)) / mean(F floor values). Its 95th percentile of
|Δ| is the largest change in a ratio that sampling noise alone explains; training
noise (a retrained model) comes on top.

    python benchmarks/ratio_null.py
"""

from __future__ import annotations

import random
import statistics
from concurrent.futures import ThreadPoolExecutor

import torch
from report import markdown_table, write_section

import scorelab as sl

DATASETS = ("gmm", "8gaussians", "swiss_roll", "moons")
N, K = 5000, 60
SPLITS = ((3, 3), (10, 10), (10, 30))  # (R model repetitions, F floor repetitions)
DRAWS = 20_000
POOL = 20  # the i.i.d. floor's pool, as sl.metrics.quality's floor_pool


def null_w2_values(name: str) -> list[float]:
    """K values of W2 between a data set of N points and an i.i.d. draw of N more: N rows picked at random
    from a draw of POOL·N, as the floor of ``sl.metrics.quality`` is (for a stratified generator such as
    moons this is what a perfect, i.i.d., sampler meets)."""
    generator = torch.Generator().manual_seed(12345)

    def iid(n: int) -> torch.Tensor:
        pool = sl.data.load(name, POOL * n, generator=generator)
        return pool[torch.randperm(len(pool), generator=generator)[:n]]

    pairs = [(sl.data.load(name, N, generator=generator), iid(N)) for _ in range(K)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda pair: sl.metrics.wasserstein2(*pair), pairs))


def null_ratios(values: list[float], repeats: int, floor_repeats: int) -> tuple[list[float], list[float]]:
    """Over random disjoint splits: mean(R values) / mean(F others), and |mean(R) − mean(R more)| / mean(F)."""
    rng = random.Random(0)
    ratios, differences = [], []
    for _ in range(DRAWS):
        picked = rng.sample(values, 2 * repeats + floor_repeats)
        floor = statistics.fmean(picked[2 * repeats:])
        first, second = statistics.fmean(picked[:repeats]), statistics.fmean(picked[repeats:2 * repeats])
        ratios.append(first / floor)
        differences.append(abs(first - second) / floor)
    return sorted(ratios), sorted(differences)


def main() -> None:
    torch.set_num_threads(1)  # the two W2 threads use the two cores
    rows = []
    for name in DATASETS:
        values = null_w2_values(name)
        spread = f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
        for repeats, floor_repeats in SPLITS:
            ratios, differences = null_ratios(values, repeats, floor_repeats)
            quantile = lambda p: ratios[int(p * len(ratios))]  # noqa: E731
            above = lambda limit: sum(r > limit for r in ratios) / len(ratios)  # noqa: E731
            rows.append([f"`{name}`", spread, str(repeats), str(floor_repeats),
                         f"{quantile(0.05):.3f} – {quantile(0.95):.3f}", f"{above(1.2):.3f}", f"{above(1.3):.3f}",
                         f"{differences[int(0.95 * len(differences))]:.3f}"])
        print(name, spread, flush=True)
    body = (
        f"W2 between a data set of n = {N} and an i.i.d. draw of n more (n rows picked at random from {POOL}n, as "
        f"the floor of `sl.metrics.quality`), {K} times per density (mean ± std), then "
        f"{DRAWS} random disjoint splits of those values into R 'model' and F 'floor' repetitions: the ratio "
        "a perfect sampler would score. The 90% range and the chance of exceeding 1.2 or 1.3 are the "
        "criterion's own noise; `scorelab bench` uses R = 10 and F = 30, `scorelab evaluate` and the demo R = F = 3. "
        "The last column is what *within noise* means for a re-run: the 95th percentile of |Δ ratio| between two "
        "perfect samplers measured against the same F floor values (a re-run meets the same data sets, since the "
        "evaluation seeds are fixed); a change larger than that is more than sampling noise.\n\n"
        + markdown_table(["data set", "one W2 (data vs i.i.d. data)", "R", "F", "perfect sampler's ratio, 5% – 95%",
                          "P(ratio > 1.2)", "P(ratio > 1.3)", "re-run |Δ ratio|, 95%"], rows)
    )
    write_section("ratio_null", "The W2 ratio of a perfect sampler: the criterion's noise", body)


if __name__ == "__main__":
    main()
