"""Run directories under faults: one writer at a time, crash leftovers cleaned, failed writes lose nothing."""

import hashlib
import os
import subprocess
import sys
import time

import pytest
from conftest import assert_clean_error, run_cli

import scorelab as sl
from scorelab.core.atomic import remove_temporaries, write_atomic
from scorelab.core.errors import ScorelabError
from scorelab.runs.lock import LOCK_NAME, RunDirectoryBusy, run_lock

FLAGS = ["--n-data", "512", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--n-levels", "4",
         "--seed", "5", "--device", "cpu", "--no-progress"]


def hashes(directory):
    """Every file's hash but the lock's, which holds the pid of its last holder."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in directory.iterdir()
            if path.is_file() and path.name != LOCK_NAME}


@pytest.mark.slow
def test_a_second_writer_is_refused_with_one_line_naming_the_holder(tiny_run, capsys):
    before = hashes(tiny_run)
    with run_lock(tiny_run):
        code, _, err = run_cli(capsys, "train", "--out", tiny_run, "--overwrite", "--steps", 5, *FLAGS)
        assert_clean_error(code, err, f"is being written by process {os.getpid()}")
        with pytest.raises(RunDirectoryBusy):
            sl.train(sl.Config.from_toml(tiny_run / "config.toml"), tiny_run, resume=True, progress=False)
    assert hashes(tiny_run) == before  # the refused writers changed nothing
    with run_lock(tiny_run):  # the kernel released the first lock when its file closed
        pass


@pytest.mark.slow
def test_two_concurrent_trainings_into_one_directory_one_proceeds(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "scorelab.app.cli", "train", "--out", str(run_dir), "--steps", "800",
                              "--checkpoint-every", "50", *FLAGS], env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run_dir / "model.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    code, _, err = run_cli(capsys, "train", "--out", run_dir, "--overwrite", "--steps", 5, "--hidden", "16",
                           *FLAGS[:4], *FLAGS[6:])
    running = first.poll() is None
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert running, "the second writer must arrive while the first still trains for this test to mean anything"
    assert_clean_error(code, err, f"is being written by process {first.pid}")
    run = sl.load_run(run_dir, "cpu")  # consistent: the first run's config, weights and log, all of it
    assert run.step == 800 and run.config.model.settings.hidden == 32
    assert not list(run_dir.glob(".*.tmp"))


@pytest.mark.slow
def test_the_next_writer_removes_the_temporaries_of_a_killed_one(tiny_run):
    stale = [tiny_run / ".model.safetensors.k3_x9a2b.tmp", tiny_run / ".train_log.csv.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = [tiny_run / "notes.tmp", tiny_run / ".notes.tmp"]  # not named as write_atomic names its temporaries
    for path in kept:
        path.write_text("the user's")
    sl.train(sl.Config.from_toml(tiny_run / "config.toml").replace(steps=60), tiny_run, resume=True, progress=False)
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert sl.load_run(tiny_run).step == 60


def test_remove_temporaries_reports_what_it_removed(tmp_path):
    (tmp_path / ".a.csv.12345678.tmp").write_text("x")
    (tmp_path / "a.csv").write_text("kept")
    assert [path.name for path in remove_temporaries(tmp_path)] == [".a.csv.12345678.tmp"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.csv"]


def test_a_run_that_fails_before_writing_leaves_no_directory(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n3,oops\n")  # found when the data load, inside the training's lock
    code, _, err = run_cli(capsys, "train", "--dataset", bad, "--out", tmp_path / "new", "--steps", 5,
                           "--device", "cpu", "--no-progress")
    assert_clean_error(code, err, "non-numeric cell 'oops'")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
@pytest.mark.slow
def test_a_write_past_the_file_size_limit_keeps_every_file_of_the_run_and_names_the_file(tiny_run):
    """RLIMIT_FSIZE below the checkpoint's size in a child process, as a full disk would be."""
    import resource

    size = (tiny_run / "model.safetensors").stat().st_size
    assert size > 4 * 4096, "the limit must fall between the small files and the checkpoint"
    before = hashes(tiny_run)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    child = subprocess.run([sys.executable, "-m", "scorelab.app.cli", "train", "--out", str(tiny_run), "--resume",
                            "--steps", "60", "--no-progress"], preexec_fn=limit_file_size, capture_output=True,
                           text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    lines = child.stderr.strip().splitlines()
    assert child.returncode == 2 and len(lines) == 1, child.stderr
    assert str(tiny_run / "model.safetensors") in lines[0] and "File too large" in lines[0]
    assert hashes(tiny_run) == before  # every file as it was (config.toml and the log too), no temporaries
    assert sl.load_run(tiny_run).step == 40  # and the run still loads and resumes from its checkpoint
    sl.train(sl.Config.from_toml(tiny_run / "config.toml").replace(steps=60), tiny_run, resume=True, progress=False)
    assert sl.load_run(tiny_run).step == 60


@pytest.mark.slow
def test_the_checkpoint_carries_the_log_so_a_log_file_left_behind_by_a_failed_write_is_rewritten(tiny_run):
    """The checkpoint is written before the log beside it: a log write that then fails loses no row."""
    log = tiny_run / "train_log.csv"
    log.write_text(log.read_text().splitlines()[0] + "\n")  # the header alone: the old log of a failed write
    sl.train(sl.Config.from_toml(tiny_run / "config.toml").replace(steps=60), tiny_run, resume=True, progress=False)
    assert [int(row["step"]) for row in log_rows(tiny_run) if not row["note"]] == [10, 20, 30, 40, 50, 60]


def test_write_atomic_names_the_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "kept.txt"
    target.write_text("old")

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(ScorelabError, match=f"cannot write {target}: No space left on device"):
        write_atomic(target, b"new")
    assert target.read_text() == "old" and sorted(path.name for path in tmp_path.iterdir()) == ["kept.txt"]


@pytest.mark.slow
def test_sample_creates_missing_parents_and_refuses_an_unwritable_path_before_sampling(tiny_run, tmp_path, capsys,
                                                                                         monkeypatch):
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 10, "--out", tmp_path / "new" / "deeper" / "s.npy")
    assert code == 0, err
    assert (tmp_path / "new" / "deeper" / "s.npy").is_file()
    (tmp_path / "a_file").write_text("not a directory")

    def no_sampling(*args, **kwargs):
        raise AssertionError("the path must be refused before sampling")

    monkeypatch.setattr(sl.TrainedRun, "sample", no_sampling)
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 10, "--out", tmp_path / "a_file" / "s.npy")
    assert_clean_error(code, err, "is not a writable directory")


@pytest.mark.slow
def test_resuming_a_finished_run_says_there_is_nothing_to_do(tiny_run, capsys):
    before = hashes(tiny_run)
    code, out, err = run_cli(capsys, "train", "--out", tiny_run, "--resume", "--no-progress")
    assert code == 0, err
    assert "already trained to 40 steps; nothing to do" in out and "nan" not in out
    assert hashes(tiny_run)["model.safetensors"] == before["model.safetensors"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX here")
@pytest.mark.slow
def test_sigint_ends_with_130_one_line_and_a_resumable_run(tmp_path):
    import signal

    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "scorelab.app.cli", "train", "--out", str(run_dir), "--steps", "3000",
               "--checkpoint-every", "25", *FLAGS]
    # A shell's background job ignores SIGINT, and a child inherits that (Python then installs no
    # handler): give the child the default disposition, whatever launched the suite.
    child = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (run_dir / "model.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 130
    assert err.strip().splitlines() == ["scorelab: interrupted; the last checkpoint written is intact"]
    step = sl.load_run(run_dir).step
    assert 0 < step < 3000, "the interrupt must land mid-run for this test to mean anything"
    resumed = subprocess.run([*command, "--resume", "--steps", str(step + 25)], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert sl.load_run(run_dir).step == step + 25


# --- resume honours what the user says --------------------------------------------------------


def log_rows(run_dir):
    import csv

    with open(run_dir / "train_log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_resume_applies_a_new_learning_rate_and_records_it(tiny_run, capsys):
    code, out, err = run_cli(capsys, "train", "--out", tiny_run, "--resume", "--steps", 60, "--lr", 0.5,
                             "--no-progress")
    assert code == 0, err
    assert "resumed from step 40 with steps 40 -> 60, lr 0.01 -> 0.5" in out
    saved = sl.Config.from_toml(tiny_run / "config.toml")
    assert (saved.optim.lr, saved.optim.steps) == (0.5, 60)
    notes = [row for row in log_rows(tiny_run) if row["note"]]
    assert [(row["step"], row["note"]) for row in notes] == [("40", "resumed: steps 40 -> 60; lr 0.01 -> 0.5")]
    assert [int(row["step"]) for row in log_rows(tiny_run) if not row["note"]] == [10, 20, 30, 40, 50, 60]


@pytest.mark.slow
def test_resume_refuses_a_change_to_the_model_and_changes_nothing(tiny_run, capsys):
    before = hashes(tiny_run)
    code, _, err = run_cli(capsys, "train", "--out", tiny_run, "--resume", "--steps", 60, "--hidden", 64,
                           "--no-progress")
    assert_clean_error(code, err, "hidden cannot change on resume (the run has 32, asked for 64")
    assert hashes(tiny_run) == before


@pytest.mark.slow
def test_an_edited_config_toml_is_applied_or_refused_never_overwritten(tiny_run, capsys):
    path = tiny_run / "config.toml"
    original = path.read_text()
    path.write_text(original.replace("hidden = 32", "hidden = 48"))
    edited = path.read_text()
    assert edited != original
    code, _, err = run_cli(capsys, "train", "--out", tiny_run, "--resume", "--steps", 60, "--no-progress")
    assert_clean_error(code, err, "hidden cannot change on resume (the run has 32, asked for 48")
    assert path.read_text() == edited  # reported, not silently rewritten from the checkpoint
    path.write_text(original.replace("lr = 0.01", "lr = 0.02"))
    code, out, err = run_cli(capsys, "train", "--out", tiny_run, "--resume", "--steps", 60, "--no-progress")
    assert code == 0, err
    assert "lr 0.01 -> 0.02" in out
    assert sl.Config.from_toml(path).optim.lr == 0.02


@pytest.mark.slow
def test_resume_refuses_to_shorten_a_run_and_a_new_dataset(tiny_run):
    saved = sl.Config.from_toml(tiny_run / "config.toml")
    with pytest.raises(sl.errors.ConfigError, match="below the checkpoint's step 40"):
        sl.train(saved.replace(steps=30), tiny_run, resume=True, progress=False)
    with pytest.raises(sl.errors.ConfigError, match="dataset cannot change on resume"):
        sl.train(saved.replace(dataset="moons", steps=60), tiny_run, resume=True, progress=False)
