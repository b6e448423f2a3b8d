"""Which noise-conditional network should be the default? Measured on the swiss roll.

Trains each candidate with the same data, steps, batch, optimiser and sampler,
then reports the W2 ratio (R = 3, n = 5000) and train time.

    python benchmarks/models.py [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from report import markdown_table, write_section

import scorelab as sl

CANDIDATES = {
    "condlinear (the seed's CondLinear net, L = 4 as in the seed)": dict(model="condlinear", n_levels=4),
    "condlinear, L = 10": dict(model="condlinear"),
    "noise_conditional (default)": dict(model="noise_conditional"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    rows = []
    truth = lambda n, g: sl.data.load("swiss_roll", n, generator=g)  # noqa: E731
    for label, changes in CANDIDATES.items():
        ratios, seconds = [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                sl.train(sl.Config(seed=seed, device="cpu", **changes), Path(tmp), progress=False)
                seconds.append(time.perf_counter() - start)
                run = sl.load_run(tmp, device="cpu")
                report = sl.metrics.w2_ratio(lambda n, g: run.sample(n, generator=g), truth, seed=seed + 1)
                ratios.append(report.ratio)
                print(label, seed, report, flush=True)
        rows.append([label, " / ".join(f"{r:.3f}" for r in ratios), f"{statistics.median(seconds):.1f}"])
    body = (
        "Same data (10 000 swiss-roll points), 3000 Adam steps, batch 512, EMA, σ from 1 to 0.01 and annealed "
        "Langevin with the default settings; only the network differs. W2 ratio = mean W2(model, data) / mean "
        f"W2(data, data) over 3 repetitions of n = 5000, one value per training seed ({args.seeds}).\n\n"
        + markdown_table(["network", "W2 ratio per seed", "train s (median)"], rows)
    )
    write_section("models", "Default noise-conditional network (swiss roll)", body)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
