"""WaveGrad on speech measured against Griffin-Lim: what makes it speak, and the default run in full.

    python benchmarks/audio.py [--runs DIR] [--n 4] [--n-long 1] [--repeats 3]

Trains each run of :data:`RUNS_TRAINED` (``scorelab train --dataset speech`` with its flags, reused from
``--runs`` when it is there, its training seconds read from its ``train_log.csv``; training ends with the
schedule search). Then, on the first ``--n`` test utterances (sentences never heard in training):

- **the ablation table**: each :data:`VARIANTS` row, a run vocoded by WaveGrad in 6 steps from its start,
  against the reference itself, Griffin-Lim-32 from the same mel, and a control (Griffin-Lim-32 plus faint
  white noise), scored by :func:`scorelab.evaluation.audio.evaluate_audio`: log-mel L1, multi-resolution STFT
  distance, DNSMOS P.835 overall and the real-time factor on this machine's threads;
- **the default run in full**: WaveGrad at 6, 25 and 50 steps, Griffin-Lim at 32 and 100 iterations and the
  1000-step chain (on the first ``--n-long`` utterances only, timed once: it costs 1000/6 times the
  evaluations);
- **the issue's targets**, met or missed, for the default run.

Every other method is timed ``--repeats`` times; the real-time factor quoted is the median. Writes the ``audio``
section of BENCHMARKS.md and ``docs/images/speech_spectrograms.png`` (the first test utterance: reference,
the default run's reconstructions and Griffin-Lim, each titled with its log-mel L1 and DNSMOS).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import torch
from report import (  # benchmarks/report.py, beside this script
    RUNS,
    markdown_table,
    write_section,
)

from scorelab.app.cli import main as main_cli
from scorelab.data.audio import SAMPLE_RATE, speech_set
from scorelab.evaluation import schedule_search
from scorelab.evaluation.audio import (
    distances,
    evaluate_audio,
    format_real_time_factor,
    test_utterances,
)
from scorelab.evaluation.schedule_search import saved_record
from scorelab.evaluation.vocoding import griffin_lim_vocode
from scorelab.metrics.speech_quality import dnsmos
from scorelab.plots.audio import example_scores, listening_examples, plot_spectrograms
from scorelab.runs.checkpoint import save_config
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import parameter_count

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
SHORT_STEPS, LONG_STEPS, GRIFFIN_LIM = (6, 25, 50), (1000,), (32, 100)
TRAINING_BUDGET_MINUTES, REAL_TIME, EVALUATIONS, L1_FACTOR = 30.0, 1.0, 6, 1.5
DITHER = 3e-4  # the control row's white noise, in the waveform's units

# The runs, by name: the flags of `scorelab train --dataset speech` (the default run: none), the others stated in full
# so that a row keeps its meaning when the defaults change. Training does not read the sampler's start, so a run that
# differs from another only in it shares that run's weights (copied) and is searched again for its own start.
DEFAULT_RUN = "default"
RUNS_TRAINED = {
    DEFAULT_RUN: [],
    "white": ["--prior", "white", "--start", "noise"],
    "white_gl": ["--prior", "white", "--start", "griffin_lim"],
    "spectral": ["--prior", "spectral", "--prior-floor", "0.001", "--start", "noise"],
}
SAME_WEIGHTS = {"white_gl": "white", "spectral": DEFAULT_RUN}
VARIANTS = (
    ("WaveGrad as it was: white noise, from noise", "white"),
    ("from Griffin-Lim's waveform (shallow diffusion)", "white_gl"),
    ("SpecGrad's spectral prior (floor 0.001), from noise", "spectral"),
    ("SpecGrad's spectral prior and from Griffin-Lim's waveform: the default", DEFAULT_RUN),
)


def train_seconds(run_dir: Path) -> float:
    with (run_dir / "train_log.csv").open() as handle:
        return float(list(csv.DictReader(handle))[-1]["seconds"])


def trained(runs: Path, name: str) -> TrainedRun:
    """The run ``name`` of :data:`RUNS_TRAINED`: trained (then searched) unless it is there, or its sibling's weights
    with its own start, searched again."""
    run_dir, flags = runs / name, RUNS_TRAINED[name]
    if not (run_dir / "model.safetensors").exists():
        sibling = SAME_WEIGHTS.get(name)
        if sibling is not None:
            trained(runs, sibling)
            shutil.copytree(runs / sibling, run_dir)
            start = flags[flags.index("--start") + 1]
            save_config(run_dir, TrainedRun.load(run_dir, "cpu").config.replace(start=start))
            schedule_search.prepare(run_dir)
        elif main_cli(["train", "--dataset", "speech", "--out", str(run_dir), "--no-progress", "--overwrite", *flags]):
            raise SystemExit("training failed")
    return TrainedRun.load(run_dir, "cpu")


def _cells(row: dict) -> list[str]:
    return [f"{row['log_mel_l1']:.3f}", f"{row['mr_stft']:.3f}", f"{row['dnsmos']:.2f}", format_real_time_factor(row)]


def ablation(runs: dict[str, TrainedRun], minutes: dict[str, float], n: int, repeats: int) -> list[list[str]]:
    """The ablation table's rows: the reference, Griffin-Lim-32 and the control (Griffin-Lim-32 plus faint white
    noise), then each of :data:`VARIANTS` vocoded by WaveGrad in 6 steps from its run's start."""
    rows = []
    for change, name in VARIANTS:
        report = evaluate_audio(runs[name], n=n, wavegrad_steps=(EVALUATIONS,), griffin_lim=() if rows else (32,),
                                timing_repeats=repeats)
        by_kind = {row["kind"]: row for row in report["rows"]}
        if not rows:
            rows += [["the reference itself", "—", *_cells(by_kind["reference"])],
                     ["Griffin-Lim-32 from the same mel", "—", *_cells(by_kind["griffin_lim"])],
                     [f"control: Griffin-Lim-32 plus white noise of amplitude {DITHER:g}", "—",
                      *_cells(dithered_griffin_lim(runs[name], n))]]
        rows.append([change, f"{minutes[name]:.1f}", *_cells(by_kind["wavegrad"])])
    return rows


def dithered_griffin_lim(run: TrainedRun, n: int) -> dict:
    """Griffin-Lim-32's reconstructions of the first ``n`` test utterances plus white noise of amplitude
    :data:`DITHER` (seeded), scored as a row: what a faint noise floor alone does to the measures."""
    waves, _ = test_utterances(run, n)
    scored = {"log_mel_l1": [], "mr_stft": [], "dnsmos": []}
    for index, wave in enumerate(waves):
        out = griffin_lim_vocode(wave, 32, 1 + index).wave
        out = out + DITHER * torch.randn(len(out), generator=torch.Generator().manual_seed(index))
        distance, stft = distances(out, wave)
        scored["log_mel_l1"].append(distance)
        scored["mr_stft"].append(stft)
        scored["dnsmos"].append(dnsmos(out, SAMPLE_RATE)["ovrl"])
    return {key: sum(values) / len(values) for key, values in scored.items()} | {"real_time_factor": None}


def verdicts(six: dict, griffin: dict, minutes: float) -> list[str]:
    """Each target of the issue for the default run's 6-step row, met or missed."""
    ratio = six["log_mel_l1"] / griffin["log_mel_l1"]
    checks = [
        (f"DNSMOS above Griffin-Lim-32's: {six['dnsmos']:.2f} vs {griffin['dnsmos']:.2f}",
         six["dnsmos"] > griffin["dnsmos"]),
        (f"MR-STFT below Griffin-Lim-32's: {six['mr_stft']:.3f} vs {griffin['mr_stft']:.3f}",
         six["mr_stft"] < griffin["mr_stft"]),
        (f"log-mel L1 within {L1_FACTOR:g}× Griffin-Lim-32's: {six['log_mel_l1']:.3f} vs {griffin['log_mel_l1']:.3f} ({ratio:.2f}×)",
         ratio <= L1_FACTOR),
        (f"real-time factor ≤ {REAL_TIME:g}: {six['real_time_factor']:.3f}", six["real_time_factor"] <= REAL_TIME),
        (f"training within {TRAINING_BUDGET_MINUTES:g} minutes: {minutes:.1f}", minutes <= TRAINING_BUDGET_MINUTES),
    ]
    return [f"- {text}, **{'met' if met else 'missed'}**" for text, met in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RUNS / "audio", help="run directories (reused; default: $SCORELAB_BENCH_RUNS/audio)")
    parser.add_argument("--n", type=int, default=4, help="test utterances for the few-step rows and Griffin-Lim")
    parser.add_argument("--n-long", type=int, default=1, help="test utterances for the 1000-step row")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repetitions; the real-time factor is their median")
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = {name: trained(args.runs, name) for name in RUNS_TRAINED}
    minutes = {name: train_seconds(args.runs / name) / 60 for name in runs}
    ablation_rows = ablation(runs, minutes, args.n, args.repeats)

    run = runs[DEFAULT_RUN]
    short = evaluate_audio(run, n=args.n, wavegrad_steps=SHORT_STEPS, griffin_lim=GRIFFIN_LIM,
                           timing_repeats=args.repeats)
    # Timed once: at 1000 evaluations a step it takes minutes, and no target reads its speed.
    long = evaluate_audio(run, n=args.n_long, wavegrad_steps=LONG_STEPS, griffin_lim=())
    examples = listening_examples(run)  # the first utterance of the last evaluation, every method
    plot_spectrograms(examples, IMAGES / "speech_spectrograms.png",
                      f"speech, test utterance 1: {short['utterances'][0]!r}", example_scores(examples))
    corpus = speech_set(run.config.data.settings.test_sentences)
    schedules = saved_record(args.runs / DEFAULT_RUN)
    rows = [[row["method"], f"{args.n} ({short['seconds_of_audio']:.1f} s)", *_cells(row),
             schedules.get(str(row["steps"]), {}).get("name", "—") if row["kind"] == "wavegrad" else "—"]
            for row in short["rows"]]
    rows += [[row["method"], f"{args.n_long} ({long['seconds_of_audio']:.1f} s)", *_cells(row),
              "every level of the training chain (timed once)"] for row in long["rows"] if row["kind"] == "wavegrad"]
    by_method = {row["method"]: row for row in short["rows"]}
    six = next(row for row in short["rows"] if row["kind"] == "wavegrad" and row["steps"] == EVALUATIONS)
    settings = run.config
    body = (f"`python benchmarks/audio.py --n {args.n} --n-long {args.n_long} --repeats {args.repeats}`. Each test "
            "utterance (a sentence never heard in training) is vocoded whole from its log-mel spectrogram; distances "
            "to the reference are means over utterances; DNSMOS is P.835's overall score (1–5, `speechmos`'s ONNX "
            "models), an estimate of a listener's rating that needs no reference; the real-time factor is compute "
            f"seconds per audio second on {torch.get_num_threads()} threads, the median of {args.repeats} timed "
            f"repetitions (seed 1). Corpus {corpus.minutes:.2f} min (train "
            f"{sum(map(len, corpus.train)) / corpus.sample_rate / 60:.2f}, test "
            f"{sum(map(len, corpus.test)) / corpus.sample_rate / 60:.2f}).\n\n"
            f"### What makes it speak: WaveGrad in {EVALUATIONS} steps, {args.n} test utterances "
            f"({short['seconds_of_audio']:.1f} s)\n\n"
            + markdown_table(["what was changed", "training (min)", "log-mel L1", "MR-STFT", "DNSMOS",
                              "real-time factor"], ablation_rows)
            + f"\n\n### The default run: `scorelab train --dataset speech`\n\nWaveGrad width "
            f"{settings.model.settings.width:g}, {parameter_count(run.model):,} parameters, {settings.optim.steps} "
            f"steps of batch {settings.optim.batch_size} × {settings.data.settings.segment_frames} frames, noise prior "
            f"{settings.data.settings.prior!r}, trained in **{minutes[DEFAULT_RUN]:.1f} min**; its chains start from "
            f"{settings.sampler.settings.start!r}.\n\n"
            + markdown_table(["method", "utterances (audio)", "log-mel L1", "MR-STFT", "DNSMOS", "real-time factor",
                              "schedule"], rows)
            + "\n\nTargets (issue 34), the default run's 6-step row against Griffin-Lim-32:\n\n"
            + "\n".join(verdicts(six, by_method["Griffin-Lim-32"], minutes[DEFAULT_RUN]))
            + "\n\nSchedule search (two 1.5 s validation segments of the train split; the best DNSMOS within 1.5× "
              "Griffin-Lim-32's log-mel L1, else the least L1):\n\n```\n"
            + json.dumps({k: {"start": v["start"], "chosen": v["name"], "log_mel_l1": round(v["log_mel_error"], 4),
                              "dnsmos": v["dnsmos"] and round(v["dnsmos"], 3),
                              "respaced": round(v["candidates"]["respaced"]["log_mel_l1"], 4),
                              "griffin_lim_32": {key: round(value, 3) for key, value in v["griffin_lim"].items()}}
                          for k, v in schedules.items()}, indent=1, ensure_ascii=False)
            + "\n```\n\n![speech spectrograms](docs/images/speech_spectrograms.png)")
    write_section("audio", "Speech: WaveGrad against Griffin-Lim from the same mel spectrogram", body)


if __name__ == "__main__":
    main()
