"""scorelab: score-based generative modelling, correct, fast and tested.

    import scorelab as sl
    x = sl.data.load("swiss_roll", 10_000, generator=torch.Generator().manual_seed(0))

Everything revolves around one callable, a *score* ``s(x, sigma) -> Tensor``:
objectives take a score and data, samplers take a score and a start, metrics
take samples. See ``sl.objectives``, ``sl.sampling`` and ``sl.metrics``.
"""

from scorelab import data, diffusion, errors, likelihood, metrics, models, noise, objectives, sampling
from scorelab.config import Config
from scorelab.run import TrainedRun, load_run
from scorelab.train import train

__version__ = "0.1.0"

__all__ = [
    "Config",
    "TrainedRun",
    "data",
    "diffusion",
    "errors",
    "likelihood",
    "load_run",
    "metrics",
    "models",
    "noise",
    "objectives",
    "sampling",
    "train",
]
