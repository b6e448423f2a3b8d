"""One training step of each objective, timed for this checkout and for an earlier commit in the same run.

    python benchmarks/compare_objectives.py --baseline 1b72a69 [--rounds 7] [--dims 2 16 128]

The earlier commit is checked out into a temporary git worktree. Each round runs one
worker process per code version, alternately, and every worker times every objective
at every D, interleaved, for at least ``--min-seconds`` each; the table gives the
median over rounds and the ratio this/baseline. Workers use only names both versions
share (the stable API of ``shared/design.md``, and each version's own DDPM model), and
one thread each. Writes the ``objectives_versions`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH, HIDDEN = 512, 128
REPO = Path(__file__).resolve().parent.parent


def _methods(sl, torch):
    """name -> (build model for dim D, loss(model, x, generator)), in the version imported as ``sl``."""
    sigmas = torch.tensor([1.0, 0.3, 0.1])
    if hasattr(sl, "processes"):  # after the redesign: VP levels, the ε-loss on them, the EDM-preconditioned MLP
        chain = sl.processes.VP("linear", 100).grid()

        def eps(model, x, g):
            return sl.objectives.eps_loss(model, x, chain, generator=g)

        def ddpm_model(dim):
            return sl.models.build_model("ddpm", sl.models.MODELS["ddpm"].make({"hidden": HIDDEN, "depth": 2}),
                                         shape=(dim,), process=sl.processes.VP("linear", 100))
    else:  # 0.1.0: the chain's ᾱ and the ε network wrapped as a score
        from scorelab.diffusion import eps_to_score, make_chain
        from scorelab.models.diffusion import EpsMLP

        from scorelab.objectives import diffusion_simple_loss

        chain = make_chain("linear", 100)

        def eps(model, x, g):
            return diffusion_simple_loss(model, x, chain, generator=g)

        def ddpm_model(dim):
            return eps_to_score(EpsMLP(dim, HIDDEN, 2))

    objectives = sl.objectives
    return {
        "exact (closed-form trace)": (lambda d: sl.models.MLP(d, HIDDEN, 2),
                                      lambda m, x, g: objectives.exact_score_matching(m, x)),
        "exact, generic (D reverse passes)": (lambda d: sl.models.MLP(d, HIDDEN, 2),
                                              lambda m, x, g: objectives.exact_score_matching(lambda y: m(y), x)),
        "exact, Hutchinson": (lambda d: sl.models.MLP(d, HIDDEN, 2),
                              lambda m, x, g: objectives.exact_score_matching(m, x, trace="hutchinson", generator=g)),
        "sliced (SSM)": (lambda d: sl.models.MLP(d, HIDDEN, 2),
                         lambda m, x, g: objectives.sliced_score_matching(m, x, generator=g)),
        "sliced_vr (SSM-VR)": (lambda d: sl.models.MLP(d, HIDDEN, 2), lambda m, x, g: objectives.sliced_score_matching(
            m, x, variance_reduction=True, generator=g)),
        "dsm (σ = 0.1)": (lambda d: sl.models.MLP(d, HIDDEN, 2),
                          lambda m, x, g: objectives.denoising_score_matching(m, x, 0.1, generator=g)),
        "annealed_dsm (default network)": (
            lambda d: sl.models.NoiseConditionalMLP(d, HIDDEN, 3, 1.0, fourier_features=32),
            lambda m, x, g: objectives.annealed_denoising_score_matching(m, x, sigmas, generator=g)),
        "eps (DDPM network)": (ddpm_model, eps),
        "energy, sliced": (lambda d: sl.models.EnergyScore(sl.models.mlp_stack(d, HIDDEN, 2, 1, torch.nn.Softplus)),
                           lambda m, x, g: objectives.sliced_score_matching(m, x, generator=g)),
    }


def worker(dims: list[int], min_seconds: float) -> None:
    """Print {method: {D: seconds per step}} for the scorelab on this process's path."""
    import torch

    import scorelab as sl

    torch.set_num_threads(1)
    methods = _methods(sl, torch)
    results: dict[str, dict[int, float]] = {name: {} for name in methods}
    for dim in dims:
        x = torch.randn(BATCH, dim, generator=torch.Generator().manual_seed(0))
        generator = torch.Generator().manual_seed(0)
        setups = {}
        for name, (build, loss) in methods.items():
            torch.manual_seed(0)
            model = build(dim)
            setups[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), loss)

        def step(name: str) -> None:
            model, optimizer, loss = setups[name]
            value = loss(model, x, generator)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()

        counts = {}
        for name in methods:  # warm up, then calibrate the number of steps per measurement
            step(name)
            begin = time.perf_counter()
            step(name)
            counts[name] = max(1, math.ceil(min_seconds / (time.perf_counter() - begin)))
        for name in methods:
            begin = time.perf_counter()
            for _ in range(counts[name]):
                step(name)
            results[name][dim] = (time.perf_counter() - begin) / counts[name]
    print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="1b72a69", help="the commit to compare with (default: 0.1.0's last)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 16, 128])
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.dims, args.min_seconds)
        return

    from report import markdown_table, write_section  # benchmarks/report.py, beside this script

    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline], cwd=REPO, check=True,
                       capture_output=True)
        try:
            sources = {"this": REPO / "src", "baseline": baseline / "src"}
            timings: dict[str, dict[str, dict[str, list[float]]]] = {version: {} for version in sources}
            for round_ in range(args.rounds):
                for version, source in (sources.items() if round_ % 2 == 0 else reversed(sources.items())):
                    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
                    command = [sys.executable, __file__, "--worker", "--dims", *map(str, args.dims),
                               "--min-seconds", str(args.min_seconds)]
                    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
                    for name, by_dim in json.loads(out).items():
                        for dim, seconds in by_dim.items():
                            timings[version].setdefault(name, {}).setdefault(dim, []).append(seconds)
                print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO, capture_output=True)

    rows, ratios = [], []
    for name, by_dim in timings["this"].items():
        cells = []
        for dim in map(str, args.dims):
            now = statistics.median(by_dim[dim])
            before = statistics.median(timings["baseline"][name][dim])
            ratios.append(now / before)
            cells.append(f"{before * 1e3:.2f} → {now * 1e3:.2f} ({now / before:.2f})")
        rows.append([name, *cells])
    header = ["objective", *[f"D = {d}: ms before → after (ratio)" for d in args.dims]]
    body = (
        f"Median milliseconds per training step (loss, backward, Adam; batch {BATCH}, one thread) over "
        f"{args.rounds} rounds; each round runs the baseline commit `{args.baseline}` and this checkout in "
        "alternate worker processes, every objective interleaved within a worker. The networks are each "
        "version's own: the seed's MLP D-128-128-D, the default noise-conditional MLP (128 wide, 3 deep, 32 "
        "Fourier features), the DDPM ε-network (128 wide, 2 deep) and an energy MLP. Ratios range "
        f"{min(ratios):.2f} to {max(ratios):.2f} (median {statistics.median(ratios):.2f}).\n\n"
        + markdown_table(header, rows)
    )
    write_section("objectives_versions", "Objective step times before and after the core redesign", body)


if __name__ == "__main__":
    main()
