"""The ranks of the distributed tests (tests/test_distributed.py), started by torchrun:

    python -m torch.distributed.run --nproc-per-node 2 tests/distributed_harness.py SCENARIO ARGS

- ``rows CONFIG.json RUN_DIR``: train the config, every rank fed its slice of the rows that
  :func:`global_rows` gives a single process (how the equivalence test feeds both runs the same rows);
- ``gradients DIR``: for each higher-order objective, DDP's gradient against the mean of every rank's
  gradient of its own loss, computed without DDP, then a few steps of ``train`` under DDP;
- ``fail RUN_DIR``: the CLI's ``train`` with rank 1 raising at its third step.
"""

from __future__ import annotations

import copy
import gc
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import scorelab as sl
import scorelab.runs.training
from scorelab.app.cli import main
from scorelab.core.errors import ScorelabError
from scorelab.models import build_model
from scorelab.objectives import OBJECTIVES
from scorelab.runs.distributed import World
from scorelab.runs.config import build_process, resolve_from_data
from scorelab.runs.training import rank_seed

torch.set_num_threads(1)


def global_rows(step: int, n_data: int, batch_size: int) -> torch.Tensor:
    """The rows of step ``step`` of a run of one process: the rows every rank's slice is cut from."""
    return torch.randint(n_data, (batch_size,), generator=torch.Generator().manual_seed(1000 + step))


def feed_slices_of_global_rows(batch_size: int, world: World) -> None:
    """Make the training loop draw rank r's slice of :func:`global_rows` (for any world, one included)."""
    steps = iter(range(1, 10**9))

    def rows(n_data: int, count: int, generator: torch.Generator) -> torch.Tensor:
        assert count == batch_size // world.size
        return global_rows(next(steps), n_data, batch_size)[world.rank * count:(world.rank + 1) * count]

    scorelab.runs.training.minibatch_rows = rows


def rows(config_path: str, run_dir: str) -> None:
    config = sl.Config.from_dict(json.loads(Path(config_path).read_text()))
    feed_slices_of_global_rows(config.optim.batch_size, World.from_environment())
    sl.train(config, run_dir, progress=False)


HIGHER_ORDER = {"exact": {"objective": "exact"}, "sliced": {"objective": "sliced"}, "energy": {"model": "energy"}}


def gradients() -> None:
    world = World.from_environment()
    for name, parts in HIGHER_ORDER.items():
        config = sl.Config(**parts, n_data=256, hidden=32, depth=2, batch_size=32, steps=4, checkpoint_every=2,
                           log_every=2, seed=3, device="cpu")
        data = sl.data.load("swiss_roll", 256, generator=torch.Generator().manual_seed(0))
        config = resolve_from_data(config, data)
        process, objective = build_process(config), OBJECTIVES[config.objective.name]
        model = build_model(config.model.name, config.model.settings, shape=(2,), process=process, seed=config.seed)
        plain = copy.deepcopy(model)
        halves = data[:32].chunk(world.size)

        def loss_of(score, rank):
            generator = torch.Generator().manual_seed(rank_seed(config.seed, rank))
            return objective.loss(score, halves[rank], None, process, config.objective.settings, generator)

        ddp = torch.nn.parallel.DistributedDataParallel(model)  # kept: its reducer averages during backward
        loss_of(ddp, world.rank).backward()
        for rank in range(world.size):  # the mean gradient, each rank's loss differentiated without DDP
            (loss_of(plain, rank) / world.size).backward()
        trained = [(a, b) for a, b in zip(model.parameters(), plain.parameters()) if b.requires_grad]
        for through_ddp, by_hand in trained:
            assert by_hand.grad.abs().sum() > 0, name
            torch.testing.assert_close(through_ddp.grad, by_hand.grad, rtol=1e-5, atol=1e-6)
        result = sl.train(config, Path(sys.argv[2]) / name, progress=False)
        if world.main:
            assert result.steps == 4 and torch.isfinite(torch.tensor(result.final_loss)), name
            print(f"ok {name}", flush=True)


def fail(run_dir: str) -> int:
    world, real_rows, calls = World.from_environment(), scorelab.runs.training.minibatch_rows, iter(range(1, 10**9))

    def rows(n_data: int, count: int, generator: torch.Generator) -> torch.Tensor:
        if world.rank == 1 and next(calls) == 3:
            raise ScorelabError("an injected fault at step 3")
        return real_rows(n_data, count, generator)

    scorelab.runs.training.minibatch_rows = rows
    return main(["train", "--out", run_dir, "--steps", "50", "--n-data", "256", "--hidden", "16", "--no-progress",
                 "--device", "cpu"])


if __name__ == "__main__":
    scenario = sys.argv[1]
    if scenario == "gradients":
        dist.init_process_group("gloo")
        gradients()
        # Free the DDP wrappers (their reducers hold the group) and wait for the peer before leaving: one
        # fresh-clone run of 2026-12-03 saw rank 1 abort in C++ ("terminate called") as the job ended.
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    elif scenario == "rows":
        rows(sys.argv[2], sys.argv[3])
    else:
        sys.exit(fail(sys.argv[2]))
