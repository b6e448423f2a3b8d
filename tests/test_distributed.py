"""Data-parallel training and sharded sampling, on 2 gloo processes of this machine, through torchrun."""

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, tiny_config
from safetensors.torch import load_file

import scorelab as sl

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")

HARNESS = str(Path(__file__).with_name("distributed_harness.py"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FLAGS = ["--n-data", "512", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--n-levels", "4", "--seed", "5",
         "--steps", "30", "--checkpoint-every", "10", "--log-every", "10", "--device", "cpu", "--no-progress"]


def launch(*argv, timeout=300):
    """A process of ``argv`` (after ``python``), its output captured; it must end within ``timeout`` s."""
    return subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, env=ENV, timeout=timeout)


def torchrun(*argv, nproc=2, timeout=300):
    return launch("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", nproc, *argv, timeout=timeout)


def weights(run_dir):
    return {key: value for key, value in load_file(run_dir / "model.safetensors").items()
            if key.startswith(("model.", "ema."))}


def logged(run_dir):
    with open(run_dir / "train_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_two_ranks_of_half_a_batch_follow_one_process_of_the_whole_batch(tmp_path):
    """The harness feeds both runs the same rows: step t's rows are a function of t alone, and rank r of
    W takes the r-th slice of them. Exact score matching draws no noise, so the rows are all there is."""
    config = tiny_config(objective="exact", steps=12, batch_size=32, checkpoint_every=6, log_every=3)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    one = launch(HARNESS, "rows", tmp_path / "config.json", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = torchrun(HARNESS, "rows", tmp_path / "config.json", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    whole, halves = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert whole.keys() == halves.keys()
    for key in whole:
        torch.testing.assert_close(halves[key], whole[key], rtol=1e-5, atol=1e-6, msg=key)
    losses = [[float(row["loss"]) for row in logged(tmp_path / run)] for run in ("one", "two")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)  # the logged loss is the mean over the ranks
    assert len(losses[0]) == 4 and losses[0][-1] < losses[0][0]  # 12 steps of training, not a start compared


@pytest.mark.slow
def test_the_higher_order_objectives_get_the_mean_gradient_through_ddp_and_train(tmp_path):
    """Exact and sliced score matching differentiate the score in x, and the energy model's score is itself a
    gradient: each reaches DDP through out-of-place ``autograd.grad``, and each rank's averaged gradient equals
    the mean of the ranks' gradients computed without DDP."""
    result = torchrun(HARNESS, "gradients", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ok", "exact", "ok", "sliced", "ok", "energy"]


@pytest.mark.slow
def test_a_rank_that_raises_brings_the_job_down_with_its_one_line_message(tmp_path):
    result = torchrun(HARNESS, "fail", tmp_path / "run", timeout=120)  # a hang would time out
    assert result.returncode != 0
    assert "scorelab: error: rank 1: an injected fault at step 3\n" in result.stderr
    assert "[rank0]: Traceback" not in result.stderr and "[rank1]: Traceback" not in result.stderr


@pytest.mark.slow
def test_a_nan_on_any_rank_stops_every_rank_and_keeps_the_last_good_checkpoint(tmp_path):
    rows = np.random.default_rng(0).normal(size=(512, 2))
    rows[100] = 1e30  # finite, but its loss is not: drawn by whichever rank, at some step past the first checkpoint
    np.savetxt(tmp_path / "data.csv", rows, delimiter=",")
    result = launch("-m", "scorelab", "train", "--nproc", 2, "--dataset", tmp_path / "data.csv", "--out",
                    tmp_path / "run", *FLAGS[2:], "--model", "noise_conditional", "--sigma-max", 3, "--steps", 200,
                    "--checkpoint-every", 2,
                    timeout=240)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("scorelab: error: training diverged at step ") and "is kept" in lines[0]
    diverged_at = int(lines[0].split("at step ")[1].split()[0])
    assert 0 < sl.load_run(tmp_path / "run", "cpu").step < diverged_at


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_what_two_processes_of_one_machine_do_and_resume_on_one(tmp_path):
    """Two torchrun launches of one process each, joined by a c10d rendezvous on 127.0.0.1, as two machines
    would be; then the run resumes in a single process, which takes the world size change as a new stream."""
    train = ["-m", "scorelab", "--", "train", "--out", tmp_path / "nodes", *FLAGS]
    rendezvous = ["-m", "torch.distributed.run", "--nnodes", 2, "--nproc-per-node", 1, "--rdzv-backend", "c10d",
                  "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--rdzv-id", "scorelab-test"]
    nodes = [subprocess.Popen([sys.executable, *map(str, rendezvous + train)], env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    one_machine = launch("-m", "scorelab", "train", "--nproc", 2, "--out", tmp_path / "machine", *FLAGS)
    assert one_machine.returncode == 0, one_machine.stderr
    nodes_weights, machine_weights = weights(tmp_path / "nodes"), weights(tmp_path / "machine")
    assert all(torch.equal(nodes_weights[key], machine_weights[key]) for key in machine_weights)

    config = sl.Config.from_toml(tmp_path / "nodes" / "config.toml")
    result = sl.train(config.replace(steps=40), tmp_path / "nodes", resume=True, progress=False)
    assert result.changes == {"steps": (30, 40), "world_size": (2, 1)}
    assert [row["note"] for row in logged(tmp_path / "nodes") if row["note"]] == [
        "resumed: steps 30 -> 40; world_size 2 -> 1"]
    assert sl.load_run(tmp_path / "nodes", "cpu").step == 40


@pytest.mark.slow
def test_sampling_on_two_processes_writes_the_samples_of_one(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 30, "--batch-size", 4, "--out", tmp_path / "one.npy")
    assert code == 0, err
    result = torchrun("-m", "scorelab", "--", "sample", tiny_run, "--n", 30, "--batch-size", 4, "--out",
                      tmp_path / "two.npy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("wrote 30 samples") == 1  # rank 0 writes, and says so
    assert np.array_equal(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"))


@pytest.mark.slow
def test_nproc_refuses_what_cannot_split_and_a_launch_inside_torchrun(tmp_path, capsys, monkeypatch):
    result = launch("-m", "scorelab", "train", "--nproc", 2, "--out", tmp_path / "run", *FLAGS, "--batch-size", 63)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines == [
        "scorelab: error: batch_size = 63 does not split over 2 processes; use a multiple of 2"], result.stderr
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(capsys, "train", "--nproc", 2, "--out", tmp_path / "run", *FLAGS)
    assert code == 2 and "under torchrun, leave it out" in err
