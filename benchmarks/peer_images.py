"""A peer side by side: scorelab's default image run against diffusers' ``UNet2DModel`` at the same size and the
same wall time, on digits and on MNIST, judged by the same features.

    python benchmarks/peer_images.py [--runs DIR] [--datasets digits mnist5k] [--n 1000] [--threads 2] [--quick]

diffusers is not a dependency of scorelab: install it for this benchmark alone (``pip install diffusers``).

For each data set, in one run of this script and on the same ``--threads`` CPU threads:

- scorelab: the data set's default config (on digits a DDPM U-Net, ε-prediction on the linear VP schedule of
  Ho et al. 2020; on MNIST the class-conditional flow family; Adam with cosine decay, an EMA of the weights) is
  trained into ``<runs>/peer_<data>_scorelab``
  (reused if it holds ``model.safetensors``: its seconds are then read from its ``train_log.csv``, so reuse only
  a run trained on this machine), and ``n`` samples are drawn with the run's default sampler as ``scorelab
  sample`` draws them (:meth:`~scorelab.runs.trained.TrainedRun.sample_batches`, seed 1), timed.
- diffusers: a ``UNet2DModel`` (class-conditional, ``num_class_embeds``, where the run is) built from the same U-Net
  settings (:func:`peer_settings`: widths ``channels·2^k`` over ``levels`` levels of ``DownBlock2D``/``UpBlock2D``,
  ``res_blocks`` ResNet blocks per level, the middle block's single-head self-attention, the noise embedding's
  scale-shift GroupNorm ``resnet_time_scale_shift="scale_shift"``; GroupNorm of 4 groups, diffusers' one count for
  every width, where scorelab keeps 4 channels a group), which comes within 1% of scorelab's parameter count (the
  table gives both). It is trained on the same training split in the same model units ([-1, 1]) with
  ``DDPMScheduler``'s ``add_noise`` on DDPM's linear β schedule (the run's own where scorelab's default is DDPM; on
  MNIST, whose default is flow matching, the peer keeps its standard recipe), the ε-prediction loss E‖ε̂(√ᾱ_t·x + √(1
  − ᾱ_t)·ε, t) − ε‖², the same batch size, Adam at the same learning rate with cosine decay over the wall-time budget,
  lr·½(1 + cos(π·elapsed/budget)), and scorelab's EMA, decay min(d, (1 + t)/(10 + t)), until its training has taken as
  long as scorelab's. It is sampled with ``DDIMScheduler`` (η = 0, the library's default spacing and clipping) at the
  same number of network evaluations per sample as scorelab's sampler used, in batches of scorelab's sample batch
  size, timed.

Both sample sets go back to data units through the run's normalisation (clamped to [-1, 1] first, as scorelab's
image modality does) and are scored by the same call, :func:`scorelab.evaluation.images.evaluate_images` with the
scorelab run: the Fréchet distance in the run's classifier features over the floor of training draws, precision
and recall. Reported per library: parameters, training minutes and steps, steps per second, the sampler with its
network evaluations (counted: calls of the network per batch), samples per second, FD ratio and
precision/recall. Writes the ``peer_images`` section of BENCHMARKS.md.

``--quick`` is a smoke test: scorelab trains 5 steps (into ``peer_<data>_scorelab_quick``), diffusers for as long,
64 samples at 5 sampler steps; the table is printed and BENCHMARKS.md is left alone.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from report import (  # benchmarks/report.py, beside this script
    RUNS,
    markdown_table,
    write_section,
)
from torch import Tensor, nn

import scorelab as sl
from scorelab.evaluation.images import evaluate_images, image_set_of
from scorelab.runs.trained import TrainedRun

SEED = 1  # of the samples (both libraries) and of the peer's minibatches and noise
INIT_SEED = 0  # of the peer's initial weights (scorelab's run seeds its own: config.seed)
QUICK_STEPS, QUICK_N, QUICK_SAMPLE_STEPS = 5, 64, 5


def require_diffusers():
    """The diffusers module; a one-line exit where it is not installed (it is no dependency of scorelab)."""
    try:
        import diffusers
    except ImportError:
        raise SystemExit("benchmarks/peer_images.py needs diffusers, which scorelab does not depend on: "
                         "pip install diffusers") from None
    return diffusers


def fix_threads(threads: int) -> None:
    """Run both libraries on ``threads`` intra-op threads: a fair comparison needs the same cores for both, so
    scorelab's own choice of threads (where this scorelab makes one) is turned off too."""
    torch.set_num_threads(threads)
    try:
        from scorelab.core.threads import set_threads
    except ImportError:  # a scorelab that leaves the thread count to torch
        return
    set_threads(threads)


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@contextlib.contextmanager
def calls_to(model: nn.Module) -> Iterator[list[int]]:
    """Counts the calls of ``model`` while the block runs. Over the batches drawn that is the network evaluations
    per sample; rows would overcount, as scorelab pads a batch to a multiple of 16 rows so that a sample does not
    depend on its batch (:func:`scorelab.core.score.batch_invariant`)."""
    count = [0]

    def hook(_module: nn.Module, _args: tuple) -> None:
        count[0] += 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


def batches(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


# scorelab ------------------------------------------------------------------------------------------------------


def train_log_seconds(run_dir: Path) -> float:
    """The training seconds of a run trained earlier: the last row of its ``train_log.csv``."""
    with (run_dir / "train_log.csv").open() as handle:
        return float(list(csv.DictReader(handle))[-1]["seconds"])


def scorelab_run(runs: Path, dataset: str, quick: bool) -> tuple[TrainedRun, float, int, bool]:
    """The data set's default run, its training seconds and steps, and whether it was trained by this call."""
    run_dir = runs / f"peer_{dataset}_scorelab{'_quick' if quick else ''}"
    if (run_dir / "model.safetensors").exists():
        run = TrainedRun.load(run_dir, "cpu")
        return run, train_log_seconds(run_dir), run.step, False
    config = sl.Config(dataset=dataset, steps=QUICK_STEPS) if quick else sl.Config(dataset=dataset)
    result = sl.train(config, run_dir, progress=False, overwrite=True)
    return TrainedRun.load(run_dir, "cpu"), result.seconds, result.steps, True


def scorelab_samples(run: TrainedRun, n: int, sample_steps: int | None) -> tuple[Tensor, float, int]:
    """``n`` samples of the run's default sampler (seed 1) in data units, the seconds they took and the network
    evaluations per sample."""
    options = {} if sample_steps is None else {"sample_steps": sample_steps}
    with calls_to(run.model) as calls:
        begin = time.perf_counter()
        samples = torch.cat(list(run.sample_batches(n, seed=SEED, **options)))
        seconds = time.perf_counter() - begin
    return samples, seconds, calls[0] // batches(n, run.sample_batch_size)


# diffusers ------------------------------------------------------------------------------------------------------


def peer_settings(run: TrainedRun) -> dict:
    """``UNet2DModel``'s arguments for the architecture of the run's U-Net (see the module docstring)."""
    unet = run.config.model.settings
    channels, height, width = run.shape
    if height % 2 ** (unet.levels - 1) or width % 2 ** (unet.levels - 1):
        raise SystemExit(f"{height}×{width} images do not halve {unet.levels - 1} times for UNet2DModel")
    widths = tuple(unet.channels * 2**level for level in range(unet.levels))
    return {"sample_size": (height, width), "in_channels": channels, "out_channels": channels,
            "block_out_channels": widths, "layers_per_block": unet.res_blocks,
            "down_block_types": ("DownBlock2D",) * unet.levels, "up_block_types": ("UpBlock2D",) * unet.levels,
            "add_attention": unet.attention, "attention_head_dim": widths[-1],  # scorelab's one head
            "resnet_time_scale_shift": "scale_shift", "norm_num_groups": 4, "dropout": unet.dropout,
            # A class-conditional run's peer is class-conditional too: a learned class embedding added to the
            # noise embedding, as scorelab's.
            "num_class_embeds": run.classes or None}


DDPM_STEPS = 1000  # Ho et al. 2020's T, diffusers' default


def beta_schedule(run: TrainedRun) -> dict:
    """The schedulers' arguments: DDPM's linear β from 1e-4 to 0.02 over T steps, which is scorelab's ``vp``
    process with its default ``linear`` schedule; T is the run's where it is that process, and DDPM's 1000
    where scorelab's default is another family (MNIST's flow matching): the peer keeps its own standard recipe."""
    process = run.config.process
    same = process.name == "vp" and process.settings.schedule == "linear" and not process.settings.continuous
    return {"num_train_timesteps": process.settings.timesteps if same else DDPM_STEPS, "beta_start": 1e-4,
            "beta_end": 0.02, "beta_schedule": "linear"}


def update_ema(ema: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """scorelab's EMA: averaged ← averaged + (1 − d_t)·(current − averaged), d_t = min(decay, (1 + t)/(10 + t))."""
    rate = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for averaged, current in zip(ema.parameters(), model.parameters()):
            averaged.lerp_(current, rate)


def train_peer(run: TrainedRun, budget: float) -> tuple[nn.Module, int, int, float]:
    """A ``UNet2DModel`` trained for ``budget`` seconds as the module docstring says: its EMA weights, its
    parameter count, its steps and the seconds they took."""
    diffusers = require_diffusers()
    torch.manual_seed(INIT_SEED)  # diffusers initialises its layers from the global generator
    unet = diffusers.UNet2DModel(**peer_settings(run))
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = diffusers.DDPMScheduler(**beta_schedule(run))
    optim = run.config.optim
    optimizer = torch.optim.Adam(unet.parameters(), lr=optim.lr)
    image_set = image_set_of(run)
    data = run.normalisation.to_model(image_set.train)
    labels = image_set.train_labels if run.classes else None
    generator = torch.Generator().manual_seed(SEED)
    timesteps = scheduler.config.num_train_timesteps
    unet.train()
    step, begin = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - begin) < budget:
        step += 1
        # Minibatches drawn with replacement, as scorelab draws them.
        rows = torch.randint(len(data), (optim.batch_size,), generator=generator)
        x = data[rows]
        noise = torch.randn(x.shape, generator=generator)
        t = torch.randint(timesteps, (len(x),), generator=generator)
        predicted = unet(scheduler.add_noise(x, noise, t), t, class_labels=None if labels is None else labels[rows])
        loss = nn.functional.mse_loss(predicted.sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Cosine decay over the wall-time budget: the peer's step count is not known in advance.
        for group in optimizer.param_groups:
            group["lr"] = optim.lr * 0.5 * (1.0 + math.cos(math.pi * elapsed / budget))
        optimizer.step()
        update_ema(ema, unet, optim.ema_decay, step)
        if not math.isfinite(loss.item()):
            raise SystemExit(f"the diffusers U-Net diverged at step {step}")
    return ema.eval(), parameters(unet), step, time.perf_counter() - begin


def peer_samples(run: TrainedRun, unet: nn.Module, n: int, evaluations: int) -> tuple[Tensor, float, int]:
    """``n`` DDIM samples (η = 0) of ``unet`` at ``evaluations`` steps in batches of the run's sample batch size,
    in the run's data units; the seconds they took and the network evaluations per sample."""
    diffusers = require_diffusers()
    scheduler = diffusers.DDIMScheduler(**beta_schedule(run))
    scheduler.set_timesteps(evaluations)
    generator = torch.Generator().manual_seed(SEED)
    drawn = []
    with calls_to(unet) as calls, torch.inference_mode():
        begin = time.perf_counter()
        for first in range(0, n, run.sample_batch_size):
            count = min(run.sample_batch_size, n - first)
            x = torch.randn((count, *run.shape), generator=generator)
            x = x * scheduler.init_noise_sigma
            # A class-conditional run's classes in turn, as scorelab samples them (sample i of class i mod K).
            labels = run.classes_in_turn(first, count) if run.classes else None
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t, class_labels=labels).sample, t, x, generator=generator).prev_sample
            drawn.append(x)
        seconds = time.perf_counter() - begin
    nfe = calls[0] // batches(n, run.sample_batch_size)
    return run.normalisation.to_data(torch.cat(drawn).clamp(-1.0, 1.0)), seconds, nfe


# the comparison -------------------------------------------------------------------------------------------------


def sampler_label(name: str, settings) -> str:
    steps = getattr(settings, "sample_steps", None)
    return name if steps is None else f"{name} {steps} steps"


def measured(library: str, dataset: str, run: TrainedRun, count: int, seconds: float, steps: int, sampler: str,
             samples: Tensor, sample_seconds: float, nfe: int) -> dict:
    """One library's numbers on one data set, its samples scored by the scorelab run's features."""
    quality = evaluate_images(run, n=len(samples), samples=samples, bits=False)
    return {"library": library, "data": dataset, "parameters": count, "seconds": seconds, "steps": steps,
            "sampler": sampler, "nfe": nfe, "samples_per_s": len(samples) / sample_seconds,
            "fd_ratio": quality["fd"]["ratio"], "precision": quality["precision"]["model"],
            "recall": quality["recall"]["model"]}


def table_row(m: dict) -> list:
    return [m["library"], m["data"], f"{m['parameters']:,}", f"{m['seconds'] / 60:.1f}", m["steps"],
            f"{m['steps'] / m['seconds']:.1f}", f"{m['sampler']} ({m['nfe']})", f"{m['samples_per_s']:.1f}",
            f"**{m['fd_ratio']:.2f}**", f"{m['precision']:.2f} / {m['recall']:.2f}"]


def verdict(ours: dict, peer: dict) -> str:
    """Where scorelab stands against the peer on the target's three measures (FD ratio: lower is better)."""
    ahead = {"steps/s": ours["steps"] / ours["seconds"] > peer["steps"] / peer["seconds"],
             "samples/s": ours["samples_per_s"] > peer["samples_per_s"],
             "FD ratio": ours["fd_ratio"] < peer["fd_ratio"]}
    behind = [name for name, won in ahead.items() if not won]
    return (f"{ours['data']}: scorelab ahead on all three" if not behind
            else f"{ours['data']}: scorelab not ahead on {', '.join(behind)}")


def compare(runs: Path, dataset: str, n: int, quick: bool) -> tuple[dict, dict, bool]:
    run, seconds, steps, trained_now = scorelab_run(runs, dataset, quick)
    samples, sample_seconds, nfe = scorelab_samples(run, n, QUICK_SAMPLE_STEPS if quick else None)
    name, settings = run.sampler_settings(None, **({"sample_steps": QUICK_SAMPLE_STEPS} if quick else {}))
    ours = measured("scorelab", dataset, run, parameters(run.model), seconds, steps,
                    sampler_label(name, settings), samples, sample_seconds, nfe)
    print(f"{dataset}: scorelab {ours['parameters']:,} parameters, {steps} steps in {seconds:.1f} s", flush=True)
    unet, count, peer_steps, peer_seconds = train_peer(run, seconds)
    print(f"{dataset}: diffusers {count:,} parameters, {peer_steps} steps in {peer_seconds:.1f} s", flush=True)
    peer_images, peer_sample_seconds, peer_nfe = peer_samples(run, unet, n, nfe)
    peer = measured("diffusers", dataset, run, count, peer_seconds, peer_steps, f"ddim {nfe} steps", peer_images,
                    peer_sample_seconds, peer_nfe)
    return ours, peer, trained_now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=RUNS,
                        help="run directories (reused; default: $SCORELAB_BENCH_RUNS)")
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist5k"])
    parser.add_argument("--n", type=int, default=1000, help="samples per library and data set")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads, the same for both libraries")
    parser.add_argument("--quick", action="store_true", help="smoke test: a few steps, 64 samples; nothing written")
    args = parser.parse_args()
    diffusers = require_diffusers()  # before any training: fail at once where it is missing
    fix_threads(args.threads)
    n = QUICK_N if args.quick else args.n
    rows, verdicts, reused = [], [], []
    for dataset in args.datasets:
        ours, peer, trained_now = compare(args.runs, dataset, n, args.quick)
        rows += [table_row(ours), table_row(peer)]
        verdicts.append(verdict(ours, peer))
        if not trained_now:
            reused.append(dataset)
        print(rows[-2], rows[-1], verdicts[-1], sep="\n", flush=True)
    table = markdown_table(["library", "data", "parameters", "train min", "steps", "steps/s", "sampler (NFE)",
                            "samples/s", "FD ratio", "precision / recall"], rows)
    reuse = (f" scorelab's runs for {', '.join(reused)} were reused from `--runs`, their seconds read from their "
             "training logs." if reused else "")
    text = (
        f"`python benchmarks/peer_images.py --datasets {' '.join(args.datasets)}`, on {args.threads} CPU "
        f"thread{'s' if args.threads > 1 else ''} for both libraries: scorelab's default run of each data set "
        f"against diffusers {diffusers.__version__} "
        f"(torch {torch.__version__}; installed for this benchmark only, not a scorelab dependency), a "
        "`UNet2DModel` of scorelab's U-Net's widths, levels, blocks, middle attention and scale-shift noise "
        "conditioning (and a class embedding where scorelab's run is class-conditional), trained with "
        "`DDPMScheduler` (ε-prediction on DDPM's linear β schedule, scorelab's own where its default is DDPM) on "
        "the same "
        "training split, batch size, Adam learning rate with cosine decay and EMA for the same wall time as "
        "scorelab's training took, and sampled with `DDIMScheduler` (η = 0) at the same network evaluations per "
        f"sample as scorelab's default sampler, in batches of the same size. {n} samples each (seed 1), both "
        "scored by `evaluate_images` of the scorelab run: FD ratio in its classifier's features against the test "
        f"split over the floor of training draws, precision and recall (k = 3).{reuse}")
    body = "\n".join([
        text,
        "",
        table,
        "",
        "; ".join(verdicts) + ".",
    ])
    if args.quick:
        print(body)
    else:
        write_section("peer_images", "Peer: scorelab against diffusers' UNet2DModel at the same size and wall time",
                      body)


if __name__ == "__main__":
    main()
