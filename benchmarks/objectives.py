"""Time one training step of each score-matching objective as the dimension D grows (issue 3).

    python benchmarks/objectives.py [--dims 2 8 32 128 512] [--repeats 5] [--threads 1] [--min-seconds 0.25]
                                    [--device cpu|cuda]

A step is forward + backward + an Adam update of the seed's MLP (D-128-128-D,
Softplus) on a batch of 512. Every method is timed in the same run, interleaved
measurement by measurement so that load from other processes hits them alike; the table
gives medians. Rows:
- the seed's exact loss (its ``jacobian`` helper: a second forward pass and D
  backward passes), reimplemented here as the baseline;
- scorelab's exact loss, which gets the trace of a Linear/Softplus chain in
  closed form, and its generic path (D reverse passes) for any other score;
- ``torch.func`` forward mode (``vmap`` over ``jvp`` on the D basis vectors), the
  alternative we measured and rejected (skipped above ``--max-vmap-dim``);
- Hutchinson, SSM, SSM-VR and DSM, and a plain regression step (½‖s(x) − y‖²)
  that shows what the network alone costs at each D.

``--device cuda`` times the same steps on a GPU (synchronising before each clock
read) and writes its own section, ``objectives_cuda``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from report import markdown_table, write_section
from torch import Tensor, nn
from torch.func import jvp, vmap

from scorelab.models import MLP
from scorelab.objectives import denoising_score_matching, exact_score_matching, sliced_score_matching

BATCH = 512
HIDDEN = 128
SEED_LOOP = "seed loop (baseline)"
EXACT = "exact (closed-form trace)"
VMAP_JVP = "exact, torch.func vmap(jvp)"
NETWORK = "network only (regression step)"

Loss = Callable[[nn.Module, Tensor, torch.Generator], Tensor]


def seed_jacobian(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """The seed's helper, as published: a second forward pass, then one backward pass per output."""
    y = f(x)
    rows = []
    for i in range(x.shape[1]):
        v = torch.zeros_like(y)
        v[:, i] = 1.0
        rows.append(torch.autograd.grad(y, x, grad_outputs=v, retain_graph=True, create_graph=True)[0])
    return torch.stack(rows, dim=2)


def seed_exact_loss(model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
    """The seed's ``score_matching``; it marks the caller's x as requiring grad, as the seed does."""
    x.requires_grad_(True)
    s = model(x)
    trace = torch.diagonal(seed_jacobian(model, x), dim1=-2, dim2=-1).sum(-1)
    return (trace + 0.5 * s.pow(2).sum(dim=1)).mean()


def vmap_jvp_exact_loss(model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
    """Forward mode over the D basis vectors; the primal is shared, the tangents are batched."""
    basis = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)[:, None, :].expand(x.shape[1], *x.shape)
    s, columns = vmap(lambda v: jvp(model, (x,), (v,)), out_dims=(None, 0))(basis)
    trace = torch.diagonal(columns, dim1=0, dim2=2).sum(dim=-1)
    return (trace + 0.5 * s.pow(2).sum(dim=1)).mean()


METHODS: dict[str, Loss] = {
    SEED_LOOP: seed_exact_loss,
    EXACT: lambda model, x, g: exact_score_matching(model, x),
    "exact, generic (D reverse passes)": lambda model, x, g: exact_score_matching(lambda y: model(y), x),
    VMAP_JVP: vmap_jvp_exact_loss,
    "exact, Hutchinson (1 projection)": lambda model, x, g: exact_score_matching(
        model, x, trace="hutchinson", generator=g),
    "sliced (SSM, 1 projection)": lambda model, x, g: sliced_score_matching(model, x, generator=g),
    "sliced_vr (SSM-VR)": lambda model, x, g: sliced_score_matching(model, x, variance_reduction=True, generator=g),
    "dsm (σ = 0.1)": lambda model, x, g: denoising_score_matching(model, x, 0.1, generator=g),
    NETWORK: lambda model, x, g: 0.5 * (model(x) - x).pow(2).sum(dim=1).mean(),
}


def training_step(loss_fn: Loss, model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor,
                  generator: torch.Generator) -> None:
    loss = loss_fn(model, x.clone(), generator)  # a clone: the seed's loss mutates its input
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def clock(device: torch.device) -> float:
    """Seconds on a wall clock, after the device has finished the work queued so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_steps(dim: int, methods: dict[str, Loss], repeats: int, min_seconds: float,
               device: torch.device) -> dict[str, float]:
    """Median seconds per training step of each method at dimension ``dim``.

    Each of the ``repeats`` measurements runs enough steps to last about
    ``min_seconds`` (calibrated on one step after a warm-up step), so millisecond steps are not
    at the mercy of the scheduler; methods take turns within every repeat.
    """
    x = torch.randn(BATCH, dim, generator=torch.Generator().manual_seed(0)).to(device)
    # Projections and noise come from a generator on the device: a CPU generator would
    # draw D·B numbers on the host and copy them over at every step.
    generator = torch.Generator(device=device).manual_seed(0)
    setups, steps_per_measurement = {}, {}
    for name, loss_fn in methods.items():
        torch.manual_seed(0)
        model = MLP(dim, HIDDEN, depth=2).to(device)
        setups[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))
        training_step(loss_fn, *setups[name], x, generator)  # warm-up (CUDA kernels, allocator)
        start = clock(device)
        training_step(loss_fn, *setups[name], x, generator)
        steps_per_measurement[name] = max(1, math.ceil(min_seconds / (clock(device) - start)))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, loss_fn in methods.items():
            start = clock(device)
            for _ in range(steps_per_measurement[name]):
                training_step(loss_fn, *setups[name], x, generator)
            times[name].append((clock(device) - start) / steps_per_measurement[name])
    return {name: statistics.median(values) for name, values in times.items()}


def milliseconds(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 8, 32, 128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=0.25, help="length of one timed measurement")
    parser.add_argument("--max-vmap-dim", type=int, default=128, help="skip vmap(jvp) above this D (it is slow)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    results: dict[int, dict[str, float]] = {}
    for dim in args.dims:
        methods = {name: fn for name, fn in METHODS.items() if name != VMAP_JVP or dim <= args.max_vmap_dim}
        results[dim] = time_steps(dim, methods, args.repeats, args.min_seconds, device)
        print(f"D = {dim}: " + ", ".join(f"{k} {milliseconds(v)} ms" for k, v in results[dim].items()), flush=True)

    dims, first = args.dims, args.dims[0]
    header = ["method", *[f"D = {d}" for d in dims], f"D = {dims[-1]} / D = {first}"]
    rows = []
    for name in METHODS:
        cells = [milliseconds(results[d].get(name)) for d in dims]
        growth = results[dims[-1]].get(name, None)
        rows.append([name, *cells, "—" if growth is None else f"{growth / results[first][name]:.2f}x"])
    speedup = ["seed loop / exact", *[f"{results[d][SEED_LOOP] / results[d][EXACT]:.1f}x" for d in dims], ""]
    rows.append([f"**{speedup[0]}**", *speedup[1:]])
    # The network's own forward/backward grows with D (its first and last layers are D×128);
    # dividing by it shows what each objective adds on top.
    relative = [[name, *[f"{results[d][name] / results[d][NETWORK]:.2f}" if name in results[d] else "—"
                         for d in dims]] for name in METHODS if name != NETWORK]
    on_gpu = f" on {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    body = (
        f"Median milliseconds per training step (forward + backward + Adam) over {args.repeats} interleaved "
        f"measurements of at least {args.min_seconds} s each{on_gpu}; batch {BATCH}, MLP D-{HIDDEN}-{HIDDEN}-D (Softplus). The last column is each method's "
        f"cost at D = {dims[-1]} over its cost at D = {first}.\n\n" + markdown_table(header, rows)
        + "\n\nThe same steps in units of the network's own regression step at the same D:\n\n"
        + markdown_table(["method", *[f"D = {d}" for d in dims]], relative)
    )
    if device.type == "cuda":
        write_section("objectives_cuda", "Score-matching objectives on a GPU: one training step against D", body)
    else:
        write_section("objectives", "Score-matching objectives: one training step against D", body)


if __name__ == "__main__":
    main()
