"""scorelab: score-based generative modelling, correct, fast and tested.

    import scorelab as sl
    x = sl.data.load("swiss_roll", 10_000, generator=torch.Generator().manual_seed(0))

Everything revolves around one callable, a *score* ``s(x, sigma, cond=None) -> Tensor``
on batches of any shape (:mod:`scorelab.core.score`): objectives take a score and data,
samplers take a score, a start and noise levels, metrics take samples, and noise
processes (:mod:`scorelab.core.processes`) say which levels to train on and to walk. See
``sl.objectives``, ``sl.sampling``, ``sl.processes`` and ``sl.metrics``.

The names below load on first use (PEP 562), so that ``import scorelab`` and
``scorelab --help`` do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0.dev0"

# The layers (see the package layout in the documentation) and, by their short names, the core
# modules the API has always offered: ``sl.processes`` is ``scorelab.core.processes``.
_SUBMODULES = {name: f"scorelab.{name}" for name in ("data", "metrics", "models", "objectives", "sampling")}
_SUBMODULES |= {name: f"scorelab.core.{name}" for name in ("errors", "noise", "processes", "score")}
_SUBMODULES["likelihood"] = "scorelab.sampling.likelihood"
_OBJECTS = {"Config": "scorelab.runs.config", "TrainedRun": "scorelab.runs.trained", "load_run": "scorelab.runs.trained",
            "train": "scorelab.runs.training", "set_threads": "scorelab.core.threads"}

__all__ = sorted([*_SUBMODULES, *_OBJECTS])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _OBJECTS:
        value = getattr(importlib.import_module(_OBJECTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scorelab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
