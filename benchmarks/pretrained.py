"""The runs that ship, and what they make fast: the ``pretrained`` section of BENCHMARKS.md.

    python benchmarks/pretrained.py [--repeats 3] [--tutorials 01_score_matching ...]

- **The runs**: each shipped run's size, weights, training and headline scores, read from its ``provenance.toml``
  (``benchmarks/pretrain.py`` measured them).
- **The commands of the issue**, each a fresh process as a user would start it (Python's start and torch's
  import included), timed ``--repeats`` times, median: ``scorelab sample pretrained:digits --n 100`` and
  ``scorelab vocode pretrained:speech`` on a sentence the vocoder never heard (the speech set's first test
  utterance), against that sentence's duration; beside them ``python -c "import torch"``, the floor that every
  command pays, and for vocoding the seconds the command itself reports for the vocoding (Griffin-Lim's start
  and the network's steps), the time that a real-time factor is about.
- **The tutorials' full runs** (not the quick settings), each executed once top to bottom as the documentation
  site's reader would, loading the shipped runs where they train for more than a minute.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import (  # benchmarks/report.py, beside this script
    markdown_table,
    write_section,
)

from scorelab import pretrained
from scorelab.data.audio import SAMPLE_RATE
from scorelab.evaluation.audio import test_utterances
from scorelab.evaluation.vocoding import write_wav
from scorelab.runs.trained import load_run

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
TUTORIAL_BUDGET_SECONDS = 240.0
SAMPLE_BUDGET_SECONDS = 10.0


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    """The wall seconds of a fresh Python process running ``argv``, and what it printed."""
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=cwd, check=True, capture_output=True, text=True)
    return time.perf_counter() - begin, done.stdout


def median_wall(argv: list[str], cwd: Path, repeats: int) -> float:
    return statistics.median(timed(argv, cwd)[0] for _ in range(repeats))


def runs_table() -> str:
    rows = []
    for name in pretrained.names():
        record = pretrained.Provenance.read(name)
        values = record.values
        scores = record.scores_text()
        rows.append([f"`pretrained:{name}`", record.summary, f"{record.size / 1e6:.2f}", values["weights"],
                     f"{values['parameters']:,}", values["steps"], f"{values['train_minutes']:.1f}",
                     f"`{values['command']}`", scores])
    return markdown_table(["run", "what", "MB", "weights", "parameters", "steps", "train min", "trained by",
                           "scores (`scorelab evaluate`)"], rows)


def commands_table(work: Path, repeats: int) -> str:
    (wave,), _ = test_utterances(load_run("pretrained:speech", "cpu"), 1)
    seconds_of_audio = len(wave) / SAMPLE_RATE
    write_wav(work / "sentence.wav", wave)
    floor = median_wall(["-c", "import torch"], work, repeats)
    sample = median_wall(["-m", "scorelab", "sample", "pretrained:digits", "--n", "100", "--out", "grid.png",
                          "--no-progress"], work, repeats)
    vocodes = [timed(["-m", "scorelab", "vocode", "pretrained:speech", "--input", "sentence.wav", "--out",
                      "vocoded.wav"], work) for _ in range(repeats)]
    vocode_wall = statistics.median(wall for wall, _ in vocodes)
    # The command prints the seconds that vocoding took, Griffin-Lim's start and the network's steps together.
    vocoding = statistics.median(float(re.search(r"steps in ([0-9.]+) s", printed)[1]) for _, printed in vocodes)
    rows = [["`python -c \"import torch\"` (the floor of any command)", f"{floor:.1f}", "", "", ""],
            ["`scorelab sample pretrained:digits --n 100 --out grid.png`", f"{sample:.1f}", "",
             f"{SAMPLE_BUDGET_SECONDS:.0f} s", "met" if sample < SAMPLE_BUDGET_SECONDS else "**missed**"],
            [f"`scorelab vocode pretrained:speech` on a {seconds_of_audio:.2f} s test sentence", f"{vocode_wall:.1f}",
             f"{vocoding:.2f}", f"its duration, {seconds_of_audio:.2f} s",
             f"vocoding {'met' if vocoding < seconds_of_audio else '**missed**'}, the whole process "
             f"{'met' if vocode_wall < seconds_of_audio else '**missed**'}"]]
    return markdown_table(["command (a fresh process)", "wall s (median)", "of which vocoding s (median)", "target",
                           "verdict"], rows)


def tutorial_seconds(stem: str, work: Path) -> float:
    import jupytext
    import nbclient

    notebook = jupytext.read(TUTORIALS / f"{stem}.py")
    directory = work / stem
    directory.mkdir()
    client = nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3",
                                     resources={"metadata": {"path": str(directory)}})
    begin = time.perf_counter()
    client.execute()
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tutorials", nargs="*", default=sorted(path.stem for path in TUTORIALS.glob("*.py")))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        commands = commands_table(work, args.repeats)
        tutorials = [[stem, f"{(seconds := tutorial_seconds(stem, work)):.0f}",
                      "met" if seconds < TUTORIAL_BUDGET_SECONDS else "**missed**"] for stem in args.tutorials]
    body = "\n\n".join([
        ("`python benchmarks/pretrained.py`: the runs that ship with scorelab (`scorelab pretrained`), from each "
        "one's `provenance.toml`, written by `benchmarks/pretrain.py NAME`, which trained, packed and evaluated it; "
        "then the issue's commands, each a fresh process (Python's start and torch's import included), median of "
        f"{args.repeats}; then each tutorial's full run (not the quick settings), executed once top to bottom, "
        "loading the shipped runs where they train for more than a minute. Nothing else ran on the machine."),
        runs_table(), commands,
        markdown_table(["tutorial, full settings", "wall s", f"under {TUTORIAL_BUDGET_SECONDS / 60:.0f} min"],
                       tutorials),
    ])
    write_section("pretrained", "Pretrained runs: what ships, and what it makes fast", body)


if __name__ == "__main__":
    main()
