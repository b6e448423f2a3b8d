"""WaveGrad on speech measured against Griffin-Lim: the default run trained on 2 cores, then vocoded.

    python benchmarks/audio.py [--runs DIR] [--n 4] [--n-long 1] [--repeats 3]

Trains the default ``speech`` run (``scorelab train --dataset speech``; reused from ``--runs`` when
it is there, its training seconds read from its ``train_log.csv``), which ends with the schedule
search for 6, 25 and 50 steps. Then, on the first ``--n`` test utterances (sentences never heard
in training), WaveGrad at 6, 25 and 50 steps and Griffin-Lim at 32 and 100 iterations from the same
log-mel spectrogram are scored by :func:`scorelab.evaluation.audio.evaluate_audio`: log-mel L1,
multi-resolution STFT distance and the real-time factor on this machine's threads. The 1000-step
chain costs 1000/6 times the network evaluations of the 6-step one, so it is measured on the first
``--n-long`` utterances only (its row says how many). Every method is timed ``--repeats`` times; the
real-time factor quoted is the median.

Writes the ``audio`` section of BENCHMARKS.md and ``docs/images/speech_spectrograms.png``
(reference, WaveGrad at each schedule and Griffin-Lim for the first test utterance).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from report import RUNS, markdown_table, write_section  # benchmarks/report.py, beside this script

from scorelab.app.cli import main as main_cli
from scorelab.data.audio import speech_set
from scorelab.evaluation.audio import evaluate_audio
from scorelab.evaluation.schedule_search import saved_record
from scorelab.plots.audio import listening_examples, plot_spectrograms
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import parameter_count

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
SHORT_STEPS, LONG_STEPS, GRIFFIN_LIM = (6, 25, 50), (1000,), (32, 100)
TRAINING_BUDGET_MINUTES, REAL_TIME = 30.0, 1.0


def train_seconds(run_dir: Path) -> float:
    with (run_dir / "train_log.csv").open() as handle:
        return float(list(csv.DictReader(handle))[-1]["seconds"])


def trained(run_dir: Path) -> TrainedRun:
    """The run of ``scorelab train --dataset speech --out RUN_DIR`` (training, then the schedule search)."""
    if not (run_dir / "model.safetensors").exists():
        if main_cli(["train", "--dataset", "speech", "--out", str(run_dir), "--no-progress", "--overwrite"]):
            raise SystemExit("training failed")
    return TrainedRun.load(run_dir, "cpu")


def verdicts(rows: list[dict], minutes: float) -> list[str]:
    """Each target of the issue, met or missed, from the measured rows."""
    by = {row["method"]: row for row in rows}
    six, griffin = by["WaveGrad-6"], by["Griffin-Lim-32"]
    lines = []
    for key, name in (("log_mel_l1", "log-mel L1"), ("mr_stft", "MR-STFT")):
        met = six[key] < griffin[key]
        lines.append(f"- WaveGrad-6 below Griffin-Lim-32 on {name}: {six[key]:.3f} vs {griffin[key]:.3f}, "
                     f"**{'met' if met else 'missed'}**")
    lines.append(f"- WaveGrad-6 real-time factor ≤ {REAL_TIME:g}: {six['real_time_factor']:.3f}, "
                 f"**{'met' if six['real_time_factor'] <= REAL_TIME else 'missed'}**")
    lines.append(f"- training within {TRAINING_BUDGET_MINUTES:g} minutes: {minutes:.1f}, "
                 f"**{'met' if minutes <= TRAINING_BUDGET_MINUTES else 'missed'}**")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RUNS / "audio", help="run directories (reused; default: $SCORELAB_BENCH_RUNS/audio)")
    parser.add_argument("--n", type=int, default=4, help="test utterances for the few-step rows and Griffin-Lim")
    parser.add_argument("--n-long", type=int, default=1, help="test utterances for the 1000-step row")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repetitions; the real-time factor is their median")
    args = parser.parse_args()
    torch.set_num_threads(2)
    run_dir = args.runs / "speech"
    run = trained(run_dir)
    short = evaluate_audio(run, n=args.n, wavegrad_steps=SHORT_STEPS, griffin_lim=GRIFFIN_LIM,
                           timing_repeats=args.repeats)
    long = evaluate_audio(run, n=args.n_long, wavegrad_steps=LONG_STEPS, griffin_lim=(), timing_repeats=args.repeats)
    examples = listening_examples(run)  # the first utterance of the last evaluation, every method
    plot_spectrograms(examples, IMAGES / "speech_spectrograms.png",
                      f"speech, test utterance 1: {short['utterances'][0]!r}")
    minutes = train_seconds(run_dir) / 60
    corpus = speech_set(run.config.data.settings.test_sentences)
    schedules = saved_record(run_dir)
    rows = [[row["method"], f"{args.n} ({short['seconds_of_audio']:.1f} s)", f"{row['log_mel_l1']:.3f}",
             f"{row['mr_stft']:.3f}", f"{row['real_time_factor']:.3f}",
             schedules.get(str(row["steps"]), {}).get("name", "—") if row["kind"] == "wavegrad" else "—"]
            for row in short["rows"]]
    rows += [[row["method"], f"{args.n_long} ({long['seconds_of_audio']:.1f} s)", f"{row['log_mel_l1']:.3f}",
              f"{row['mr_stft']:.3f}", f"{row['real_time_factor']:.3f}", "every level of the training chain"]
             for row in long["rows"]]
    settings = run.config
    body = (f"`python benchmarks/audio.py --n {args.n} --n-long {args.n_long} --repeats {args.repeats}`: the default "
            "speech run "
            f"(WaveGrad width {settings.model.settings.width:g}, {parameter_count(run.model):,} parameters, "
            f"{settings.optim.steps} steps of batch {settings.optim.batch_size} × "
            f"{settings.data.settings.segment_frames} frames) trained in **{minutes:.1f} min** on "
            f"{torch.get_num_threads()} threads; corpus {corpus.minutes:.2f} min "
            f"(train {sum(map(len, corpus.train)) / corpus.sample_rate / 60:.2f}, "
            f"test {sum(map(len, corpus.test)) / corpus.sample_rate / 60:.2f}). Each test utterance is vocoded "
            "whole from its log-mel spectrogram; distances to the reference are means over utterances; the "
            f"real-time factor is compute seconds per audio second, the median of {args.repeats} timed repetitions "
            "(seed 1).\n\n"
            + markdown_table(["method", "utterances (audio)", "log-mel L1", "MR-STFT", "real-time factor",
                              "schedule"], rows)
            + "\n\nTargets (issue 16):\n\n" + "\n".join(verdicts(short["rows"], minutes))
            + "\n\nSchedule search (log-mel L1 on validation segments of the train split):\n\n```\n"
            + json.dumps({k: {"chosen": v["name"], "error": round(v["log_mel_error"], 4),
                              "respaced": round(v["candidates"]["respaced"], 4)} for k, v in schedules.items()},
                         indent=1, ensure_ascii=False)
            + "\n```\n\n![speech spectrograms](docs/images/speech_spectrograms.png)")
    write_section("audio", "Speech: WaveGrad against Griffin-Lim from the same mel spectrogram", body)


if __name__ == "__main__":
    main()
