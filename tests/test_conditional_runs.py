"""Class-conditional runs: label dropout, guided sampling through a run, the guide kept by training, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli, tiny_config

import scorelab as sl
from scorelab.core.errors import ConfigError
from scorelab.core.guidance import NULL_LABEL, GuidedScore
from scorelab.runs.training import GUIDE_NAME, dropped_labels
from scorelab.runs.trained import TrainedRun


@pytest.mark.parametrize("dropout", [0.1, 0.5])
def test_label_dropout_sees_the_null_class_at_the_requested_rate(dropout):
    n = 20_000
    labels = torch.arange(n) % 7
    dropped = dropped_labels(labels, dropout, torch.Generator().manual_seed(11))
    nulls = int((dropped == NULL_LABEL).sum())
    assert abs(nulls - n * dropout) <= 3 * (n * dropout * (1 - dropout)) ** 0.5
    kept = dropped != NULL_LABEL
    assert torch.equal(dropped[kept], labels[kept])


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    """A tiny class-conditional flow-matching run on 8gaussians, with its guide kept at step 20."""
    run_dir = tmp_path_factory.mktemp("conditional") / "run"
    config = tiny_config(dataset="8gaussians", model="edm", conditional=True, keep_guide_at=20, steps=40)
    sl.train(config, run_dir, progress=False)
    return run_dir


def test_a_conditional_run_learns_its_classes_and_keeps_its_guide(conditional_run):
    run = TrainedRun.load(conditional_run, "cpu")
    assert run.classes == 8 and run.config.data.label_dropout == 0.1
    guide = TrainedRun.load(conditional_run / GUIDE_NAME, "cpu")
    assert guide.step == 20 and run.step == 40
    assert not torch.equal(next(guide.model.parameters()), next(run.model.parameters()))


def test_a_guided_run_samples_through_one_guided_score(conditional_run):
    run = TrainedRun.load(conditional_run, "cpu")
    _, settings = run.sampler_settings(None, guidance=3.0, guidance_interval="0.1,5.0")
    score = run.guided_model(settings)
    assert isinstance(score, GuidedScore) and score.weight == 3.0 and score.interval == (0.1, 5.0)
    _, plain = run.sampler_settings(None)
    assert plain.guidance == 1.0
    unguided = run.sample(16, generator=torch.Generator().manual_seed(0), cond=2)
    same = run.sample(16, generator=torch.Generator().manual_seed(0), cond=2, guidance=1.0)
    guided = run.sample(16, generator=torch.Generator().manual_seed(0), cond=2, guidance=3.0)
    assert torch.equal(unguided, same) and not torch.equal(unguided, guided)


def test_sample_i_depends_on_its_seed_class_and_guidance_alone(conditional_run):
    run = TrainedRun.load(conditional_run, "cpu")
    labels = torch.tensor([0, 3, 3, 5, 1, 7, 2])
    whole = torch.cat(list(run.sample_batches(7, seed=4, cond=labels, guidance=2.0, batch_size=3)))
    for index, label in enumerate(labels.tolist()):
        alone = next(run.sample_batches(1, seed=4, first=index, cond=label, guidance=2.0))
        assert torch.equal(whole[index], alone[0])
    grid = run.class_grid_rows(0, 16, seed=4, per_class=2, guidance=2.0)
    threes = torch.cat(list(run.sample_batches(2, seed=4, cond=3, guidance=2.0)))
    assert torch.equal(grid[6:8], threes)


def test_autoguidance_with_the_kept_guide(conditional_run):
    run = TrainedRun.load(conditional_run, "cpu")
    guide = str(conditional_run / GUIDE_NAME)
    auto = run.sample(32, generator=torch.Generator().manual_seed(1), guide=guide, guidance=2.0)
    plain = run.sample(32, generator=torch.Generator().manual_seed(1))
    assert auto.shape == plain.shape and torch.isfinite(auto).all() and not torch.equal(auto, plain)


def test_the_cli_samples_a_class_and_a_grid_of_every_class(conditional_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "sample", conditional_run, "--n", 5, "--class", 3, "--guidance", 2,
                             "--guidance-interval", 0.2, 4, "--out", tmp_path / "threes.npy")
    assert code in (None, 0), err
    threes = np.load(tmp_path / "threes.npy")
    code, out, err = run_cli(capsys, "sample", conditional_run, "--n", 5, "--class", "all", "--guidance", 2,
                             "--guidance-interval", 0.2, 4, "--out", tmp_path / "all.npy")
    assert code in (None, 0), err
    grid = np.load(tmp_path / "all.npy")
    assert grid.shape == (40, 2) and np.array_equal(grid[15:20], threes)


def test_without_a_class_a_conditional_run_draws_its_classes_in_turn(conditional_run, tmp_path, capsys):
    run = TrainedRun.load(conditional_run, "cpu")
    in_turn = torch.arange(13) % run.classes
    expected = torch.cat(list(run.sample_batches(13, seed=2, batch_size=13, cond=in_turn)))
    assert torch.equal(torch.cat(list(run.sample_batches(13, seed=2, batch_size=4))), expected)
    assert torch.equal(torch.cat(list(run.sample_batches(5, seed=2, first=8))), expected[8:])  # a shard: i mod K
    assert torch.equal(run.sample(13, generator=torch.Generator().manual_seed(0)),
                       run.sample(13, generator=torch.Generator().manual_seed(0), cond=in_turn))
    code, _, err = run_cli(capsys, "sample", conditional_run, "--n", 13, "--seed", 2, "--out", tmp_path / "s.npy")
    assert code in (None, 0), err
    assert np.array_equal(np.load(tmp_path / "s.npy"), expected.numpy())
    code, _, err = run_cli(capsys, "sample", conditional_run, "--n", 13, "--seed", 2, "--class", "none",
                           "--out", tmp_path / "none.npy")
    assert code in (None, 0), err
    unconditional = torch.cat(list(run.sample_batches(13, seed=2, cond=NULL_LABEL)))
    assert np.array_equal(np.load(tmp_path / "none.npy"), unconditional.numpy())


@pytest.mark.parametrize("argv, message", [
    (["--class", "9"], "--class must be an integer in [0, 8)"),
    (["--class", "two"], "--class must be an integer in [0, 8)"),
    (["--guidance-interval", "5", "1"], "0 <= LO < HI"),
    (["--guidance", "-1"], "guidance must be >= 0"),
    (["--guide", "no/such/run"], "no such run directory"),
])
def test_bad_guidance_flags_are_one_line(conditional_run, tmp_path, capsys, argv, message):
    out = tmp_path / "x.npy"
    code, _, err = run_cli(capsys, "sample", conditional_run, "--n", 4, "--out", out, *argv)
    assert_clean_error(code, err, message)
    assert not out.exists()


def test_guidance_needs_classes_or_a_guide(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 4, "--guidance", 2, "--out", tmp_path / "x.npy")
    assert_clean_error(code, err, "guidance needs a class-conditional run")
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 4, "--class", 1, "--out", tmp_path / "x.npy")
    assert_clean_error(code, err, "--class needs a class-conditional run")


def test_a_guide_of_other_data_is_refused(conditional_run, tiny_run):
    run = TrainedRun.load(conditional_run, "cpu")
    with pytest.raises(ConfigError, match="autoguidance needs a weaker model of the same data"):
        run.sample(4, guide=str(tiny_run), guidance=2.0)


def test_keep_guide_at_must_come_before_the_end(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--dataset", "moons", "--steps", 10, "--keep-guide-at", 10,
                           "--out", tmp_path / "run")
    assert_clean_error(code, err, "keep_guide_at = 10 must be below steps = 10")


def test_the_stable_target_of_a_class_averages_over_its_own_references_only():
    from scorelab.objectives.denoising import same_class, stable_target

    generator = torch.Generator().manual_seed(12)
    x = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    sigma = torch.full((6,), 2.0, dtype=torch.float64)
    z = torch.randn(6, 2, generator=generator, dtype=torch.float64)
    noisy = x + 2.0 * z
    reference = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    labels, reference_labels = torch.tensor([0, 1, NULL_LABEL, 0, 1, 0]), torch.tensor([1, 1, 1, 2, 2])
    allowed = same_class(labels, reference_labels)
    target = stable_target(noisy, x, sigma, reference, allowed)
    # Class 0 has no reference: its target is Vincent's −z; the null class's is the target over every reference.
    assert torch.allclose(target[labels == 0], -z[labels == 0])
    assert torch.allclose(target[2], stable_target(noisy, x, sigma, reference)[2])
    assert torch.allclose(target[1], stable_target(noisy[1:2], x[1:2], sigma[1:2], reference[:3])[0])


def test_a_conditional_ncsn_trains_with_its_stable_target(tmp_path):
    config = tiny_config(dataset="moons", conditional=True, reference_size=16)
    sl.train(config, tmp_path / "run", progress=False)
    run = TrainedRun.load(tmp_path / "run", "cpu")
    assert run.classes == 2 and torch.isfinite(run.sample(8, cond=1, generator=torch.Generator().manual_seed(0))).all()


def test_images_are_guided_by_the_measured_default_and_points_are_not():
    from scorelab.data.sources import IMAGE_GUIDANCE

    assert sl.Config(dataset="digits").sampler.guidance == IMAGE_GUIDANCE != 1.0
    assert sl.Config(dataset="moons").sampler.guidance == 1.0
    assert sl.Config(dataset="digits", guidance=3.0).sampler.guidance == 3.0


@pytest.mark.slow
def test_a_conditional_image_run_is_evaluated_per_class_and_drawn_a_row_per_class(tmp_path, capsys):
    import json

    from PIL import Image

    run_dir = tmp_path / "digits"
    sl.train(sl.Config(dataset="digits", conditional=True, channels=8, res_blocks=1, steps=6, batch_size=32,
                       checkpoint_every=3, log_every=3, sample_steps=5, seed=3, device="cpu"), run_dir, progress=False)
    code, out, err = run_cli(capsys, "evaluate", run_dir, "--n", 400, "--guidance", 2,
                             "--guidance-interval", 0.3, 5)
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())["images"]
    assert metrics["guidance"] == {"weight": 2.0, "interval": "0.3,5.0", "guide": ""}
    rows = metrics["per_class"]
    assert [row["class"] for row in rows] == list(range(10)) and all(row["n"] == 40 for row in rows)
    # The overall agreement is the mean of the classes', each over its 40 samples.
    assert metrics["agreement"] == pytest.approx(sum(row["agreement"] for row in rows) / 10)
    assert all(row["fd"]["ratio"] > 0 for row in rows) and "per class" in out and "agreement" in out
    code, out, err = run_cli(capsys, "sample", run_dir, "--class", "all", "--n", 3, "--out", tmp_path / "grid.png")
    assert code == 0, err
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3 * 9 + 1, 10 * 9 + 1)  # 3 columns and 10 rows of 8×8 images, 1 pixel apart
