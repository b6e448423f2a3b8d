"""Several processes, one run: data-parallel training and sharded sampling with ``torch.distributed``.

``torchrun --nproc-per-node N -m scorelab train ...`` (or ``scorelab train --nproc N``, which
launches the same through ``torch.distributed.run``) starts N copies of the command. Each reads its
place in the job from the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
joins one process group: gloo on the CPU, NCCL on CUDA. Plain ``torch.distributed`` rather than
Accelerate or Lightning: it is PyTorch's own engine, which those wrap, and a run needs four of its
calls (join, all-reduce, all-gather, leave), not a framework around the training loop.

A process started without torchrun is a world of one, and nothing here costs it anything.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, ScorelabError

# How long a rank waits for the others to join or to reach a collective. A rank that dies is noticed at
# once (its sockets close); this bounds the wait on one that hangs.
TIMEOUT = timedelta(minutes=10)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when it is available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None


class PeerLost(ScorelabError):
    """Another rank of the job stopped, so this one cannot go on (its own message says why)."""


@dataclass(frozen=True)
class World:
    """This process's place in the job: global ``rank`` of ``size``, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The rank that writes files and prints (rank 0)."""
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> World:
        """The world torchrun describes in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a world of one
        without them."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
        if size < 1 or not 0 <= rank < size:
            raise ConfigError(f"rank {rank} of a world of {size}: RANK must lie in [0, WORLD_SIZE)")
        return cls(rank, size, local_rank)

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a machine: ``cuda`` means ``cuda:LOCAL_RANK`` in a job of several."""
        if device.type == "cuda" and device.index is None and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the job's process group for the ``with`` block (gloo on the CPU, NCCL on CUDA) and leave it
    afterwards; in a world of one, or where a group is already formed, only report the world."""
    import torch.distributed as dist

    world = World.from_environment()
    if world.size == 1 or dist.is_initialized():
        yield world
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(world.device(device))
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as exc:
        raise ScorelabError(f"rank {world.rank} could not join the job of {world.size} ({exc})") from None
    try:
        yield world
    finally:
        with contextlib.suppress(RuntimeError):
            dist.destroy_process_group()


PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe")


@contextlib.contextmanager
def collective(world: World) -> Iterator[None]:
    """Within the block, turn the error of a collective whose peer died (the rank's own ones, and DDP's)
    into :class:`PeerLost`: one line, not a traceback. Any other error passes unchanged. The entry points
    that talk to other ranks (``train``, ``scorelab sample``) hold it around all of their work."""
    try:
        yield
    except RuntimeError as exc:  # gloo and NCCL raise RuntimeError and its subclass DistError
        import torch.distributed as dist

        if world.size == 1 or not (isinstance(exc, dist.DistError) or any(text in str(exc) for text in PEER_GONE)):
            raise
        raise PeerLost(f"another rank of the job stopped ({type(exc).__name__})") from None


def mean_over_ranks(value: Tensor, world: World) -> Tensor:
    """The mean of ``value`` over the ranks (all-reduce); ``value`` itself in a world of one.

    A NaN on any rank makes the mean NaN on every rank, so all of them see a divergence at once."""
    if world.size == 1:
        return value
    import torch.distributed as dist

    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world.size


def gather_to_all(value: Tensor, world: World) -> list[Tensor]:
    """Every rank's ``value`` (same shape and dtype on each), in rank order, on every rank."""
    if world.size == 1:
        return [value]
    import torch.distributed as dist

    parts = [torch.empty_like(value) for _ in range(world.size)]
    dist.all_gather(parts, value.contiguous())
    return parts


def wait_for_main(world: World) -> None:
    """Block until rank 0 gets here: the other ranks let it check the run first, and stop quietly if it
    fails (its message is the one the user needs)."""
    if world.size == 1:
        return
    import torch.distributed as dist

    dist.barrier()


def batches_in_order(make: Callable[[int, int], Tensor], n: int, batch_size: int, shape: tuple[int, ...],
                     world: World) -> Iterator[Tensor]:
    """The batches j = 0, 1, … of ``n`` rows of ``shape`` in blocks of ``batch_size``, batch j made by
    rank j mod W as ``make(first row, count)``.

    Rank 0 yields them all, in order, receiving the others' as they are done (float32 CPU tensors, so
    the group may be gloo); the other ranks send theirs to rank 0 and yield nothing. The ranks work at
    once, and each holds one batch at a time.
    """
    import torch.distributed as dist

    for index, first in enumerate(range(0, n, batch_size)):
        count, maker = min(batch_size, n - first), index % world.size
        if world.main and maker == 0:
            yield make(first, count)
        elif world.main:
            batch = torch.empty(count, *shape, dtype=torch.float32)
            dist.recv(batch, src=maker)
            yield batch
        elif maker == world.rank:
            dist.send(make(first, count).to(torch.float32).contiguous(), dst=0)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """``torchrun --standalone --nproc-per-node nproc -m scorelab ARGV``: run the command on ``nproc``
    processes of this machine (a rendezvous on the loopback address) and return the job's exit code,
    that of the first rank that failed. Each rank prints its own errors; torchrun's report is left out."""
    import logging

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)  # its report would repeat the ranks'
    # The machine's cores shared out, as torchrun would (it sets 1 and warns); more would oversubscribe them.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        # "--": torchrun's parser would read a flag such as --n as an abbreviation of one of its own.
        run(parse_args(["--standalone", "--nproc-per-node", str(nproc), "--max-restarts", "0", "--module",
                        "scorelab", "--", *argv]))
    except ChildFailedError as failure:
        rank, first = failure.get_first_failure()
        if first.exitcode > 0:
            return first.exitcode  # the rank printed its own one-line error
        print(f"scorelab: error: rank {rank} was killed by signal {-first.exitcode}", file=sys.stderr)
        return 1
    return 0
