"""A trained run directory as an object: its config, its EMA model and its sampler.

    run = sl.load_run("runs/swiss")
    samples = run.sample(5000, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from scorelab.checkpoint import load_checkpoint
from scorelab.config import Config
from scorelab.errors import CheckpointError, require_positive_int
from scorelab.models import build_model
from scorelab.noise import geometric_sigmas
from scorelab.sampling import Callback, annealed_langevin
from scorelab.train import Normalisation, resolve_device


@dataclass
class TrainedRun:
    """A trained model with everything needed to sample from it."""

    run_dir: Path
    config: Config
    step: int
    model: nn.Module
    normalisation: Normalisation

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto") -> TrainedRun:
        """Load the EMA weights of ``RUN_DIR/model.safetensors`` onto ``device``."""
        checkpoint = load_checkpoint(run_dir)
        config = checkpoint.config
        weights = checkpoint.group("ema")
        try:
            normalisation = Normalisation(checkpoint.tensors["data.shift"], checkpoint.tensors["data.scale"])
            model = build_model(config, len(normalisation.shift))
            model.load_state_dict(weights)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"{run_dir}: weights do not match the saved config ({exc})") from None
        model = model.to(resolve_device(device)).eval().requires_grad_(False)
        return cls(Path(run_dir), config, checkpoint.step, model, normalisation)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return len(self.normalisation.shift)

    @property
    def sigmas(self) -> Tensor:
        """The training noise levels σ_1 > … > σ_L (in model units)."""
        return geometric_sigmas(self.config.sigma_max, self.config.sigma_min, self.config.n_levels)

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The learned score in data coordinates: ∇ₓ log p = ∇_u log p_u / scale, u = (x − shift)/scale."""
        scale = self.normalisation.scale.to(x)
        return self.model(self.normalisation.to_model(x), sigma.to(x)) / scale

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        n_steps_each: int | None = None,
        step_size: float | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        """Draw ``n`` samples (data coordinates, on CPU) with annealed Langevin.

        Sampling starts from N(0, σ_1²I) in model coordinates, the large-noise
        limit of p_σ1, and uses the run's saved sampler settings unless overridden.
        """
        require_positive_int("n", n)
        sigmas = self.sigmas.to(self.device)
        start = torch.randn(n, self.dim, generator=generator) * sigmas[0].item()
        samples = annealed_langevin(
            self.model,
            start.to(self.device),
            sigmas,
            n_steps_each=n_steps_each or self.config.n_steps_each,
            step_size=step_size or self.config.step_size,
            denoise=self.config.denoise,
            generator=generator,
            callback=callback,
        )
        return self.normalisation.to_data(samples.cpu())


def load_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """Shorthand for :meth:`TrainedRun.load`."""
    return TrainedRun.load(run_dir, device)
