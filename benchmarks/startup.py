"""Start-up: wall time of fresh processes that import scorelab or ask the command line for help.

    python benchmarks/startup.py [--repeats 7]

Each command runs ``--repeats`` times, the commands taking turns, and the table gives
medians and each one's ratio to ``import torch`` measured in the same run. Writes the
``startup`` section of BENCHMARKS.md.
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
    "scorelab train --frobnicate (a bad flag)": [SCRIPT, "train", "--frobnicate"],
    "scorelab train --help": [SCRIPT, "train", "--help"],
    "scorelab train --frobnicate, nothing cached": [SCRIPT, "train", "--frobnicate"],
}
UNCACHED = "scorelab train --frobnicate, nothing cached"  # run with an empty SCORELAB_CACHE each time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    subprocess.run([SCRIPT, "train", "--help"], capture_output=True)  # describes train's arguments into the cache
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            with tempfile.TemporaryDirectory() as empty:
                env = {**os.environ, "SCORELAB_CACHE": empty} if name == UNCACHED else None
                begin = time.perf_counter()
                subprocess.run(command, capture_output=True, env=env)
                times[name].append(time.perf_counter() - begin)
    baseline = statistics.median(times["python -c 'import torch'"])
    rows = [[f"`{name}`", f"{statistics.median(values):.2f}", f"{min(values):.2f} – {max(values):.2f}",
             f"{statistics.median(values) / baseline:.2f}"] for name, values in times.items()]
    body = (f"Wall seconds of a fresh process, median over {args.repeats} runs taken in turns, and the median's "
            "ratio to `import torch` in the same run. `import scorelab` loads its modules on first use; the core "
            "(`sl.Config`: torch, the registries, the objectives, samplers and metrics) loads torch and nothing "
            "heavier, and scikit-learn, POT, SciPy and torchdiffeq load where they are used. `scorelab --help` "
            "and a mistyped command build no command's arguments and load no torch. A command's own flags come "
            "from the registries, which load torch; their description is kept in the user's cache "
            "(`scorelab.app.argcache`, keyed by the version and the sources' modification times), so from the "
            "second run on a command's help and its bad flags load no torch either. The last row clears "
            "the cache before each run.\n\n"
            + markdown_table(["command", "median s", "range s", "/ import torch"], rows))
    write_section("startup", "Start-up time", body)


if __name__ == "__main__":
    main()
