"""How many intra-op CPU threads a computation uses, chosen so that jobs sharing the cores do not collapse.

PyTorch's OpenMP threads spin while they wait for one another. A process that asks for every core while
another process holds one of them therefore loses far more than its share: its threads spin on a core they
cannot have, and two trainings started together on 2 cores take several times as long as the same two one
after the other (BENCHMARKS.md "concurrency").

So, by default ("auto"), a computation uses

    threads = clamp(round(cores − busy_elsewhere), 1, wanted),

where ``cores`` are the cores this process may run on, ``busy_elsewhere`` the cores that other processes
kept busy over the last second or so (from ``/proc/stat``'s busy time less this process's own CPU time), and
``wanted`` is 1 for a computation too small for a second thread to pay and every core otherwise. The count is
re-chosen about once a second from the loop that does the work (:meth:`ThreadGovernor.tick`), because
``torch.set_num_threads`` applies to the thread that calls it and a job's neighbours come and go. Two runs
started together each see the other within a second and drop to a core apiece; when one ends, the other
takes both again.

A fixed count (``--threads N``, :func:`set_threads`, or ``OMP_NUM_THREADS`` in the environment, as torchrun
sets it for its workers) turns all of this off.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.errors import ConfigError
from scorelab.core.score import Score

AUTO = "auto"
# Multiply-adds per step below which a second thread does not pay: OpenMP's fork and join then cost more
# than the second core saves (BENCHMARKS.md "concurrency", the single-run rows).
SMALL_WORK = 2e7
# Seconds between two readings of the cores' use: long enough for a steady reading, short against a run.
INTERVAL = 1.0

_setting: int | str = AUTO


def set_threads(threads: int | str) -> None:
    """Fix the intra-op thread count of every later computation, or ``"auto"`` (the default) to let
    each choose as the module docstring says."""
    global _setting
    if threads != AUTO and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        raise ConfigError(f"threads must be a positive integer or {AUTO!r}, got {threads!r}")
    _setting = threads
    if threads != AUTO:
        torch.set_num_threads(threads)


def parse_threads(text: str) -> int | str:
    """``--threads``'s value: ``auto`` or a positive integer; anything else is a :class:`ConfigError`."""
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"--threads must be a positive integer or {AUTO}, got {text!r}")
    return int(text)


def fixed_threads() -> int | None:
    """The thread count fixed by :func:`set_threads` or ``OMP_NUM_THREADS``; None where it is automatic."""
    if _setting != AUTO:
        return int(_setting)
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def wanted_threads(work: float, cores: int) -> int:
    """The threads a computation of ``work`` multiply-adds per step would use alone: one where a second
    does not pay, every core otherwise."""
    return 1 if work < SMALL_WORK else cores


def step_work(model: nn.Module, rows: int, sample_shape: Sequence[int]) -> float:
    """A multiply-add count for one step on ``rows`` samples of ``sample_shape``: the weights times the rows
    times the positions each weight is applied at (H·W of an image, the length of a waveform, 1 for a point).
    It overcounts the layers at lower resolution; it only has to tell a toy from a U-Net."""
    positions = math.prod(sample_shape[1:]) if len(sample_shape) > 1 else 1
    return sum(p.numel() for p in model.parameters()) * rows * positions


def choose_threads(cores: int, busy_elsewhere: float, wanted: int) -> int:
    """round(cores − busy_elsewhere), at least one and at most ``wanted``."""
    return max(1, min(wanted, round(cores - busy_elsewhere)))


class CoreUse:
    """The cores that other processes kept busy between two readings: the system's busy time from
    ``/proc/stat`` less this process's own CPU time, over the wall time between (Linux; elsewhere none)."""

    STAT = Path("/proc/stat")

    def __init__(self) -> None:
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._reading()

    def _reading(self) -> tuple[float, float, float] | None:
        try:
            fields = self.STAT.read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        values = [int(value) for value in fields]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle and waiting for I/O
        busy = (sum(values[:8]) - idle) / self.ticks  # user … steal; guest time is inside user
        return time.monotonic(), busy, time.process_time()

    def busy_elsewhere(self) -> float:
        """Cores kept busy by other processes since the last call (0 where it cannot be read)."""
        now, before = self._reading(), self.last
        self.last = now
        if now is None or before is None or now[0] <= before[0]:
            return 0.0
        elapsed = now[0] - before[0]
        return max(0.0, (now[1] - before[1]) - (now[2] - before[2])) / elapsed


class ThreadGovernor:
    """Sets ``torch``'s intra-op threads for a loop of steps of ``work`` multiply-adds each (see the module
    docstring); call :meth:`tick` once per step. A fixed thread count is set once and left alone."""

    def __init__(self, work: float) -> None:
        fixed = fixed_threads()
        self.cores = usable_cores()
        self.wanted = fixed if fixed is not None else wanted_threads(work, self.cores)
        self.use = None if fixed is not None else CoreUse()
        self.next_look = time.monotonic() + INTERVAL
        torch.set_num_threads(self.wanted)

    def tick(self) -> None:
        if self.use is None or time.monotonic() < self.next_look:
            return
        self.next_look = time.monotonic() + INTERVAL
        threads = choose_threads(self.cores, self.use.busy_elsewhere(), self.wanted)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)


def governed(score: Score, work: float) -> Score:
    """``score`` with a :class:`ThreadGovernor` for evaluations of ``work`` multiply-adds each, ticked
    before every evaluation: a sampler's loop re-chooses its threads without knowing of them."""
    threads = ThreadGovernor(work)

    def score_with_threads(*args: Any, **kwargs: Any) -> Tensor:
        threads.tick()
        return score(*args, **kwargs)

    return score_with_threads
