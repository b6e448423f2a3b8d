"""The training loop: resume equals an uninterrupted run, divergence keeps the checkpoint."""

import csv
import dataclasses
import importlib
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

import scorelab as sl
from scorelab.objectives import OBJECTIVES

# `sl.train` is the function; scorelab.runs.training holds the loop and its internals.
train_module = importlib.import_module("scorelab.runs.training")


def weights(run_dir):
    return {k: v for k, v in load_file(run_dir / "model.safetensors").items() if k.startswith(("ema.", "model."))}


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.mark.slow
def test_run_directory_contents(tiny_run):
    for name in ("config.toml", "model.safetensors", "train_log.csv"):
        assert (tiny_run / name).is_file()
    saved = sl.Config.from_toml(tiny_run / "config.toml")
    assert saved == tiny_config(sigma_max=saved.process.sigma_max)  # sigma_max = 0 is resolved from the data
    with open(tiny_run / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_resume_after_interruption_equals_uninterrupted(tmp_path, monkeypatch):
    config = tiny_config()
    sl.train(config, tmp_path / "full", progress=False)

    real_save = train_module._save

    def save_then_die(run_dir, step, *args):
        real_save(run_dir, step, *args)
        if step == 20:
            raise Interrupt  # as if the process were killed right after the checkpoint

    monkeypatch.setattr(train_module, "_save", save_then_die)
    with pytest.raises(Interrupt):
        sl.train(config, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(train_module, "_save", real_save)
    assert sl.load_run(tmp_path / "resumed").step == 20
    sl.train(config, tmp_path / "resumed", resume=True, progress=False)
    assert_same_weights(tmp_path / "full", tmp_path / "resumed")
    with open(tmp_path / "resumed" / "train_log.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [10, 20, 30, 40]


def _steps_and_losses(run_dir):
    with open(run_dir / "train_log.csv") as handle:
        return [(row["step"], row["loss"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_resume_after_sigkills_at_seeded_random_moments_equals_uninterrupted(tmp_path):
    """Kill a real `scorelab train` process three times at seeded random moments (a checkpoint write may be
    among them), resume it each time, and compare with an uninterrupted run: the same weights, the same steps
    and losses in the log, and no temporary file left behind."""
    moments = random.Random(27)
    # Three kills at most 0.5 s after a checkpoint each: about 1100 steps on an Intel Xeon with AVX-512 (1000 were not
    # enough for the third kill to land mid-run there).
    steps = 3000
    flags = ["--n-data", "512", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--n-levels", "4",
             "--seed", "5", "--device", "cpu", "--steps", str(steps), "--checkpoint-every", "25", "--no-progress"]
    command = [sys.executable, "-m", "scorelab.app.cli", "train", *flags, "--out", str(tmp_path / "killed")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    checkpoint = tmp_path / "killed" / "model.safetensors"
    steps_at_kills = []
    for kill in range(3):
        written = checkpoint.stat().st_mtime_ns if checkpoint.exists() else None
        process = subprocess.Popen([*command, *(["--resume"] if kill else [])], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # Wait for this process's first checkpoint, so that the kill lands while it trains, then a seeded moment.
        while (not checkpoint.exists() or checkpoint.stat().st_mtime_ns == written) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(moments.uniform(0.0, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        steps_at_kills.append(sl.load_run(tmp_path / "killed").step)
    assert all(0 < step < steps for step in steps_at_kills), f"a kill did not land mid-run: {steps_at_kills}"
    subprocess.run([*command, "--resume"], env=env, check=True, capture_output=True)
    full = [arg if arg != str(tmp_path / "killed") else str(tmp_path / "full") for arg in command]
    subprocess.run(full, env=env, check=True, capture_output=True)
    assert_same_weights(tmp_path / "full", tmp_path / "killed")
    assert _steps_and_losses(tmp_path / "killed") == _steps_and_losses(tmp_path / "full")
    assert not list((tmp_path / "killed").glob("*.tmp"))


@pytest.mark.slow
def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny_config()
    sl.train(config, tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()

    def diverge(model, batch, cond, process, settings, generator, context=None):
        return (model(batch, process.training_sigma(len(batch), batch, generator)) * float("nan")).sum()

    part = OBJECTIVES["annealed_dsm"]
    monkeypatch.setitem(OBJECTIVES._parts, "annealed_dsm", dataclasses.replace(part, loss=diverge))
    with pytest.raises(sl.errors.TrainingDiverged, match="diverged at step 1.*kept"):
        sl.train(config, tmp_path / "run", overwrite=True, progress=False)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_refuses_to_overwrite_a_trained_run(tiny_run):
    with pytest.raises(sl.errors.CheckpointError, match="already holds a trained model"):
        sl.train(tiny_config(), tiny_run, progress=False)


@pytest.mark.slow
def test_same_seed_same_weights_and_samples(tmp_path):
    for name in ("a", "b"):
        sl.train(tiny_config(), tmp_path / name, progress=False)
    assert_same_weights(tmp_path / "a", tmp_path / "b")
    samples = [sl.load_run(tmp_path / name).sample(100, generator=torch.Generator().manual_seed(0))
               for name in ("a", "b")]
    assert torch.equal(*samples)


@pytest.mark.slow
def test_standardize_maps_samples_back(tmp_path):
    config = tiny_config(standardize=True, dataset="swiss_roll")
    sl.train(config, tmp_path / "run", progress=False)
    run = sl.load_run(tmp_path / "run")
    data = train_module.training_data(config)
    torch.testing.assert_close(run.normalisation.shift, data.mean(0))
    torch.testing.assert_close(run.normalisation.to_data(run.normalisation.to_model(data)), data)


@pytest.mark.slow
def test_sigma_max_zero_takes_the_largest_pairwise_distance_and_saves_it(tiny_run):
    config = sl.Config.from_toml(tiny_run / "config.toml")
    data = sl.data.load("swiss_roll", 512, generator=torch.Generator().manual_seed(3))
    expected = torch.cdist(data.double(), data.double()).max().item()
    assert tiny_config().process.sigma_max == 0.0
    assert config.process.sigma_max == pytest.approx(expected, abs=1e-4)
    assert sl.load_run(tiny_run).sigmas[0].item() == pytest.approx(expected, abs=1e-4)


def test_learning_rate_schedules():
    from scorelab.runs.training import learning_rate

    cosine = tiny_config(lr=0.01, steps=100).optim
    rates = [learning_rate(cosine, step) for step in range(1, 101)]
    assert rates[0] == pytest.approx(0.01)
    assert rates[50] == pytest.approx(0.005)
    assert all(a > b > 0 for a, b in zip(rates, rates[1:]))
    constant = dataclasses.replace(cosine, lr_schedule="constant")
    assert {learning_rate(constant, step) for step in range(1, 101)} == {0.01}


@pytest.mark.parametrize("objective, variance_reduction", [("sliced", False), ("sliced_vr", True)])
def test_sliced_objectives_use_the_configured_projections(objective, variance_reduction):
    config = tiny_config(objective=objective, n_projections=3, projection="sphere")
    model = sl.models.MLP(2, 16)
    batch = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    process = train_module.build_process(config.replace(sigma_max=1.0))

    def loss(settings):
        return OBJECTIVES[objective].loss(model, batch, None, process, settings, torch.Generator().manual_seed(1))

    expected = sl.objectives.sliced_score_matching(model, batch, n_projections=3, projection="sphere",
                                                   variance_reduction=variance_reduction,
                                                   generator=torch.Generator().manual_seed(1))
    one_projection = loss(config.replace(n_projections=1).objective.settings)
    assert loss(config.objective.settings).item() == expected.item() != one_projection.item()


@pytest.mark.slow
def test_n_levels_zero_applies_the_gamma_criterion_and_saves_the_number(tmp_path):
    path = tmp_path / "six_d.npy"
    np.save(path, np.random.default_rng(0).standard_normal((300, 6)).astype(np.float32))
    result = sl.train(tiny_config(dataset=str(path), n_levels=0, sigma_min=0.1), tmp_path / "run", progress=False)
    saved = sl.Config.from_toml(result.run_dir / "config.toml").process
    assert saved.n_levels == sl.noise.n_levels_from_gamma(saved.sigma_max, 0.1, 6) > 1
    assert len(sl.load_run(result.run_dir, device="cpu").sigmas) == saved.n_levels
