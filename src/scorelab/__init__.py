"""scorelab: score-based generative modelling, correct, fast and tested.

    import scorelab as sl
    x = sl.data.load("swiss_roll", 10_000, generator=torch.Generator().manual_seed(0))

Everything revolves around one callable, a *score* ``s(x, sigma, cond=None) -> Tensor``
on batches of any shape (:mod:`scorelab.score`): objectives take a score and data,
samplers take a score, a start and noise levels, metrics take samples, and noise
processes (:mod:`scorelab.processes`) say which levels to train on and to walk. See
``sl.objectives``, ``sl.sampling``, ``sl.processes`` and ``sl.metrics``.
"""

from scorelab import data, errors, likelihood, metrics, models, noise, objectives, processes, sampling
from scorelab.config import Config
from scorelab.run import TrainedRun, load_run
from scorelab.train import train

__version__ = "0.2.0.dev0"

__all__ = [
    "Config",
    "TrainedRun",
    "data",
    "errors",
    "likelihood",
    "load_run",
    "metrics",
    "models",
    "noise",
    "objectives",
    "processes",
    "sampling",
    "train",
]
