"""The runs that ship (scorelab.pretrained): their files, their scores, and pretrained:NAME through the CLI and API.

Each shipped run's spot check (:mod:`scorelab.evaluation.spot_check`) at seed 0 must come within three standard
deviations of the value ``benchmarks/pretrain.py`` recorded for that seed, the deviation being the check's spread
over the recorded seeds: the metric's own noise at that sample size. A run whose weights, sampler or data changed
falls outside it; the same machine reproduces the recorded value exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, run_cli

import scorelab as sl
from scorelab import pretrained
from scorelab.core.errors import CheckpointError, ConfigError
from scorelab.evaluation.evaluate import evaluate_run
from scorelab.evaluation.spot_check import spot_check
from scorelab.runs.checkpoint import load_checkpoint, save_config

SHIPPED = pretrained.names()
MEGABYTE = 1e6
SMALL = "swiss_roll"  # the run that samples in a fraction of a second: the CLI's and API's tests use it


def test_the_runs_of_the_issue_ship():
    assert {"swiss_roll", "digits", "mnist", "speech"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_files_hash_to_their_record_and_sizes_keep_the_limits(name):
    record = pretrained.Provenance.read(name)
    assert record.changed_files() == []
    assert set(record.files) | {pretrained.PROVENANCE} == {path.name for path in (pretrained.ROOT / name).iterdir()}
    assert record.size <= 10 * MEGABYTE
    assert record.values["steps"] == load_checkpoint(pretrained.ROOT / name).step


def test_all_runs_together_keep_the_limit():
    assert sum(pretrained.Provenance.read(name).size for name in SHIPPED) <= 25 * MEGABYTE


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_spot_check_within_the_recorded_noise(name):
    check = pretrained.Provenance.read(name).values["spot_check"]
    value = spot_check(sl.load_run(pretrained.PREFIX + name, "cpu"), 0)
    assert abs(value - check["seed_0"]) <= 3 * check["std"], (value, check)


def test_a_shipped_run_loads_by_name_and_samples_reproducibly():
    run = sl.load_run(pretrained.PREFIX + SMALL, "cpu")
    assert run.run_dir == pretrained.ROOT / SMALL
    first, second = (run.sample(64, generator=torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(first, second) and torch.isfinite(first).all()


def test_a_name_that_does_not_ship_is_one_line():
    with pytest.raises(ConfigError, match="no pretrained run named 'nope'"):
        sl.load_run("pretrained:nope")


def test_a_file_of_a_run_resolves_by_name():
    assert pretrained.resolve("pretrained:digits/guide.safetensors") == pretrained.ROOT / "digits" / "guide.safetensors"
    assert pretrained.resolve("runs/x") == Path("runs/x")


def test_nothing_writes_into_a_shipped_run(tmp_path):
    run_dir = pretrained.ROOT / SMALL
    before = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    run = sl.load_run(run_dir, "cpu")
    with pytest.raises(ConfigError, match="read-only"):
        sl.train(run.config, run_dir, resume=True, progress=False)
    with pytest.raises(ConfigError, match="read-only"):
        save_config(run_dir, run.config)
    metrics = evaluate_run(run, n=200, repeats=1)
    assert metrics["w2"]["ratio"] > 0  # measured, returned, and not written
    assert before == {path.name: path.read_bytes() for path in run_dir.iterdir()}


def test_fine_tuning_starts_from_the_shipped_weights(tmp_path):
    """--init-from: one step at a vanishing learning rate leaves the EMA where the shipped run's is."""
    shipped = sl.load_run(pretrained.PREFIX + SMALL, "cpu")
    config = shipped.config.replace(steps=1, lr=1e-12, lr_schedule="constant", device="cpu")
    sl.train(config, tmp_path / "tuned", init_from=pretrained.PREFIX + SMALL, progress=False)
    tuned = sl.load_run(tmp_path / "tuned", "cpu")
    assert tuned.step == 1
    for (name, mine), theirs in zip(tuned.model.state_dict().items(), shipped.model.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-6, msg=name)


def test_fine_tuning_another_network_is_one_line(tmp_path):
    config = sl.load_run(pretrained.PREFIX + SMALL, "cpu").config.replace(hidden=16, steps=1, device="cpu")
    with pytest.raises(CheckpointError, match="do not fit the network"):
        sl.train(config, tmp_path / "tuned", init_from=pretrained.PREFIX + SMALL, progress=False)


def test_cli_lists_the_runs_with_scores_and_sizes(capsys):
    code, out, err = run_cli(capsys, "pretrained")
    assert code == 0, err
    for name in SHIPPED:
        assert f"pretrained:{name}  (" in out and " MB, " in out
    assert "W2 ratio" in out and "FD ratio" in out and "DNSMOS" in out


def test_cli_samples_and_fine_tunes_by_name(capsys, tmp_path):
    code, out, err = run_cli(capsys, "sample", f"pretrained:{SMALL}", "--n", 100, "--out", tmp_path / "s.npy")
    assert code == 0, err
    code, out, err = run_cli(capsys, "train", "--init-from", f"pretrained:{SMALL}", "--out", tmp_path / "tuned",
                             "--steps", 3, "--no-progress")
    assert code == 0, err
    assert sl.load_run(tmp_path / "tuned", "cpu").step == 3


def test_cli_evaluates_and_plots_into_a_copy(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "evaluate", f"pretrained:{SMALL}", "--n", 200, "--repeats", 1)
    assert code == 0, err
    copy = tmp_path / f"pretrained-{SMALL}"
    assert "read-only" in out and json.loads((copy / "metrics.json").read_text())["w2"]["n"] == 200
    code, out, err = run_cli(capsys, "plot", f"pretrained:{SMALL}", "--animate")  # the same copy, reused
    assert code == 0, err
    assert list(copy.glob("*.gif"))


def test_cli_refuses_a_copy_whose_place_is_taken(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"pretrained-{SMALL}").mkdir()
    (tmp_path / f"pretrained-{SMALL}" / "notes.txt").write_text("mine")
    code, out, err = run_cli(capsys, "evaluate", f"pretrained:{SMALL}", "--n", 200, "--repeats", 1)
    assert_clean_error(code, err, "is not a copy of pretrained:swiss_roll")
    assert (tmp_path / f"pretrained-{SMALL}" / "notes.txt").read_text() == "mine"


def test_a_copy_of_a_shipped_run_is_not_resumable(capsys, tmp_path):
    copy = shutil.copytree(pretrained.ROOT / SMALL, tmp_path / "copy")
    code, out, err = run_cli(capsys, "train", "--resume", "--out", copy, "--steps", 4000)
    assert_clean_error(code, err, "EMA weights only")
