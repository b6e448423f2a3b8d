"""The intra-op thread count: the rule that shares the cores, the reading of their use, and the flag."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli
from torch import nn

import scorelab as sl
from scorelab.core import threads
from scorelab.core.errors import ConfigError


@pytest.fixture
def automatic(monkeypatch):
    """Automatic threads on two cores, re-chosen at every tick, restored to the suite's one thread after."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "INTERVAL", 0.0)
    sl.set_threads("auto")
    yield
    sl.set_threads(1)


@pytest.mark.parametrize(("cores", "busy", "wanted", "expected"), [
    (2, 0.0, 2, 2), (2, 0.4, 2, 2), (2, 0.9, 2, 1), (2, 1.0, 2, 1), (2, 2.0, 2, 1), (2, 0.0, 1, 1),
    (8, 3.2, 8, 5), (8, 9.0, 8, 1), (8, 0.0, 4, 4)])
def test_threads_are_the_cores_left_free_at_least_one_at_most_wanted(cores, busy, wanted, expected):
    assert threads.choose_threads(cores, busy, wanted) == expected


def test_a_small_step_wants_one_thread_and_a_large_one_every_core():
    assert threads.wanted_threads(threads.SMALL_WORK / 2, 4) == 1
    assert threads.wanted_threads(threads.SMALL_WORK * 2, 4) == 4


def test_step_work_counts_weights_times_rows_times_positions():
    mlp = nn.Linear(3, 5)  # 20 weights
    assert threads.step_work(mlp, 7, (3,)) == 20 * 7
    conv = nn.Conv2d(1, 2, 3)  # 20 weights
    assert threads.step_work(conv, 7, (1, 4, 6)) == 20 * 7 * 24
    assert threads.step_work(conv, 7, (1, 100)) == 20 * 7 * 100


def _stat(path, busy: int, idle: int) -> None:
    # user nice system idle iowait irq softirq steal: busy ticks spread over user and system.
    path.write_text(f"cpu  {busy - busy // 2} 0 {busy // 2} {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n")


def test_busy_elsewhere_is_the_systems_busy_time_less_this_processs_own(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    clock = {"wall": 100.0, "cpu": 5.0}
    monkeypatch.setattr(threads.CoreUse, "STAT", stat)
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(threads.time, "process_time", lambda: clock["cpu"])
    _stat(stat, busy=1000, idle=5000)
    use = threads.CoreUse()
    ticks = use.ticks
    # Over 2 s the system is busy for 3.5 core-seconds, 1.5 of them this process's: 2 s of others, one core.
    clock["wall"], clock["cpu"] = 102.0, 6.5
    _stat(stat, busy=1000 + round(3.5 * ticks), idle=5000 + round(0.5 * ticks))
    assert use.busy_elsewhere() == pytest.approx(1.0, abs=1 / ticks)
    # Nothing else ran: this process's own time is all the busy time there was.
    clock["wall"], clock["cpu"] = 103.0, 7.5
    _stat(stat, busy=1000 + round(4.5 * ticks), idle=5000 + round(1.5 * ticks))
    assert use.busy_elsewhere() == pytest.approx(0.0, abs=1 / ticks)


def test_busy_elsewhere_is_zero_where_the_system_does_not_say(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.CoreUse, "STAT", tmp_path / "missing")
    assert threads.CoreUse().busy_elsewhere() == 0.0


def test_the_governor_gives_up_a_core_to_a_neighbour_and_takes_it_back(automatic, monkeypatch):
    neighbour = {"cores": 0.0}
    monkeypatch.setattr(threads.CoreUse, "busy_elsewhere", lambda self: neighbour["cores"])
    governor = threads.ThreadGovernor(work=threads.SMALL_WORK * 10)
    assert torch.get_num_threads() == 2
    neighbour["cores"] = 1.0
    governor.tick()
    assert torch.get_num_threads() == 1
    neighbour["cores"] = 0.1
    governor.tick()
    assert torch.get_num_threads() == 2


def test_a_small_model_keeps_one_thread_with_both_cores_free(automatic, monkeypatch):
    monkeypatch.setattr(threads.CoreUse, "busy_elsewhere", lambda self: 0.0)
    governor = threads.ThreadGovernor(work=threads.SMALL_WORK / 10)
    governor.tick()
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("fix", ["api", "environment"])
def test_a_fixed_count_is_kept_whatever_the_neighbours_do(automatic, monkeypatch, fix):
    monkeypatch.setattr(threads.CoreUse, "busy_elsewhere", lambda self: 2.0)
    if fix == "api":
        sl.set_threads(2)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
    governor = threads.ThreadGovernor(work=threads.SMALL_WORK / 10)
    governor.tick()
    assert torch.get_num_threads() == 2


def test_a_sampler_re_chooses_its_threads_between_evaluations(automatic, monkeypatch):
    seen = []
    neighbour = {"cores": 0.0}
    monkeypatch.setattr(threads.CoreUse, "busy_elsewhere", lambda self: neighbour["cores"])

    def score(x, sigma):
        seen.append(torch.get_num_threads())
        neighbour["cores"] = 1.0  # a neighbour starts after the first evaluation
        return -x

    governed = threads.governed(score, work=threads.SMALL_WORK * 10)
    for _ in range(3):
        governed(torch.zeros(2, 2), torch.ones(2))
    assert seen == [2, 1, 1]


@pytest.mark.parametrize("value", [0, -1, 1.5, "two", True])
def test_set_threads_refuses_what_is_not_a_count(value):
    with pytest.raises(ConfigError, match="threads"):
        sl.set_threads(value)


@pytest.mark.parametrize("value", ["0", "-2", "x", "1.5"])
def test_the_threads_flag_refuses_a_bad_value_in_one_line(capsys, tmp_path, value):
    code, _out, err = run_cli(capsys, "train", "--threads", value, "--out", tmp_path / "run", "--steps", "1")
    assert code == 2
    assert err.count("\n") == 1 and "--threads" in err
    assert not (tmp_path / "run").exists()


def test_the_threads_flag_fixes_the_count(capsys, tmp_path):
    code, _out, err = run_cli(capsys, "train", "--threads", "2", "--out", tmp_path / "run", "--steps", "2",
                             "--n-data", "64", "--batch-size", "16", "--no-progress")
    try:
        assert code == 0, err
        assert torch.get_num_threads() == 2 and threads.fixed_threads() == 2
    finally:
        sl.set_threads(1)


def test_training_re_chooses_its_threads_as_it_runs(automatic, monkeypatch, tmp_path):
    from conftest import tiny_config

    monkeypatch.setattr(threads, "SMALL_WORK", 0.0)  # the tiny model wants both cores
    chosen = []
    monkeypatch.setattr(threads.CoreUse, "busy_elsewhere", lambda self: chosen.append(torch.get_num_threads()) or 1.0)
    sl.train(tiny_config(steps=3), tmp_path / "run", progress=False)
    assert chosen[0] == 2 and torch.get_num_threads() == 1
