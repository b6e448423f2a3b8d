"""Start-up: wall time of fresh processes that import scorelab or ask the command line for help.

    python benchmarks/startup.py [--repeats 7]

Each command runs ``--repeats`` times, the commands taking turns, each with an empty cache, and
the table gives medians and each one's ratio to ``import torch`` measured in the same run, with the
machine's load average. Writes the ``startup`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import markdown_table, write_section  # benchmarks/report.py, beside this script

SCRIPT = str(Path(sys.executable).parent / "scorelab")
COMMANDS = {
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    "python -c 'import scorelab'": [sys.executable, "-c", "import scorelab"],
    "python -c 'import scorelab as sl; sl.Config'": [sys.executable, "-c", "import scorelab as sl; sl.Config"],
    "scorelab --help": [SCRIPT, "--help"],
    "scorelab frobnicate (a mistyped command)": [SCRIPT, "frobnicate"],
    "scorelab train --help": [SCRIPT, "train", "--help"],
    "scorelab train --bogus (a bad flag)": [SCRIPT, "train", "--bogus"],
    "scorelab sample --help": [SCRIPT, "sample", "--help"],
    "scorelab sample RUN --bogus (a bad flag)": [SCRIPT, "sample", "RUN", "--bogus"],
}


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages and the number of CPUs, as ``uptime`` gives them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    before = load_average()
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            with tempfile.TemporaryDirectory() as empty:  # every run with an empty cache
                begin = time.perf_counter()
                subprocess.run(command, capture_output=True, env={**os.environ, "SCORELAB_CACHE": empty})
                times[name].append(time.perf_counter() - begin)
    after = load_average()
    baseline = statistics.median(times["python -c 'import torch'"])
    rows = [[f"`{name}`", f"{statistics.median(values):.2f}", f"{min(values):.2f} – {max(values):.2f}",
             f"{statistics.median(values) / baseline:.2f}"] for name, values in times.items()]
    body = (f"Wall seconds of a fresh process, median over {args.repeats} runs taken in turns, each with an empty "
            "`SCORELAB_CACHE`, and the median's ratio to `import torch` in the same run. `import scorelab` loads "
            "its modules on first use; the core (`sl.Config`: torch, the registries, the objectives, samplers and "
            "metrics) loads torch and nothing heavier, and scikit-learn, POT, SciPy and torchdiffeq load where "
            "they are used. `scorelab --help` and a mistyped command build no command's arguments. A command's "
            "flags come from the settings catalogues (`scorelab.runs.settings` and each layer's `settings.py`), "
            "which import no torch, so `train --help`, `sample --help` and a bad flag load no torch and nothing is "
            f"cached. Load average (1, 5, 15 min) before the runs: {before}; after: {after} "
            "(a shared machine: other work ran beside these measurements).\n\n"
            + markdown_table(["command", "median s", "range s", "/ import torch"], rows))
    write_section("startup", "Start-up time", body)


if __name__ == "__main__":
    main()
