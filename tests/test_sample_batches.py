"""Sampling in batches: per-sample seeds, samples streamed to disk, and huge requests refused up front."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli

import scorelab as sl
from scorelab.core.rng import PerSampleGenerator, derived_seed, randn
from scorelab.core.score import batch_invariant
from scorelab.runs.sample_io import SampleWriter, byte_size, duration, estimate, save_samples

TINY_UNET = {"channels": 8, "levels": 2, "res_blocks": 1, "attention": True, "steps": 2, "batch_size": 8,
             "checkpoint_every": 2, "log_every": 2, "seed": 3, "device": "cpu"}


# --- per-sample seeds -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8), (300,)])  # many draws per block, a few, one
def test_a_per_sample_generator_gives_each_row_its_own_stream(shape):
    whole = PerSampleGenerator(7, range(10))
    part = PerSampleGenerator(7, [3, 8])
    for _ in range(200):  # past several refills of every sample's block
        assert torch.equal(randn((10, *shape), whole)[[3, 8]], randn((2, *shape), part))
    other_seed = randn((10, *shape), PerSampleGenerator(8, range(10)))
    assert not torch.equal(other_seed, randn((10, *shape), whole))


def test_sample_seeds_differ_where_seed_plus_index_would_collide():
    assert derived_seed(0, 1) != derived_seed(1, 0)
    draws = torch.stack([randn((1, 4), PerSampleGenerator(seed, [index])) for seed, index in [(0, 1), (1, 0)]])
    assert not torch.equal(draws[0], draws[1])


def test_a_per_sample_generator_refuses_a_draw_of_another_batch():
    with pytest.raises(ValueError, match="a draw of 3 rows from a generator of 2 samples"):
        randn((3, 2), PerSampleGenerator(0, range(2)))


def test_batch_invariant_pads_to_whole_blocks_and_returns_the_batch_s_rows():
    calls = []

    def score(x, sigma):
        calls.append((x.shape[0], sigma.shape[0]))
        return x * sigma[:, None]

    x, sigma = torch.arange(10.0).reshape(5, 2), torch.arange(1.0, 6.0)
    assert torch.equal(batch_invariant(score)(x, sigma), x * sigma[:, None])
    assert calls == [(16, 16)]


@pytest.mark.parametrize("sampler", ["ald", "heun", "stochastic_heun"])
@pytest.mark.slow
def test_sample_i_of_a_2d_run_depends_on_seed_and_i_alone_whatever_the_batch(tiny_run, sampler):
    run = sl.load_run(tiny_run, "cpu")
    options = {"sampler": sampler} | ({} if sampler == "ald" else {"sample_steps": 5})
    whole = torch.cat(list(run.sample_batches(50, seed=4, **options)))
    for batch_size in (1, 7, 16, 33):
        assert torch.equal(torch.cat(list(run.sample_batches(50, seed=4, batch_size=batch_size, **options))), whole)
    assert torch.equal(torch.cat(list(run.sample_batches(20, seed=4, batch_size=6, **options))), whole[:20])
    shard = torch.cat(list(run.sample_batches(15, seed=4, first=30, batch_size=4, **options)))
    assert torch.equal(shard, whole[30:45])  # the rows a second process would draw
    assert not torch.equal(torch.cat(list(run.sample_batches(50, seed=5, **options))), whole)


@pytest.mark.slow
def test_sample_i_of_an_image_run_depends_on_seed_and_i_alone_whatever_the_batch(tmp_path):
    sl.train(sl.Config(dataset="digits", **TINY_UNET), tmp_path / "run", progress=False)
    run = sl.load_run(tmp_path / "run", "cpu")
    whole = torch.cat(list(run.sample_batches(12, seed=1, sample_steps=3)))
    for batch_size in (1, 5):
        assert torch.equal(torch.cat(list(run.sample_batches(12, seed=1, batch_size=batch_size, sample_steps=3))),
                           whole)


@pytest.mark.slow
def test_the_sample_command_writes_the_first_rows_of_a_larger_request_for_any_batch_size(tiny_run, tmp_path,
                                                                                          capsys):
    def sample(n, name, *flags):
        code, _, err = run_cli(capsys, "sample", tiny_run, "--n", n, "--seed", 2, "--out", tmp_path / name, *flags)
        assert code == 0, err
        return tmp_path / name

    whole = np.load(sample(30, "whole.npy"))
    assert whole.shape == (30, 2) and whole.dtype == np.float32
    assert np.array_equal(np.load(sample(12, "part.npy", "--batch-size", 5)), whole[:12])
    rows = np.loadtxt(sample(30, "whole.csv", "--batch-size", 4), delimiter=",", skiprows=1, dtype=np.float32)
    assert np.array_equal(rows, whole)  # "%.9g" keeps every float32 exactly
    assert not list(tmp_path.glob(".*.tmp"))


# --- writing as the samples come ----------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_samples_written_in_batches_read_back_as_the_whole(tmp_path, suffix):
    samples = torch.randn(23, 3, generator=torch.Generator().manual_seed(0))
    with SampleWriter(tmp_path / f"batched{suffix}", 23, (3,)) as out:
        for batch in samples.split(5):
            out.write(batch)
    save_samples(samples, tmp_path / f"whole{suffix}")
    assert (tmp_path / f"batched{suffix}").read_bytes() == (tmp_path / f"whole{suffix}").read_bytes()
    if suffix == ".npy":
        assert np.array_equal(np.load(tmp_path / "batched.npy"), samples.numpy())


def test_a_write_cut_short_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "samples.npy"
    target.write_bytes(b"the user's old samples")
    with pytest.raises(KeyboardInterrupt), SampleWriter(target, 10, (2,)) as out:
        out.write(torch.zeros(4, 2))
        raise KeyboardInterrupt
    with pytest.raises(ValueError, match="4 of 10 samples written"), SampleWriter(target, 10, (2,)) as out:
        out.write(torch.zeros(4, 2))
    assert target.read_bytes() == b"the user's old samples"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["samples.npy"]


@pytest.mark.slow
def test_a_request_that_cannot_fit_on_the_disk_is_refused_before_any_work(tiny_run, tmp_path, capsys, monkeypatch):
    import scorelab.runs.trained

    def never(*args, **kwargs):
        raise AssertionError("sampled although the file could not fit")

    monkeypatch.setattr(scorelab.runs.trained.TrainedRun, "sample", never)
    for name, need in [("huge.npy", "need 80,000.0 GB"), ("huge.csv", "need up to 320,000.0 GB")]:
        code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 10**13, "--out", tmp_path / name)
        assert_clean_error(code, err, need)
        assert "free; ask for fewer with --n" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_a_png_grid_of_more_images_than_it_can_show_is_refused():
    with pytest.raises(sl.errors.ConfigError, match="at most 10,000 images, asked for 10,001"):
        SampleWriter("grid.png", 10_001, (1, 8, 8), value_range=(0.0, 1.0))


@pytest.mark.slow
def test_an_allocation_that_fails_is_one_line(tiny_run, capsys, monkeypatch):
    import scorelab.runs.trained

    def out_of_memory(*args, **kwargs):
        return torch.empty(2**62, dtype=torch.uint8)  # the CPU allocator refuses at once

    monkeypatch.setattr(scorelab.runs.trained.TrainedRun, "sample", out_of_memory)
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 10, "--out", tiny_run / "s.npy")
    assert_clean_error(code, err, "out of memory")
    assert "can't allocate memory" in err and "--batch-size" in err
    assert not (tiny_run / "s.npy").exists()


# --- saying what a request costs before and while it runs ----------------------------------------

MOONS = Path(__file__).parent / "fixtures" / "v0_2_0" / "moons"  # a trained 2-D run: sampling needs no training
QUICK_ALD = ["--sampler", "ald", "--n-steps-each", 2, "--device", "cpu"]


def test_sample_says_up_front_how_many_rows_and_bytes_and_after_the_first_batch_how_long(tmp_path, capsys):
    out = tmp_path / "s.npy"
    code, stdout, err = run_cli(capsys, "sample", MOONS, "--n", 40, "--batch-size", 10, "--out", out,
                                "--no-progress", *QUICK_ALD)
    assert code == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 3, stdout
    assert lines[0] == f"writing 40 samples of shape (2,) (float32) to {out}: {out.stat().st_size} bytes"
    assert re.fullmatch(r"the first batch of 10 samples took [0-9.]+ s: all 40 take about [0-9.]+ s", lines[1])
    assert lines[2] == f"wrote 40 samples to {out}"
    assert err == ""  # --no-progress: no bar
    code, stdout, err = run_cli(capsys, "sample", MOONS, "--n", 10, "--out", tmp_path / "s.csv", *QUICK_ALD)
    assert code == 0, err
    plan, wrote = stdout.splitlines()  # one batch: nothing to estimate
    assert plan.startswith(f"writing 10 samples of shape (2,) as text to {tmp_path / 's.csv'}: at most ")
    assert int(plan.split("at most ")[1].split(" bytes")[0].replace(",", "")) >= (tmp_path / "s.csv").stat().st_size


def test_a_request_of_days_says_its_rows_and_bytes_before_the_first_sample(tmp_path, capsys, monkeypatch):
    import scorelab.runs.sample_io
    import scorelab.runs.trained

    monkeypatch.setattr(scorelab.runs.sample_io.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(
        10**13, 0, 10**13))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C during the first batch

    monkeypatch.setattr(scorelab.runs.trained.TrainedRun, "sample_rows", interrupted)
    code, stdout, err = run_cli(capsys, "sample", MOONS, "--n", 10**9, "--out", tmp_path / "big.npy", *QUICK_ALD)
    assert code == 130
    assert stdout == (f"writing 1,000,000,000 samples of shape (2,) (float32) to {tmp_path / 'big.npy'}: "
                      "8,000,000,128 bytes (8.0 GB)\n")
    assert list(tmp_path.iterdir()) == []


def test_the_estimate_counts_the_batches_each_process_makes_in_turn():
    assert estimate(10_000, 1.3, 10**9, 10_000) == ("the first batch of 10,000 samples took 1.3 s: all "
                                                    "1,000,000,000 take about 36.1 h")
    assert estimate(10_000, 1.3, 10**9, 10_000, workers=4).endswith("about 9.0 h")
    assert estimate(256, 30.0, 10**7, 256).endswith("about 13.6 days")
    assert [duration(s) for s in (0.04, 3.0, 45.0, 600.0, 7200.0)] == ["0.04 s", "3.0 s", "45 s", "10 min", "2.0 h"]
    assert [byte_size(b) for b in (812, 4_100, 8 * 10**9, 1.2e15)] == ["812 B", "4.1 kB", "8.0 GB", "1,200.0 TB"]
