"""What each model achieves of this machine's peak: FLOPs per training step and per sampler evaluation, timed.

    python benchmarks/flops.py [--models mlp digits mnist5k wavegrad] [--repeats 5]

The peak is measured in the same run: a 2048² fp32 matrix product, and a 3×3 convolution at the
U-Net's busiest shapes (16 channels in and out on 28×28 and on 8×8). For each model (the 2-D default's
MLP on moons, the digits and mnist5k U-Nets, WaveGrad on speech segments), built from its data set's
default config:

- training: one step of the loop as ``scorelab train`` runs it (its objective's loss on a minibatch of
  the default size, backward, Adam), on random data of the right shape;
- sampling: one network evaluation under ``torch.inference_mode`` on the batch the sampler feeds it
  (256 images, 5000 points; WaveGrad: one 3 s utterance, as ``scorelab vocode`` does).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and
attention; element-wise work such as GroupNorm and SiLU counts for none), so the achieved rate is
FLOPs / median seconds. Variants, where they apply: ``eager`` (the network as built, NCHW), ``channels_last``
(the U-Nets' memory format), ``no attention`` (the U-Net without its self-attention), ``batch 64`` and
``batch 1024`` (the evaluation at another batch size), ``compile`` (``torch.compile``, inductor's C++ backend;
its one-time cost in its own column), and for training ``foreach`` and ``fused`` Adam. Writes the ``flops`` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from report import (  # benchmarks/report.py, beside this script
    markdown_table,
    median_seconds,
    write_section,
)
from torch.utils.flop_counter import FlopCounterMode

import scorelab as sl
from scorelab.data.audio import HOP
from scorelab.data.mel import log_mel
from scorelab.models import build_model
from scorelab.objectives import OBJECTIVES, LossContext
from scorelab.runs.config import build_process

MODELS = {"mlp": "moons", "digits": "digits", "mnist5k": "mnist5k", "wavegrad": "speech"}
SHAPES = {"digits": (1, 8, 8), "mnist5k": (1, 28, 28)}
SAMPLE_BATCH = {"mlp": 5000, "digits": 256, "mnist5k": 256, "wavegrad": 1}
UTTERANCE_SECONDS = 3.0


def counted_flops(work: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def peak_rows(repeats: int) -> list[list]:
    """The machine's reference rates: a large matrix product and the U-Net's 3×3 convolutions."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(2048, 2048, generator=generator), torch.randn(2048, 2048, generator=generator)
    rows = [["matrix product 2048² fp32", 2 * 2048**3, median_seconds(lambda: a @ b, max(repeats, 10), warmups=2)]]
    for batch, size in ((64, 28), (256, 8)):
        conv = torch.nn.Conv2d(16, 16, 3, padding=1)
        x = torch.randn(batch, 16, size, size, generator=generator)
        def convolve(conv=conv, x=x) -> None:
            with torch.inference_mode():
                conv(x)

        rows.append([f"conv 3×3, 16→16 ch, {batch}×{size}×{size}", counted_flops(convolve),
                     median_seconds(convolve, repeats, warmups=2)])
    return rows


@dataclass
class Subject:
    """A model built from its data set's default config, with random inputs of its shapes."""

    name: str
    config: sl.Config
    model: torch.nn.Module
    train_batch: torch.Tensor
    sample_batch: torch.Tensor

    @property
    def images(self) -> bool:
        return self.train_batch.ndim == 4


def subject(name: str, **changes) -> Subject:
    config = sl.Config(dataset=MODELS[name], **changes)
    generator = torch.Generator().manual_seed(0)
    if name == "wavegrad":
        shape = (1, config.data.segment_frames * HOP)
        sample_shape = (1, round(UTTERANCE_SECONDS * 22050 / HOP) * HOP)
    else:
        shape = sample_shape = SHAPES.get(name, (2,))
    model = build_model(config.model.name, config.model.settings, shape=shape, process=build_process(config),
                        sigma_data=0.5, seed=0)
    return Subject(name, config, model, torch.randn(config.optim.batch_size, *shape, generator=generator),
                   torch.randn(SAMPLE_BATCH[name], *sample_shape, generator=generator))


def condition(s: Subject, x: torch.Tensor):
    return log_mel(x[:, 0]) if s.name == "wavegrad" else None


def training_step(s: Subject, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                  batch: torch.Tensor) -> Callable[[], None]:
    objective = OBJECTIVES[s.config.objective.name]
    process = build_process(s.config)
    cond = condition(s, batch)
    generator = torch.Generator().manual_seed(1)

    def step() -> None:
        loss = objective.loss(model, batch, cond, process, s.config.objective.settings, generator,
                              LossContext(1, s.config.optim.steps, None))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def evaluation(model: torch.nn.Module, s: Subject, batch: torch.Tensor) -> Callable[[], None]:
    sigma = torch.full((len(batch),), 0.5)
    cond = condition(s, batch)

    def evaluate() -> None:
        with torch.inference_mode():
            model(batch, sigma, cond)

    return evaluate


# Variants that change only the evaluation's batch, and those that time training alone.
BATCH_VARIANTS = {"batch 64": 64, "batch 1024": 1024}
ADAM_VARIANTS = {"foreach Adam": {"foreach": True}, "fused Adam": {"fused": True}}


def variants(s: Subject) -> list[str]:
    image_variants = ["channels_last", "no attention", *BATCH_VARIANTS] if s.images else []
    return ["eager", *image_variants, "compile", *ADAM_VARIANTS]


def measure(s: Subject, variant: str, repeats: int) -> dict:
    """FLOPs, median seconds and the one-time cost of a training step and of an evaluation in ``variant``."""
    if variant == "no attention":
        s = subject(s.name, attention=False)
    model = s.model
    train_batch, sample_batch = s.train_batch, s.sample_batch
    if variant in BATCH_VARIANTS:
        sample_batch = torch.randn(BATCH_VARIANTS[variant], *sample_batch.shape[1:],
                                   generator=torch.Generator().manual_seed(0))
    if variant == "channels_last":
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)  # Module.to works in place
        train_batch = train_batch.contiguous(memory_format=torch.channels_last)
        sample_batch = sample_batch.contiguous(memory_format=torch.channels_last)
    adam = ADAM_VARIANTS.get(variant, {"foreach": False})
    optimizer = torch.optim.Adam(s.model.parameters(), lr=1e-4, **adam)
    step = training_step(s, model, optimizer, train_batch)
    evaluate = evaluation(model, s, sample_batch)
    step()  # a first step does one-time work (e.g. the objective's lazily built tables) that is not counted
    result = {"train_flops": counted_flops(step), "eval_flops": counted_flops(evaluate), "compile_s": None}
    if variant == "compile":
        compiled = torch.compile(model)
        begin = time.perf_counter()
        training_step(s, compiled, optimizer, train_batch)()
        evaluation(compiled, s, sample_batch)()
        result["compile_s"] = time.perf_counter() - begin
        step, evaluate = training_step(s, compiled, optimizer, train_batch), evaluation(compiled, s, sample_batch)
    result["eval_s"] = None if variant in ADAM_VARIANTS else median_seconds(evaluate, repeats, warmups=2)
    result["train_s"] = None if variant in BATCH_VARIANTS else median_seconds(step, repeats, warmups=2)
    return result


def rate(flops: float, seconds: float | None) -> float | None:
    return None if seconds is None else flops / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print the tables; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    torch.manual_seed(0)
    peaks = peak_rows(args.repeats)
    peak = peaks[0][1] / peaks[0][2]
    peak_table = markdown_table(["reference", "GFLOP", "ms", "GFLOP/s", "of the matrix product's"],
                                [[name, f"{flops / 1e9:.2f}", f"{seconds * 1e3:.1f}", f"{flops / seconds / 1e9:.1f}",
                                  f"{flops / seconds / peak:.0%}"] for name, flops, seconds in peaks])
    rows = []
    for name in args.models:
        s = subject(name)
        parameters = sum(p.numel() for p in s.model.parameters())
        for variant in variants(s):
            r = measure(s, variant, args.repeats)
            for what, flops, seconds, batch in (("train step", r["train_flops"], r["train_s"], len(s.train_batch)),
                                                ("evaluation", r["eval_flops"], r["eval_s"], len(s.sample_batch))):
                achieved = rate(flops, seconds)
                if achieved is None:
                    continue
                batch = len(s.train_batch) if what == "train step" else BATCH_VARIANTS.get(variant, batch)
                rows.append([name, f"{parameters:,}", what, batch, variant, f"{flops / 1e9:.3f}",
                             f"{seconds * 1e3:.1f}", f"{achieved / 1e9:.1f}", f"**{achieved / peak:.0%}**",
                             "" if r["compile_s"] is None else f"{r['compile_s']:.0f}"])
            print(rows[-1], flush=True)
    table = markdown_table(["model", "parameters", "what", "batch", "variant", "GFLOP", "ms (median)", "GFLOP/s",
                            "of peak", "compile s"], rows)
    body = (f"`python benchmarks/flops.py`: FLOPs counted by `FlopCounterMode` (matrix products, convolutions, "
            f"attention), seconds the median of {args.repeats} after a warm-up, with nothing else running. "
            f"Peak: the matrix product's rate, measured in the same run.\n\n{peak_table}\n\n{table}")
    if args.no_write:
        print(body)
    else:
        write_section("flops", "FLOPs: what each model achieves of the machine's peak", body)


if __name__ == "__main__":
    main()
