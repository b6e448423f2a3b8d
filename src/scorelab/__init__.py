"""scorelab: score-based generative modelling, correct, fast and tested.

    import scorelab as sl
    x = sl.data.load("swiss_roll", 10_000, generator=torch.Generator().manual_seed(0))

Everything revolves around one callable, a *score* ``s(x, sigma, cond=None) -> Tensor``
on batches of any shape (:mod:`scorelab.score`): objectives take a score and data,
samplers take a score, a start and noise levels, metrics take samples, and noise
processes (:mod:`scorelab.processes`) say which levels to train on and to walk. See
``sl.objectives``, ``sl.sampling``, ``sl.processes`` and ``sl.metrics``.

The names below load on first use (PEP 562), so that ``import scorelab`` and
``scorelab --help`` do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0.dev0"

_SUBMODULES = ("data", "errors", "likelihood", "metrics", "models", "noise", "objectives", "processes", "sampling",
               "score")
_OBJECTS = {"Config": "scorelab.config", "TrainedRun": "scorelab.run", "load_run": "scorelab.run",
            "train": "scorelab.training"}

__all__ = sorted([*_SUBMODULES, *_OBJECTS])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"scorelab.{name}")
    if name in _OBJECTS:
        value = getattr(importlib.import_module(_OBJECTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scorelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
