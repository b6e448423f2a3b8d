"""Renamed flags and parts keep working, each with a one-line notice: ``--steps`` of ``sample`` and ``vocode``
is ``--sample-steps``; the model ``seed_conditional`` is ``condlinear``."""

from pathlib import Path

import numpy as np
import pytest

import scorelab as sl
from scorelab.app.cli import main

V020 = Path(__file__).parent / "fixtures" / "v0_2_0"
V010 = Path(__file__).parent / "fixtures" / "v0_1_0"


def test_sample_takes_the_old_steps_flag_with_a_notice_and_the_same_samples(tmp_path, capsys):
    new, old = tmp_path / "new.npy", tmp_path / "old.npy"
    common = ["sample", str(V020 / "moons"), "--n", "8", "--seed", "1", "--device", "cpu", "--sampler", "dpmpp_2m"]
    assert main([*common, "--sample-steps", "5", "--out", str(new)]) == 0
    assert "note" not in capsys.readouterr().err
    assert main([*common, "--steps", "5", "--out", str(old)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["scorelab: note: --steps is now --sample-steps in `scorelab sample`; the old flag still works"]
    assert np.array_equal(np.load(new), np.load(old))
    assert main([*common, "--steps", "7", "--out", str(old)]) == 0  # the value is the old flag's, not a default
    assert not np.array_equal(np.load(new), np.load(old))


def test_vocode_names_its_steps_sample_steps():
    from scorelab.app.cli import build_parser

    args = build_parser("vocode").parse_args(["vocode", "R", "--input", "a.wav", "--out", "b.wav", "--sample-steps", "25"])
    assert args.sample_steps == 25
    with pytest.warns(FutureWarning, match="--steps is now --sample-steps in `scorelab vocode`"):
        args = build_parser("vocode").parse_args(["vocode", "R", "--input", "a.wav", "--out", "b.wav", "--steps", "50"])
    assert args.sample_steps == 50
    assert build_parser("vocode").parse_args(["vocode", "R", "--input", "a.wav", "--out", "b.wav"]).sample_steps == 6


def test_the_seed_conditional_model_is_condlinear_and_its_old_name_still_works():
    with pytest.warns(FutureWarning, match="'seed_conditional' is now called 'condlinear'"):
        config = sl.Config(model="seed_conditional")
    assert config.model.name == "condlinear"
    assert config == sl.Config(model="condlinear")
    # A run saved under the old name loads as the new one (tests/test_legacy.py samples it as it did then).
    with pytest.warns(FutureWarning):
        assert sl.load_run(V010 / "seed_conditional", device="cpu").config.model.name == "condlinear"
