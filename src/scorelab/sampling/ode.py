"""The probability-flow ODE, solved with torchdiffeq.

For data perturbed by N(0, σ²I), the ODE

    dy/dσ = −σ ∇_y log p_σ(y) ≈ −σ s(y, σ)

moves samples of p_σ to samples of p_σ' for every σ, σ' (Song et al. 2021, eq. 13
for the variance-exploding SDE; Karras et al. 2022, eq. 4 with σ(t) = t). It needs
nothing but a score, so it serves NCSN and DDPM models alike: it runs in the VE
coordinates of :mod:`scorelab.core.processes`, from the process's prior (for a DDPM chain,
x_T·√(1 + σ_T²) = x_T/√ᾱ_T) down its grid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from scorelab.core.errors import ConfigError, require_positive
from scorelab.core.noise import check_noise_levels
from scorelab.core.score import Score, call_score
from scorelab.sampling.steps import Callback, StepInfo, tweedie_denoise

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_STEP_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4")


def check_ode_options(method: str, rtol: float, atol: float) -> None:
    """Raise :class:`ConfigError` for a solver torchdiffeq lacks or a non-positive tolerance."""
    if method not in ADAPTIVE_METHODS + FIXED_STEP_METHODS:
        methods = ", ".join(ADAPTIVE_METHODS + FIXED_STEP_METHODS)
        raise ConfigError(f"unknown ODE method {method!r}; use one of: {methods}")
    require_positive("rtol", rtol)
    require_positive("atol", atol)


class CountingScore:
    """A score that counts its evaluations: the number of function evaluations (NFE) of a sampler.

        counted = CountingScore(model); probability_flow(counted, x, sigmas); counted.count
    """

    def __init__(self, score: Score) -> None:
        self.score = score
        self.count = 0

    def __call__(self, x: Tensor, sigma: Tensor | None = None, cond: Any = None) -> Tensor:
        self.count += 1
        return call_score(self.score, x, sigma, cond)


@torch.no_grad()
def probability_flow(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    denoise: bool = True,
    callback: Callback | None = None,
    cond: Any = None,
) -> Tensor:
    """Solve dy/dσ = −σ s(y, σ) from σ = ``sigmas[0]`` down to ``sigmas[-1]``.

    With an adaptive ``method`` (dopri5 by default) the solver picks its own
    steps to meet ``rtol``/``atol`` and ``sigmas`` only says where to report the
    trajectory; with a fixed-step method (euler, midpoint, heun2, heun3, rk4) it
    steps exactly from each σ to the next. Wrap ``score`` in :class:`CountingScore`
    to count function evaluations.

    With ``denoise`` a last step y ← y + σ_min² s(y, σ_min) (Tweedie's formula; Euler's
    step from σ_min to 0) removes the remaining N(0, σ_min²I) noise, as the last
    DDPM/DDIM step does: Euler on the DDPM σ's then reproduces DDIM with η = 0.

    Args:
        score: ``score(y, sigma)``, sigma of shape [B].
        x: y at σ_max = ``sigmas[0]``, [B, *shape], e.g. ``process.prior(...)``.
        sigmas: noise levels sorted from largest to smallest.
        callback: gets a :class:`StepInfo` at each reported σ after the first (it costs
            one more score evaluation there).
        cond: passed to the score.
    """
    from torchdiffeq import odeint

    check_ode_options(method, rtol, atol)
    sigmas = check_noise_levels(torch.as_tensor(sigmas, dtype=x.dtype, device=x.device), strictly=True, at_least=2)

    def drift(sigma: Tensor, y: Tensor) -> Tensor:
        return -sigma * call_score(score, y, sigma.expand(y.shape[0]), cond)

    # Adaptive solvers step past the last time and interpolate back; σ < 0 is outside every score's domain.
    options = {"step_t": sigmas[-1:]} if method in ADAPTIVE_METHODS else None
    trajectory = odeint(drift, x, sigmas, method=method, rtol=rtol, atol=atol, options=options)
    if callback is not None:
        for step in range(1, len(sigmas)):
            sigma = sigmas[step]
            callback(StepInfo(trajectory[step], step - 1, sigma.item(), (sigmas[step - 1] - sigma).item(),
                              call_score(score, trajectory[step], sigma.expand(x.shape[0]), cond)))
    y = trajectory[-1]
    if not denoise:
        return y
    return tweedie_denoise(score, y, sigmas[-1].item(), step=len(sigmas) - 1, callback=callback, cond=cond)
