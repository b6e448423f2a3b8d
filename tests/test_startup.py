"""Start-up: the heavy dependencies load when they are used, not when scorelab is imported.

(How fast start-up is lives in benchmarks/startup.py; these tests check what is imported.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sklearn", "ot", "scipy", "librosa", "matplotlib", "torchdiffeq")


def imported_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_importing_scorelab_and_its_core_loads_no_heavy_dependency():
    core = "import scorelab as sl\nsl.Config(); sl.sampling.SAMPLERS; sl.metrics.RatioReport; sl.likelihood.log_prob"
    loaded = imported_after(core)
    assert "torch" in loaded
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_help_and_a_mistyped_command_load_no_torch():
    for argv in (["--help"], ["frobnicate"]):
        code = ("from scorelab.app.cli import main\ntry:\n    main(" + repr(argv) + ")\nexcept SystemExit:\n    pass")
        assert "torch" not in imported_after(code), argv


@pytest.mark.slow
def test_each_dependency_still_loads_where_it_is_used():
    code = ("import torch, scorelab as sl\n"
            "sl.data.load('moons', 10)\n"
            "sl.metrics.wasserstein2(torch.zeros(3, 2), torch.ones(3, 2))\n"
            "sl.noise.sigma_max_from_data(torch.randn(20, 2))\n"
            "sl.sampling.probability_flow(lambda x, s: -x, torch.zeros(2, 2), torch.tensor([2.0, 1.0]))")
    assert {"sklearn", "ot", "scipy", "torchdiffeq"} <= imported_after(code)


def test_a_commands_help_its_parser_and_a_bad_flag_load_no_torch(tmp_path):
    """The flags of train and sample come from the torch-free settings catalogues; nothing is cached."""
    for argv in (["train", "--help"], ["sample", "--help"], ["train", "--bogus"], ["sample", "r", "--bogus"],
                 ["train", "--out", "r", "--sampler", "heun", "--hidden", "-1"]):
        code = ("import os\nos.environ['SCORELAB_CACHE'] = " + repr(str(tmp_path)) + "\n"
                "from scorelab.app.cli import build_parser\n"
                f"parser = build_parser({argv[0]!r})\n"
                "try:\n    parser.parse_args(" + repr(argv) + ")\nexcept SystemExit:\n    pass")
        assert "torch" not in imported_after(code), argv
    assert not list(tmp_path.iterdir())  # nothing written to the cache


def test_the_settings_modules_load_no_torch():
    code = ("import scorelab.core.registry, scorelab.core.process_settings, scorelab.data.settings, "
            "scorelab.models.settings, scorelab.objectives.settings, scorelab.sampling.settings, scorelab.runs.settings")
    assert "torch" not in imported_after(code)


def _command_parser(build, name: str):
    parser = build(name)
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return parser, subparsers.choices[name]


ARGVS = {
    "train": [["train", "--out", "r"], ["train", "--out", "r", "--dataset", "moons", "--hidden", "8", "--lr", "1e-3",
                                         "--no-denoise", "--sampler", "heun", "--steps", "4", "--resume"]],
    "sample": [["sample", "r", "--out", "s.npy"], ["sample", "r", "--out", "s.csv", "--sampler", "dpmpp_2m",
                                                   "--sample-steps", "7", "--denoise", "--n", "3", "--device", "cpu"]],
    "evaluate": [["evaluate", "r", "--nll", "--repeats", "2"]],
    "plot": [["plot", "r", "--animate", "--out", "figs"]],
    "demo": [["demo"], ["demo", "--out", "d"]],
    "bench": [["bench", "--quick", "--datasets", "moons", "rings", "--floor-repeats", "6"]],
}


def test_every_commands_arguments_parse(tmp_path):
    from scorelab.app import cli

    for name, argvs in ARGVS.items():
        parser, sub = _command_parser(cli.build_parser, name)
        assert sub.format_help()
        for argv in argvs:
            assert parser.parse_args(argv).command == name, argv
