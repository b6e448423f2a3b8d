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
import datetime
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from report import RUNS  # benchmarks/report.py, beside this script

from scorelab.app.benchmarks_md import git_commit, machine
from scorelab.app.demo import DEMO_SETTINGS

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
    "digits": Recipe("class-conditional DDPM U-Net on scikit-learn's 8×8 digits, guided with γ = 1.5",
                     ["--dataset", "digits", "--conditional"], [],
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
    started = datetime.datetime.now(datetime.timezone.utc)
    print(" ".join(command), flush=True)
    subprocess.run([sys.executable, "-m", "scorelab", *command[1:]], check=True)
    finished = datetime.datetime.now(datetime.timezone.utc)
    sessions_path = work / f"{name}.sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.is_file() else []
    sessions.append({"command": " ".join(command), "commit": git_commit(REPOSITORY) or "unknown",
                     "machine": machine(), "started": started.strftime("%Y-%m-%d %H:%M UTC"),
                     "wall_minutes": round((finished - started).total_seconds() / 60, 1)})
    sessions_path.write_text(json.dumps(sessions, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=list(RECIPES))
    parser.add_argument("--work", type=Path, default=RUNS / "pretrain", help="where the full runs are trained")
    parser.add_argument("--resume", action="store_true", help="train the run in --work further")
    parser.add_argument("--train-only", action="store_true", help="stop after training")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    train(args.name, args.work, args.resume)
    if args.train_only:
        return
    raise SystemExit("packing is not written yet")


if __name__ == "__main__":
    main()
