"""Shared fixtures: tiny, seeded training runs that take a second or two."""

from __future__ import annotations

import pytest
import torch

import scorelab as sl
from scorelab.cli import main
from scorelab.config import NAME_KEYS

# Two cores are shared by everything; one thread keeps timings stable and results identical.
torch.set_num_threads(1)


TINY = dict(n_data=512, steps=40, batch_size=64, hidden=32, depth=2, checkpoint_every=20, log_every=10,
            n_levels=4, n_steps_each=5, seed=3, device="cpu")


def tiny_config(**changes) -> sl.Config:
    """A run small enough for unit tests (not for quality): the TINY settings its parts have, then ``changes``.

    Its NCSN samples with annealed Langevin (4 levels × 5 steps), the cheapest sampler to test with.
    """
    parts = sl.Config(**{key: value for key, value in changes.items() if key in NAME_KEYS})
    if parts.sampler.name == "stochastic_heun" and "sampler" not in changes:
        changes = {**changes, "sampler": "ald"}
        parts = sl.Config(**{key: value for key, value in changes.items() if key in NAME_KEYS})
    return sl.Config(**{**{key: value for key, value in TINY.items() if key in parts.flat()}, **changes})


def run_cli(capsys, *argv):
    """Run the CLI in this process: its exit code (argparse's too), stdout and stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(code, err, pattern):
    """Exit code 2 and one ``scorelab: error:`` line containing ``pattern``, no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scorelab: error: "), err
    assert pattern in lines[0]
    assert "Traceback" not in err


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Cached floors go to a directory of the test session's own, never the user's (CLI children inherit it)."""
    import os

    previous = os.environ.get("SCORELAB_CACHE")
    os.environ["SCORELAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["SCORELAB_CACHE"]
    else:
        os.environ["SCORELAB_CACHE"] = previous


@pytest.fixture
def tiny_run(tmp_path):
    """A trained tiny run directory."""
    run_dir = tmp_path / "run"
    sl.train(tiny_config(), run_dir, progress=False)
    return run_dir
