"""Start-up: the heavy dependencies load when they are used, not when scorelab is imported.

(How fast start-up is lives in benchmarks/startup.py; these tests check what is imported.)
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "ot", "scipy", "librosa", "matplotlib", "torchdiffeq")


def imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_importing_scorelab_and_its_core_loads_no_heavy_dependency():
    core = "import scorelab as sl\nsl.Config(); sl.sampling.SAMPLERS; sl.metrics.RatioReport; sl.likelihood.log_prob"
    loaded = imported_after(core)
    assert "torch" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_help_and_a_mistyped_command_load_no_torch():
    for argv in (["--help"], ["frobnicate"]):
        code = ("from scorelab.cli import main\ntry:\n    main(" + repr(argv) + ")\nexcept SystemExit:\n    pass")
        assert "torch" not in imported_after(code), argv


def test_each_dependency_still_loads_where_it_is_used():
    code = ("import torch, scorelab as sl\n"
            "sl.data.load('moons', 10)\n"
            "sl.metrics.wasserstein2(torch.zeros(3, 2), torch.ones(3, 2))\n"
            "sl.noise.sigma_max_from_data(torch.randn(20, 2))\n"
            "sl.sampling.probability_flow(lambda x, s: -x, torch.zeros(2, 2), torch.tensor([2.0, 1.0]))")
    assert {"sklearn", "ot", "scipy", "torchdiffeq"} <= imported_after(code)
