"""Train, pack and evaluate a run that ships with scorelab (``src/scorelab/pretrained/NAME``).

    python benchmarks/pretrain.py NAME [--work DIR] [--resume] [--train-only]

1. **Train**: ``scorelab train`` with the recipe's flags (:data:`RECIPES`) into ``--work``/NAME, in a process of its
   own, so that the command recorded is the one that ran. A run already there is reused (retrain one only when its
   recipe changes); ``--resume`` continues it (a recipe whose step count grew trains further). Each session's
   command, commit, machine and wall time are appended to ``--work``/NAME.sessions.json.
2. **Pack**: the EMA weights and the data's normalisation, nothing of the optimiser, in fp32 and in fp16; each
   evaluated by ``scorelab evaluate`` with the recipe's flags. fp16 ships where each headline score of the fp16 copy
   is within :data:`FP16_TOLERANCE` of the fp32 copy's.
3. **Record**: ``provenance.toml`` (the training sessions, the training minutes read from the run's log, the
   headline scores, a spot check with its noise over :data:`SPOT_SEEDS`, and every file's SHA-256), then the run
   replaces ``src/scorelab/pretrained/NAME``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from report import RUNS  # benchmarks/report.py, beside this script

from scorelab.app.benchmarks_md import git_commit, machine
from scorelab.app.demo import DEMO_SETTINGS
from scorelab.evaluation.schedule_search import RECORD_FILE
from scorelab.evaluation.spot_check import LABELS, spot_check
from scorelab.pretrained import PREFIX, PROVENANCE, ROOT, Provenance, sha256
from scorelab.runs.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scorelab.runs.trained import TrainedRun
from scorelab.runs.training import GUIDE_NAME

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Recipe:
    """How a pretrained run is made: what it is, the flags of ``scorelab train`` and of ``scorelab evaluate``, and
    the command that shows it off."""

    summary: str
    train: list[str]
    evaluate: list[str]
    example: str


def _flags(settings: dict) -> list[str]:
    return [item for key, value in settings.items() for item in (f"--{key.replace('_', '-')}", str(value))]


RECIPES = {
    "swiss_roll": Recipe("the demo's NCSN on the swiss roll (the seed tutorial's experiment)", _flags(DEMO_SETTINGS), [],
                         "scorelab sample pretrained:swiss_roll --n 5000 --out swiss.png"),
    # Its guide.safetensors (the weights at a quarter of the steps) is autoguidance's bad version of it.
    "digits": Recipe("class-conditional DDPM U-Net on scikit-learn's 8×8 digits, guided with γ = 1.5",
                     ["--dataset", "digits", "--conditional", "--keep-guide-at", "750"], [],
                     "scorelab sample pretrained:digits --class all --n 10 --out digits.png"),
    "mnist": Recipe("class-conditional flow-matching U-Net on 5000 MNIST digits, DPM-Solver++(2M) in 20 steps",
                    ["--dataset", "mnist5k"], [],
                    "scorelab sample pretrained:mnist --class all --n 10 --out mnist.png"),
    # The default speech recipe trained twice as long: the WaveGrad issue's longer-trained model.
    "speech": Recipe("WaveGrad vocoder on eSpeak NG speech (SpecGrad's prior, 6 steps from Griffin-Lim's waveform)",
                     ["--dataset", "speech", "--steps", "5000"], ["--vocoder-steps", "6"],
                     "scorelab vocode pretrained:speech --input speech.wav --out vocoded.wav"),
}


def train(name: str, work: Path, resume: bool) -> None:
    """Stage 1: train the recipe into ``work/name`` unless a run is there (``resume``: continue it)."""
    run_dir = work / name
    if (run_dir / "model.safetensors").is_file() and not resume:
        print(f"{run_dir} is trained; reusing it (--resume trains it further)")
        return
    command = ["scorelab", "train", *RECIPES[name].train, "--out", str(run_dir), "--no-progress",
               *(["--resume"] if resume else [])]
    started = datetime.datetime.now(datetime.UTC)
    print(" ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "scorelab", *command[1:]], check=True)
    finished = datetime.datetime.now(datetime.UTC)
    sessions_path = work / f"{name}.sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.is_file() else []
    sessions.append({"command": " ".join(command), "commit": git_commit(REPOSITORY) or "unknown",
                     "machine": machine(), "started": started.strftime("%Y-%m-%d %H:%M UTC"),
                     "wall_minutes": round((finished - started).total_seconds() / 60, 1)})
    sessions_path.write_text(json.dumps(sessions, indent=2) + "\n")


# The largest change of a headline score that fp16 weights may make: 5% of it, or 0.005 (a fraction near zero, the
# memorised share, moves by 0.001 when one sample in 1000 changes side).
FP16_TOLERANCE, FP16_ABSOLUTE = 0.05, 0.005
SPOT_SEEDS = 5  # the spot check is recorded at seeds 0 … SPOT_SEEDS − 1: its mean, spread and seed 0's value


def reduced(checkpoint: Checkpoint, parameters: set[str], half: bool) -> Checkpoint:
    """``checkpoint`` with what sampling needs: the EMA weights (the network's parameters in fp16 if ``half``;
    buffers stay fp32) and the data's normalisation; nothing of the optimiser."""
    tensors = {f"ema.{key}": value.half() if half and key in parameters else value
               for key, value in checkpoint.group("ema").items()}
    tensors |= {key: checkpoint.tensors[key] for key in ("data.shift", "data.scale")}
    return Checkpoint(checkpoint.step, checkpoint.config, tensors, parameters=checkpoint.parameters,
                      train_log=checkpoint.train_log)


def pack(run_dir: Path, out: Path, half: bool) -> None:
    """Stage 2: ``out`` holds what sampling needs of ``run_dir``: its config and train log, its checkpoint and
    autoguidance's guide (where it keeps one) reduced by :func:`reduced`, and WaveGrad's schedule-search record."""
    checkpoint = load_checkpoint(run_dir)
    parameters = {name for name, _ in TrainedRun.load(run_dir, "cpu").model.named_parameters()}
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    save_checkpoint(out, reduced(checkpoint, parameters, half))
    if (run_dir / GUIDE_NAME).is_file():
        save_checkpoint(out, reduced(load_checkpoint(run_dir / GUIDE_NAME), parameters, half), GUIDE_NAME)
    if (run_dir / RECORD_FILE).is_file():
        shutil.copy(run_dir / RECORD_FILE, out)
    (out / "config.toml").write_text(checkpoint.config.to_toml())
    (out / "train_log.csv").write_text(checkpoint.train_log or "")


def headline(metrics: dict) -> dict[str, float]:
    """The scores ``scorelab pretrained`` lists, from ``metrics.json``, by the modality's entry."""
    if "w2" in metrics:
        return {"W2 ratio": metrics["w2"]["ratio"]}
    if "images" in metrics:
        images = metrics["images"]
        scores = {"FD ratio": images["fd"]["ratio"], "precision": images["precision"]["model"],
                  "recall": images["recall"]["model"]}
        if "agreement" in images:
            scores["class agreement"] = images["agreement"]
        return scores | {"memorised": images["memorisation"]["fraction"]}
    rows = {(row["kind"], row["steps"]): row for row in metrics["audio"]["rows"]}
    wavegrad, griffin_lim = rows[("wavegrad", 6)], rows[("griffin_lim", 32)]
    return {"log-mel L1": wavegrad["log_mel_l1"], "MR-STFT": wavegrad["mr_stft"], "DNSMOS": wavegrad["dnsmos"],
            "real-time factor": wavegrad["real_time_factor"], "Griffin-Lim-32 log-mel L1": griffin_lim["log_mel_l1"],
            "Griffin-Lim-32 DNSMOS": griffin_lim["dnsmos"], "reference DNSMOS": rows[("reference", 0)]["dnsmos"]}


def evaluated(run_dir: Path, flags: list[str]) -> dict[str, float]:
    """``scorelab evaluate RUN_DIR FLAGS`` in a process of its own; the headline of the metrics it wrote."""
    subprocess.run([sys.executable, "-m", "scorelab", "evaluate", str(run_dir), *flags], check=True)
    return headline(json.loads((run_dir / "metrics.json").read_text()))


def holds(half: dict[str, float], full: dict[str, float]) -> bool:
    """Whether every headline score of the fp16 copy is within :data:`FP16_TOLERANCE` (relative) or
    :data:`FP16_ABSOLUTE` of the fp32 copy's (the real-time factor, a timing, aside)."""
    return all(abs(half[key] - value) <= max(FP16_TOLERANCE * abs(value), FP16_ABSOLUTE)
               for key, value in full.items() if key != "real-time factor")


def spot(run_dir: Path) -> dict:
    """The spot check (:mod:`scorelab.evaluation.spot_check`) at :data:`SPOT_SEEDS` seeds."""
    run = TrainedRun.load(run_dir, "cpu")
    values = [spot_check(run, seed) for seed in range(SPOT_SEEDS)]
    return {"measure": LABELS[run.modality.name], "seed_0": values[0], "mean": statistics.fmean(values),
            "std": statistics.stdev(values), "seeds": SPOT_SEEDS}


def record(name: str, work: Path, staged: Path, half: bool, scores: dict[str, float]) -> dict:
    """The run's ``provenance.toml``: recipe, training sessions, scores, spot check and file hashes."""
    recipe, checkpoint = RECIPES[name], load_checkpoint(staged)
    sessions = json.loads((work / f"{name}.sessions.json").read_text())
    rows = list(csv.DictReader(io.StringIO(checkpoint.train_log or "")))
    evaluate = " ".join(["scorelab evaluate", f"{PREFIX}{name}", *recipe.evaluate])
    return {
        "name": name, "summary": recipe.summary,
        "command": sessions[0]["command"].replace(f" --out {work / name}", f" --out {name}"),
        "trained_at": sessions[0]["commit"], "machine": sessions[0]["machine"],
        "sessions": sessions, "steps": checkpoint.step,
        "train_minutes": round(float(rows[-1]["seconds"]) / 60, 1),
        "parameters": checkpoint.parameters,
        "weights": "fp16" if half else "fp32",
        "packed_at": git_commit(REPOSITORY) or "unknown",
        "packed": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "evaluate": evaluate, "example": recipe.example,
        "scores": scores, "spot_check": spot(staged),
        "files": {path.name: sha256(path) for path in sorted(staged.iterdir()) if path.is_file()},
    }


def ship(name: str, work: Path) -> None:
    """Stages 2 and 3: pack in fp32 and fp16, evaluate both, record and replace the shipped run."""
    full, half = work / f"{name}.fp32", work / f"{name}.fp16"
    pack(work / name, full, half=False)
    pack(work / name, half, half=True)
    scores = {precision: evaluated(path, RECIPES[name].evaluate) for precision, path in (("fp32", full), ("fp16", half))}
    use_half = holds(scores["fp16"], scores["fp32"])
    print(f"fp16 {'holds' if use_half else 'does not hold'}: fp32 {scores['fp32']}, fp16 {scores['fp16']}")
    staged = half if use_half else full
    for extra in ("audio", ".lock"):  # evaluate's examples and the run lock: not what sampling needs
        path = staged / extra
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    values = record(name, work, staged, use_half, scores["fp16" if use_half else "fp32"])
    (staged / PROVENANCE).write_text(tomli_w.dumps(values))
    target = ROOT / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(staged, target)
    print(f"{target}: {Provenance.read(name).size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=list(RECIPES))
    parser.add_argument("--work", type=Path, default=RUNS / "pretrain", help="where the full runs are trained")
    parser.add_argument("--resume", action="store_true", help="train the run in --work further")
    parser.add_argument("--train-only", action="store_true", help="stop after training")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train(args.name, args.work, args.resume)
    if not args.train_only:
        ship(args.name, args.work)


if __name__ == "__main__":
    main()
