"""`scorelab demo` end to end: wall time (goal < 30 s on 2 cores) and its W2 ratio (goal <= 1.10).

Runs the demo command several times in fresh output directories and reports the
median wall time, with each run's W2 parts.

    python benchmarks/demo.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import markdown_table, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows, walls = [], []
    cache = tempfile.TemporaryDirectory()  # empty at first: run 1 computes the W2 floor, the others read it
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "demo"
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "scorelab.app.cli", "demo", "--out", str(out)],
                                    capture_output=True, text=True, check=True,
                                    env={**os.environ, "SCORELAB_CACHE": cache.name})
            wall = time.perf_counter() - start
            walls.append(wall)
            w2 = json.loads((out / "metrics.json").read_text())["w2"]
            summary = {line.split()[0]: line.split()[2] for line in result.stdout.splitlines()
                       if line.startswith(("train time", "sample time"))}
            rows.append([repeat + 1, f"{wall:.1f}", summary.get("train"), summary.get("sample"),
                         f"{w2['model_mean']:.4f} ± {w2['model_std']:.4f}",
                         f"{w2['floor_mean']:.4f} ± {w2['floor_std']:.4f}", f"**{w2['ratio']:.3f}**"])
            print(rows[-1], flush=True)
    cache.cleanup()
    body = (
        f"Wall time of `scorelab demo` as a fresh process (imports, training, 5000 samples, the W2 ratio with "
        f"R = 3 at n = 5000, and every figure); median over {args.repeats} runs: "
        f"**{statistics.median(walls):.1f} s**. Run 1 starts from an empty cache and computes the W2 floor "
        f"(3 exact W2s of data against data); the later runs read it from the cache "
        f"(`scorelab.core.cache`), as a user's second demo does. The demo is seeded, so the W2 numbers repeat "
        f"exactly.\n\n"
        + markdown_table(["run", "wall s", "train s", "sample s", "W2 model", "W2 floor", "W2 ratio"], rows)
    )
    write_section("demo", "The demo: `scorelab demo`", body)


if __name__ == "__main__":
    main()
