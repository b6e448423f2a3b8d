"""A trained run directory as an object: its config, its EMA model and its sampler.

    run = sl.load_run("runs/swiss")
    samples = run.sample(5000, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from scorelab.checkpoint import load_checkpoint
from scorelab.config import Config
from scorelab.diffusion import make_chain
from scorelab.errors import CheckpointError, ConfigError, require_positive_int
from scorelab.likelihood import log_prob
from scorelab.models import build_model
from scorelab.noise import geometric_sigmas, ncsnv2_step_size_for, vp_sigmas
from scorelab.sampling import Callback, annealed_langevin, ddim, ddpm, langevin, predictor_corrector, probability_flow
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
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
        **options,
    ) -> Tensor:
        """Draw ``n`` samples (data coordinates, on CPU).

        Args:
            n: number of samples.
            sampler: a name in :data:`SAMPLERS`; defaults to the run's ``config.sampler``.
            generator: the source of randomness; the same seed gives the same samples.
            callback: receives a :class:`~scorelab.sampling.StepInfo` per step (model coordinates).
            options: overrides of the run's sampler settings, e.g. ``n_steps_each=100``.
        """
        require_positive_int("n", n)
        name = sampler or self.config.sampler
        if name not in SAMPLERS:
            raise ConfigError(f"unknown sampler {name!r}; use one of: {', '.join(SAMPLERS)}")
        settings = self.config.replace(**{k: v for k, v in options.items() if v is not None})
        with torch.no_grad():
            samples = SAMPLERS[name](self, n, settings, generator, callback)
        return self.normalisation.to_data(samples.cpu())

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Exact log-density in nats (data coordinates) of the run's probability-flow ODE model.

        The ODE runs over the run's noise range: σ_1…σ_T of the DDPM chain, or
        [sigma_min, sigma_max] for a noise-conditional model, with the prior
        N(0, (1 + σ_max²)I) in model coordinates (moment-matched for unit-variance
        data, so use ``standardize`` for noise-conditional runs). The change of
        coordinates adds −Σ log scale. See :func:`scorelab.likelihood.log_prob`.
        """
        if self.config.model == "ddpm":
            sigmas = vp_sigmas(make_chain(self.config.schedule, self.config.timesteps))
            sigma_min, sigma_max = sigmas[0].item(), sigmas[-1].item()
        else:
            sigma_min, sigma_max = self.config.sigma_min, self.config.sigma_max
        model_x = self.normalisation.to_model(x).to(self.device)
        log_p = log_prob(self.model, model_x, sigma_min=sigma_min, sigma_max=sigma_max, generator=generator)
        return log_p.cpu() - self.normalisation.scale.log().sum()


RunSampler = Callable[[TrainedRun, int, Config, "torch.Generator | None", "Callback | None"], Tensor]


def _prior_noise(run: TrainedRun, n: int, sigma: float, generator: torch.Generator | None) -> Tensor:
    """N(0, σ²I) starting points in model coordinates, on the run's device."""
    return (torch.randn(n, run.dim, generator=generator) * sigma).to(run.device)


def _annealed_langevin(run: TrainedRun, n: int, settings: Config, generator, callback) -> Tensor:
    """Start from N(0, σ_1²I), the large-noise limit of p_σ1, and anneal down to σ_L.

    ``step_size = 0`` takes ε from the NCSNv2 variance rule for this schedule.
    """
    sigmas = run.sigmas.to(run.device)
    step_size = settings.step_size or ncsnv2_step_size_for(sigmas, settings.n_steps_each)
    return annealed_langevin(run.model, _prior_noise(run, n, sigmas[0].item(), generator), sigmas,
                             n_steps_each=settings.n_steps_each, step_size=step_size,
                             denoise=settings.denoise, generator=generator, callback=callback)


def _langevin(run: TrainedRun, n: int, settings: Config, generator, callback) -> Tensor:
    """Plain Langevin: n_levels·n_steps_each steps of size step_size.

    Unconditional scores ignore σ; a noise-conditional model is held at its smallest
    level σ_L, the closest it has to the data's own score.
    """
    if not settings.step_size:
        raise ConfigError("step_size = 0 (the NCSNv2 rule) is for annealed Langevin; give plain Langevin a step size")

    def score(x: Tensor) -> Tensor:
        return run.model(x, torch.full((len(x),), settings.sigma_min, device=x.device))

    return langevin(score, _prior_noise(run, n, settings.sigma_max, generator),
                    n_steps=settings.n_levels * settings.n_steps_each, step_size=settings.step_size,
                    generator=generator, callback=callback)


def _predictor_corrector(run: TrainedRun, n: int, settings: Config, generator, callback) -> Tensor:
    """Predictor-corrector (VE SDE) on n_levels·n_steps_each geometric levels from σ_max to σ_min.

    The reverse-diffusion predictor needs many small levels (``score_sde`` uses 1000), so
    the levels × steps budget of annealed Langevin becomes levels here, each with one
    corrector step at the default snr. Noise-conditional models take any σ; the seed's
    CondLinear model snaps each σ to its nearest training level.
    """
    sigmas = geometric_sigmas(settings.sigma_max, settings.sigma_min, settings.n_levels * settings.n_steps_each)
    sigmas = sigmas.to(run.device)
    return predictor_corrector(run.model, _prior_noise(run, n, sigmas[0].item(), generator), sigmas,
                               snr=settings.snr, denoise=settings.denoise, generator=generator, callback=callback)


def _chain(settings: Config) -> Tensor:
    """ᾱ of the run's diffusion chain, respaced to ``sample_steps`` steps when that is > 0."""
    return make_chain(settings.schedule, settings.timesteps, settings.sample_steps or None)


def _ddpm(run: TrainedRun, n: int, settings: Config, generator, callback) -> Tensor:
    """DDPM ancestral sampling from x_T ~ N(0, I), σ_t² = β_t."""
    return ddpm(run.model, _prior_noise(run, n, 1.0, generator), _chain(settings), generator=generator,
                callback=callback)


def _ddim(run: TrainedRun, n: int, settings: Config, generator, callback) -> Tensor:
    """DDIM with the run's η from x_T ~ N(0, I)."""
    return ddim(run.model, _prior_noise(run, n, 1.0, generator), _chain(settings), eta=settings.eta,
                generator=generator, callback=callback)


def _ode(run: TrainedRun, n: int, settings: Config, generator, callback) -> Tensor:
    """The probability-flow ODE from the DDPM prior seen in y = x_T/√ᾱ_T: dopri5, or Heun on sample_steps levels."""
    sigmas = vp_sigmas(_chain(settings)).flip(0)
    if not settings.sample_steps:
        sigmas = sigmas[[0, -1]]
    start = _prior_noise(run, n, (1 + sigmas[0].item() ** 2) ** 0.5, generator)
    return probability_flow(run.model, start, sigmas, method="heun2" if settings.sample_steps else "dopri5",
                            callback=callback)


SAMPLERS: dict[str, RunSampler] = {"ald": _annealed_langevin, "langevin": _langevin, "pc": _predictor_corrector,
                                   "ddpm": _ddpm, "ddim": _ddim, "ode": _ode}


def load_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """Shorthand for :meth:`TrainedRun.load`."""
    return TrainedRun.load(run_dir, device)
