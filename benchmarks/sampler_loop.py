"""The sampler loop's cost against the network's, and sampling throughput, on trained runs.

    python benchmarks/sampler_loop.py [--runs DIR] [--batch 5000] [--repeats 5]
    python benchmarks/sampler_loop.py --images RUNS --batch 256 --repeats 3
    python benchmarks/sampler_loop.py --waveform RUN [--seconds 3] --repeats 3

For the trained default runs of ``sampler_table.py`` (swiss_roll; NCSN and DDPM) and each
sampler: the time spent inside the network's calls during a sampling call (the same network on
the same batches the sampler feeds it; the cost of a forward pass depends on its inputs, the
Fourier features' sines of large numbers costing more) and the whole call's time, medians over
the repetitions. Their ratio is the loop's overhead: 1.0 means the sampler costs exactly its
network evaluations. The last column is the throughput, samples per second. Writes the ``sampler_loop`` section of
BENCHMARKS.md (``sampler_loop_images`` for the digits U-Nets of ``images.py``).

With ``--waveform``, a WaveGrad run vocodes one harmonic tone of ``--seconds`` from its log-mel
spectrogram (batch 1, as ``scorelab sample`` vocodes an utterance) with the ``wavegrad`` sampler at
6, 25 and 50 steps; throughput is seconds of audio per second. A network's cost depends on its
shapes, not on its weights' values, so any run of the default WaveGrad model serves. Writes
``sampler_loop_waveform``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from report import markdown_table, write_section  # benchmarks/report.py, beside this script

from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import parameter_count
from scorelab.sampling import SAMPLERS

# Each sampler at about 50 evaluations (WaveGrad: its three searched lengths), and each family's default.
# The chain alone, from the prior draw: a start from Griffin-Lim's waveform adds Griffin-Lim's time, not the loop's.
WAVEFORM_SETTINGS = {"wavegrad": {"sample_steps": 6, "start": "noise"},
                     "wavegrad 25": {"sample_steps": 25, "start": "noise"},
                     "wavegrad 50": {"sample_steps": 50, "start": "noise"}}
SETTINGS = {"ald": {"sample_steps": 49, "n_steps_each": 1}, "pc": {"sample_steps": 25},
            "ddpm": {"sample_steps": 50}, "ddim": {"sample_steps": 50}, "ode": {"sample_steps": 25},
            "heun": {"sample_steps": 25}, "stochastic_heun": {"sample_steps": 25},
            "dpmpp_2m": {"sample_steps": 50}}


def synchronizer(device: torch.device):
    """What waits for the device's queued work, so that a clock reads the work's end (nothing on a CPU)."""
    return torch.cuda.synchronize if device.type == "cuda" else lambda: None


class TimedScore:
    """The model, timed: the wall seconds spent inside its calls, and their number."""

    def __init__(self, model, synchronize) -> None:
        self.model, self.synchronize, self.seconds, self.count = model, synchronize, 0.0, 0

    def __call__(self, x, sigma, cond=None):
        self.synchronize()
        begin = time.perf_counter()
        out = self.model(x, sigma, cond)
        self.synchronize()
        self.seconds += time.perf_counter() - begin
        self.count += 1
        return out


def rows_for(run: TrainedRun, family: str, start: torch.Tensor, cond, cases: dict, amount: float,
             repeats: int) -> list[list]:
    """A row per case (label: sampler options) from ``start`` with ``cond``; throughput is ``amount`` per second."""
    rows, synchronize = [], synchronizer(run.device)
    for label, options in cases.items():
        name = label.split()[0]
        _, settings = run.sampler_settings(name, **options)
        part = SAMPLERS[name]
        measured = []  # (whole call, time in the network, evaluations)
        for _ in range(repeats + 1):  # the first is a warm-up: allocator and thread pool
            timed = TimedScore(run.model, synchronize)
            synchronize()
            begin = time.perf_counter()
            with torch.inference_mode():  # as TrainedRun.sample
                part.sample(timed, run.process, settings, start, torch.Generator().manual_seed(1), None, cond)
            synchronize()
            measured.append((time.perf_counter() - begin, timed.seconds, timed.count))
        whole = statistics.median(m[0] for m in measured[1:])
        network = statistics.median(m[1] for m in measured[1:])
        evaluations = measured[-1][2]
        throughput = amount / whole
        rows.append([family, label, evaluations, f"{network / evaluations * 1e3:.2f}",
                     f"{whole / evaluations * 1e3:.2f}", f"**{whole / network:.3f}**",
                     f"{throughput:,.0f}" if throughput > 100 else f"{throughput:.2f}"])
        print(rows[-1], flush=True)
    return rows


def point_or_image_rows(run: TrainedRun, family: str, batch: int, repeats: int) -> list[list]:
    start = run.process.prior((batch, *run.shape), generator=torch.Generator().manual_seed(0), device=run.device)
    cases = {**SETTINGS, f"{run.config.sampler.name} (default)": {}}
    return rows_for(run, family, start, None, cases, batch, repeats)


def waveform_rows(run: TrainedRun, seconds: float, repeats: int) -> list[list]:
    from scorelab.data.audio import tone
    from scorelab.data.mel import log_mel
    from scorelab.evaluation.vocoding import MEL, whole_frames

    wave = whole_frames(tone(torch.Generator().manual_seed(0), seconds))
    start = run.process.prior((1, 1, len(wave)), generator=torch.Generator().manual_seed(0), device=run.device)
    mel = log_mel(wave)[None].to(run.device)
    return rows_for(run, "wavegrad", start, mel, WAVEFORM_SETTINGS, len(wave) / MEL.sample_rate, repeats)


HEADER = ["run", "sampler", "NFE", "forward ms", "ms / NFE", "overhead"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/tmp/sampler_table_runs"))
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    inputs = parser.add_mutually_exclusive_group()
    inputs.add_argument("--images", type=Path, metavar="RUNS",
                        help="instead: the digits U-Net runs of images.py in RUNS (digits_ncsn, digits_ddpm)")
    inputs.add_argument("--waveform", type=Path, metavar="RUN", help="instead: a WaveGrad run, vocoding one tone")
    parser.add_argument("--seconds", type=float, default=3.0, help="with --waveform: the tone's length")
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:N]; a GPU's rows go to sections named *_cuda")
    args = parser.parse_args()
    torch.set_num_threads(2)
    on = "CPU" if args.device == "cpu" else torch.cuda.get_device_name(torch.device(args.device))
    suffix = "" if args.device == "cpu" else "_cuda"
    timing = ("medians over {repeats} calls after one warm-up. `forward ms`: the time inside the run's network "
              "({network}, under `torch.inference_mode` as in `TrainedRun.sample`) per evaluation, measured during "
              "the sampling call; `ms / NFE`: the whole call per evaluation; their ratio is the loop's overhead "
              "(target ≤ 1.10). Throughput counts the whole call.\n\n")
    if args.waveform:
        run = TrainedRun.load(args.waveform, args.device)
        rows = waveform_rows(run, args.seconds, args.repeats)
        body = (f"One {args.seconds:g}-second tone vocoded from its log-mel spectrogram (batch 1) on {on} by "
                f"`{args.waveform.name}` ({parameter_count(run.model):,} weights, width "
                f"{run.config.model.width:g}), "
                + timing.format(repeats=args.repeats, network="`wavegrad`")
                + markdown_table([*HEADER, "audio s / s"], rows))
        write_section("sampler_loop_waveform" + suffix, f"Sampler loop overhead and throughput (WaveGrad, {on})", body)
        return
    rows = []
    for family in ("ncsn", "ddpm"):
        run_dir = args.images / f"digits_{family}" if args.images else args.runs / f"{family}-swiss_roll"
        rows += point_or_image_rows(TrainedRun.load(run_dir, args.device), family, args.batch, args.repeats)
    network = "`unet` on digits" if args.images else "the NCSN's `noise_conditional` MLP and the DDPM's `ddpm` MLP"
    body = (f"Batch {args.batch} on {on}, " + timing.format(repeats=args.repeats, network=network)
            + markdown_table([*HEADER, "samples / s"], rows))
    if args.images:
        write_section("sampler_loop_images" + suffix, f"Sampler loop overhead and throughput (digits U-Net, {on})",
                      body)
    else:
        write_section("sampler_loop" + suffix, f"Sampler loop overhead and throughput (2-D, {on})", body)


if __name__ == "__main__":
    main()
