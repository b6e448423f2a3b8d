"""Score-matching objectives: pure functions ``(score, data, ...) -> scalar loss``.

Single-level objectives call ``score(x)``; multi-level ones call ``score(x, sigma)``
with ``sigma`` a tensor [B] of per-sample noise levels. The score-matching losses
are means over the rows of ``x`` [B, D], and none of them changes ``x``.

How the exact Jacobian trace is computed (measured by ``benchmarks/objectives.py``,
table in BENCHMARKS.md): for the seed's MLP on CPU, ``torch.func`` forward mode
(``vmap`` over ``jvp``) was slower than the seed's own loop at every D, batched
``autograd.grad`` slower still, and ``vmap(jacrev)`` no faster than D reverse passes.
So a generic score gets D reverse passes through its one forward graph (2-3x faster
than the seed's loop, which also repeats the forward pass, at D ≥ 128), while a
Linear/activation chain (``sl.models.MLP``, ``nn.Sequential``) gets its trace in
closed form from the weights: about two network steps at any D, 125x faster than
the seed's loop at D = 128.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from scorelab.diffusion import predict_x0, q_posterior, q_sample, score_to_eps
from scorelab.errors import ConfigError, DataError, require_positive, require_positive_int
from scorelab.models.mlp import MLP
from scorelab.noise import per_sample, vp_sigmas
from scorelab.rng import randint, randn_like

Score = Callable[..., Tensor]

PROJECTIONS = ("rademacher", "gaussian", "sphere")
TRACES = ("exact", "hutchinson")


def _require_batch(x: Tensor) -> None:
    if x.ndim != 2:
        raise DataError(f"x must be a batch of vectors of shape [B, D], got shape {tuple(x.shape)}")


# Derivatives φ'(a) of the elementwise activations whose chains get a closed-form trace.
_ACTIVATION_SLOPES: dict[type[nn.Module], Callable[[nn.Module, Tensor], Tensor]] = {
    nn.Softplus: lambda layer, a: torch.where(
        layer.beta * a > layer.threshold, torch.ones_like(a), torch.sigmoid(layer.beta * a)
    ),
    nn.SiLU: lambda layer, a: torch.sigmoid(a) * (1 + a * (1 - torch.sigmoid(a))),
    nn.Tanh: lambda layer, a: 1 - torch.tanh(a) ** 2,
}


def _layer_chain(score: Score) -> list[nn.Module] | None:
    """The layers of ``score`` if it is Linear → φ → Linear → … → φ → Linear, else None.

    Only the exact type ``MLP`` qualifies (a subclass may change ``forward``), and
    an ``nn.Sequential`` whose activations all have a known slope.
    """
    if type(score) is MLP:
        layers = list(score.net)
    elif isinstance(score, nn.Sequential):
        layers = list(score)
    else:
        return None
    linears, activations = layers[0::2], layers[1::2]
    is_chain = (
        len(layers) >= 3
        and len(layers) % 2 == 1
        and all(type(layer) is nn.Linear for layer in linears)
        and all(type(layer) in _ACTIVATION_SLOPES for layer in activations)
    )
    return layers if is_chain else None


def _chain_trace(weights: list[Tensor], slopes: list[Tensor]) -> Tensor:
    """tr(W_L A_{L−1} W_{L−1} ⋯ A_1 W_1) per sample, with A_l = diag(slopes[l−1]) [B, H_l].

    By the cyclic property the trace also equals tr((W_1 W_L) A_{L−1} W_{L−1} ⋯ W_2 A_1),
    whose only D-sized work is the one product W_1 W_L. So:
    - one hidden layer: tr = Σ_k d1_k (W_1 W_2)_kk;
    - two (the seed's MLP): tr = Σ_jk d1_j (W_1 W_3)_jk (W_2)_kj d2_k, one [B, H]×[H, H] product;
    - more: carry a per-sample matrix from the cheaper end, either ∂h_l/∂x = A_l W_l ⋯ A_1 W_1
      ([B, H_l, D], one B·H²·D product per layer) or A_l W_l ⋯ W_2 A_1 ([B, H_l, H_1],
      B·H³ per layer after the second).
    """
    first, *middle, last = weights
    if not middle:
        return slopes[0] @ (first * last.T).sum(dim=1)
    if len(middle) == 1:
        return ((slopes[0] @ ((first @ last) * middle[0].T)) * slopes[1]).sum(dim=1)
    dim, width = first.shape[1], first.shape[0]
    if (len(middle) - 1) * width < len(middle) * dim:
        carried = slopes[1][:, :, None] * middle[0] * slopes[0][:, None, :]
        closing, rest = first @ last, zip(middle[1:], slopes[2:])
    else:
        carried, closing, rest = slopes[0][:, :, None] * first, last, zip(middle, slopes[1:])
    for weight, slope in rest:
        carried = slope[:, :, None] * (weight @ carried)
    return (carried * closing.T).sum(dim=(1, 2))


def _chain_score_and_trace(layers: list[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    """s(x) and tr ∇ₓs(x) for a Linear/activation chain, in one forward pass.

    ∇ₓs = W_L A_{L−1} W_{L−1} ⋯ A_1 W_1 with A_l = diag φ'(a_l) at the pre-activations
    a_l, so the trace follows from the weights and the slopes (:func:`_chain_trace`),
    with no reverse pass through the network.
    """
    weights, slopes = [], []
    hidden = x
    for layer in layers:
        if isinstance(layer, nn.Linear):
            weights.append(layer.weight)
        else:
            slopes.append(_ACTIVATION_SLOPES[type(layer)](layer, hidden))
        hidden = layer(hidden)
    return hidden, _chain_trace(weights, slopes)


def _differentiable(x: Tensor) -> Tensor:
    """``x`` itself if it already requires grad (so the loss stays differentiable in it),
    else a detached view that does; the caller's tensor and its flags are never changed."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _score_and_trace_by_rows(score: Score, x: Tensor) -> tuple[Tensor, Tensor]:
    """s(x) and tr ∇ₓs(x) for any score: one forward pass, then one reverse pass per coordinate.

    Row i of the Jacobian is ∇ₓ s_i; the graph is kept (create_graph) so the
    trace can be differentiated with respect to the parameters.
    """
    with torch.enable_grad():
        x = _differentiable(x)
        s = score(x)
        trace = sum(
            torch.autograd.grad(s[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1])
        )
    return s, trace


def exact_score_matching(
    score: Score,
    x: Tensor,
    *,
    trace: str = "exact",
    n_projections: int = 1,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hyvärinen's score-matching objective (Hyvärinen 2005, Theorem 1):

        J(θ) = E_p[ tr(∇ₓ s(x)) + ½‖s(x)‖² ],

    equal to ½E‖s(x) − ∇ₓ log p(x)‖² up to a constant that does not depend on s.

    Args:
        score: called as ``score(x)``; returns [B, D].
        x: data, [B, D]. It is not modified.
        trace: ``"exact"`` computes tr ∇ₓs exactly (in closed form for a
            Linear/activation chain such as ``sl.models.MLP``, otherwise with D
            reverse passes); ``"hutchinson"`` estimates it as E_v[vᵀ∇ₓs v] with
            ``n_projections`` Rademacher vectors (Hutchinson 1989), which is
            :func:`sliced_score_matching` with variance reduction: a few network
            passes, whatever D.
        n_projections, generator: used by ``trace="hutchinson"`` only.
    """
    _require_batch(x)
    if trace not in TRACES:
        raise ConfigError(f"unknown trace {trace!r}; use one of: {', '.join(TRACES)}")
    if trace == "hutchinson":
        return sliced_score_matching(
            score, x, n_projections=n_projections, variance_reduction=True, generator=generator
        )
    layers = _layer_chain(score)
    s, jacobian_trace = _chain_score_and_trace(layers, x) if layers else _score_and_trace_by_rows(score, x)
    return (jacobian_trace + 0.5 * s.pow(2).sum(dim=1)).mean()


def random_projections(
    x: Tensor, n_projections: int, projection: str = "rademacher", generator: torch.Generator | None = None
) -> Tensor:
    """``n_projections`` random directions v for each row of ``x``, shape [M, B, D], with E[vvᵀ] = I.

    - ``"rademacher"``: independent ±1 entries (lowest variance for vᵀAv).
    - ``"gaussian"``: v ~ N(0, I).
    - ``"sphere"``: uniform on the sphere of radius √D, so ‖v‖² = D exactly.
      (The seed's unit vectors have E[vvᵀ] = I/D, which scales the objective down.)
    """
    require_positive_int("n_projections", n_projections)
    if projection not in PROJECTIONS:
        raise ConfigError(f"unknown projection {projection!r}; use one of: {', '.join(PROJECTIONS)}")
    shape = x.new_empty((n_projections, *x.shape))
    if projection == "rademacher":
        return 2.0 * randint(2, shape.numel(), x, generator).reshape(shape.shape).to(x.dtype) - 1.0
    gaussian = randn_like(shape, generator)
    if projection == "gaussian":
        return gaussian
    return gaussian * (x.shape[1] ** 0.5 / gaussian.norm(dim=-1, keepdim=True))


def sliced_score_matching(
    score: Score,
    x: Tensor,
    *,
    n_projections: int = 1,
    projection: str = "rademacher",
    variance_reduction: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced score matching (Song, Garg, Shi & Ermon 2019, eq. 7 and SSM-VR, eq. 8):

        SSM:     E_v E_p[ vᵀ ∇ₓs(x) v + ½ (vᵀ s(x))² ]
        SSM-VR:  E_v E_p[ vᵀ ∇ₓs(x) v ] + ½ E_p‖s(x)‖²

    With E[vvᵀ] = I both equal Hyvärinen's objective in expectation; SSM-VR
    replaces ½(vᵀs)² by its expectation over v, which lowers the variance.
    vᵀ∇ₓs v is one vector-Jacobian product per projection, so a step costs a few
    network passes whatever D (the exact trace needs the whole Jacobian diagonal).

    Args:
        score: called as ``score(x)``; returns [B, D].
        x: data, [B, D]. It is not modified.
        n_projections: M directions per sample; the loss averages over them.
        projection: ``"rademacher"``, ``"gaussian"`` or ``"sphere"`` (see :func:`random_projections`).
        variance_reduction: use SSM-VR.
        generator: the source of the projections.
    """
    _require_batch(x)
    directions = random_projections(x, n_projections, projection, generator)
    with torch.enable_grad():
        x = _differentiable(x)
        s = score(x)
        curvature = torch.stack([
            (torch.autograd.grad(s, x, v, create_graph=True)[0] * v).sum(dim=1) for v in directions
        ])
    if variance_reduction:
        return curvature.mean() + 0.5 * s.pow(2).sum(dim=1).mean()
    return curvature.mean() + 0.5 * (directions * s).sum(dim=2).pow(2).mean()


def stable_target(x_noisy: Tensor, x: Tensor, sigma: Tensor, reference: Tensor) -> Tensor:
    """σ·∇log p̂_σ(x̃) for each row: the scaled score of a small empirical mixture (Xu et al. 2023).

        p̂_σ(x̃_i) ∝ N(x̃_i; x_i, σ_i²I) + Σ_j N(x̃_i; r_j, σ_i²I),
        σ_i ∇log p̂_σ(x̃_i) = Σ_k w_ik (y_k − x̃_i)/σ_i,  w_i = softmax_k(−‖x̃_i − y_k‖²/(2σ_i²)),

    over y = (x_i, r_1, …, r_R): the sample that was perturbed and R reference data
    points. For small σ the sample's own term dominates and this is Vincent's target −z;
    for large σ it averages over the references, which cuts the target's variance
    ("Stable Target Field for Reduced Variance Score Estimation in Diffusion Models",
    ICLR 2023). The bias vanishes as R grows.
    """
    scale = 2 * sigma[:, None] ** 2
    own = -(x_noisy - x).pow(2).sum(dim=1, keepdim=True) / scale
    # ‖a‖² + ‖b‖² − 2a·b: one matrix product, about 3x faster than cdist on CPU for small D.
    squared = x_noisy.pow(2).sum(dim=1, keepdim=True) + reference.pow(2).sum(dim=1) - 2 * x_noisy @ reference.T
    others = -squared.clamp_min(0) / scale
    weights = torch.softmax(torch.cat([own, others], dim=1), dim=1)
    mean = weights[:, :1] * x + weights[:, 1:] @ reference
    return (mean - x_noisy) / sigma[:, None]


def _scaled_denoising_residual(
    score: Score, x: Tensor, sigma: Tensor, *, conditional: bool, generator: torch.Generator | None,
    reference: Tensor | None = None,
) -> Tensor:
    """σ·s(x̃) + z for x̃ = x + σz, z ~ N(0, I); one row per sample.

    This is σ times the DSM residual s(x̃) − ∇ log q_σ(x̃|x) = s(x̃) + z/σ
    (Vincent 2011), so its squared norm is O(D) at every σ. With ``reference``
    points the target −z becomes :func:`stable_target`.
    """
    z = randn_like(x, generator)
    sigma_column = sigma[:, None]
    x_noisy = x + sigma_column * z
    predicted = score(x_noisy, sigma) if conditional else score(x_noisy)
    target = -z if reference is None else stable_target(x_noisy, x, sigma, reference)
    return sigma_column * predicted - target


def denoising_score_matching(
    score: Score, x: Tensor, sigma: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """Denoising score matching at one noise level σ (Vincent 2011), reported σ²-weighted.

    Vincent's objective is J(θ) = ½ E‖s(x̃) + (x̃ − x)/σ²‖² with x̃ = x + σz. It is
    the Fisher divergence ½ E‖s − ∇ log p_σ‖² on p_σ = p * N(0, σ²I) plus the constant
    D/(2σ²) − ½ E‖∇ log p_σ‖², which is the variance of the target −z/σ minus what any
    score can explain. For small σ that constant dwarfs the part that changes (≈ 10⁴
    for the seed's σ = 0.01), so the raw value hides progress. We return
    σ²·J = ½ E‖σ s(x̃) + z‖²: the same minimiser, O(D/2) at every σ, and σ² times the
    Fisher divergence above its floor D/2 − (σ²/2) E‖∇ log p_σ‖². Divide by σ² to get J.

    ``score`` is called as ``score(x̃)``.
    """
    require_positive("sigma", sigma)
    sigmas = per_sample(sigma, x)
    residual = _scaled_denoising_residual(score, x, sigmas, conditional=False, generator=generator)
    return 0.5 * residual.pow(2).sum(dim=1).mean()


def annealed_denoising_score_matching(
    score: Score,
    x: Tensor,
    sigmas: Tensor,
    *,
    weight_power: float = 2.0,
    reference: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The NCSN loss (Song & Ermon 2019, eq. 6), one random level per sample.

        L(θ) = (1/L) Σ_i λ(σ_i) · ½ E‖s(x̃, σ_i) + (x̃ − x)/σ_i²‖²,  λ(σ) = σ^weight_power.

    Each sample draws its level i uniformly, which is an unbiased estimate of
    the average over levels. With the paper's λ(σ) = σ² every term is
    ½ E‖σ s + z‖², so all levels contribute on the same scale.

    ``reference``: data points [R, D], drawn independently of ``x``, that replace
    the target −(x̃ − x)/σ² by the stable target field (:func:`stable_target`).
    At large σ the plain target is mostly noise, and the relative masses of
    well-separated modes are learned there: on ``8gaussians`` the χ² of the sampled
    mode weights against 1/8 (20 000 samples, 7 degrees of freedom) was 96 with
    Vincent's target and 31, 45 and 27 with 128, 256 and 2048 references (one
    exploratory training run each, 2026-11-27). The χ² that remains is mostly the
    training set's own: its 10 000 points hold 11.9% to 13.2% per mode.

    ``score`` is called as ``score(x̃, sigma)`` with ``sigma`` of shape [B].
    """
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    if sigmas.ndim != 1 or len(sigmas) == 0 or not (sigmas > 0).all():
        raise ConfigError("sigmas must be a non-empty 1-D tensor of positive noise levels")
    level = randint(len(sigmas), x.shape[0], x, generator)
    sigma = sigmas[level]
    residual = _scaled_denoising_residual(score, x, sigma, conditional=True, generator=generator,
                                          reference=reference)
    weight = sigma ** (weight_power - 2.0)
    return 0.5 * (weight * residual.pow(2).sum(dim=1)).mean()


# --- Diffusion (DDPM) objectives: an ε-prediction is a score seen through σ_t (scorelab.diffusion) ---


def diffusion_simple_loss(
    score: Score, x: Tensor, alphas_cumprod: Tensor, *, generator: torch.Generator | None = None
) -> Tensor:
    """L_simple = E_{t,ε} ‖ε − ε̂(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² (Ho et al. 2020, eq. 14), t uniform.

    With ε̂ = −σ_t s(·) and σ_t = √((1 − ᾱ_t)/ᾱ_t) (``sl.diffusion``), ε − ε̂ is the scaled
    denoising residual σ_t s(x_0 + σ_t ε, σ_t) + ε, so L_simple is exactly twice the
    annealed DSM loss with λ(σ) = σ² over the levels σ_t: DDPM training is NCSN
    training on the DDPM noise levels. Summed over dimensions, averaged over the batch.
    ``score`` is called as ``score(y, sigma)``.
    """
    return 2.0 * annealed_denoising_score_matching(score, x, vp_sigmas(alphas_cumprod), generator=generator)


@dataclass(frozen=True)
class VariationalBound:
    """The DDPM bound −log p_θ(x_0) ≤ L_T + Σ_{t≥2} L_{t−1} + L_0, per sample, in nats.

    Attributes (each a tensor [B]):
        prior: L_T = KL(q(x_T | x_0) ‖ N(0, I)).
        diffusion: Σ_{t=2..T} KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)).
        decoder: L_0 = −log p_θ(x_0 | x_1), a continuous Gaussian decoder.
    """

    prior: Tensor
    diffusion: Tensor
    decoder: Tensor

    @property
    def total(self) -> Tensor:
        return self.prior + self.diffusion + self.decoder


def _gaussian_kl(mean_q: Tensor, var_q: Tensor, mean_p: Tensor, var_p: Tensor) -> Tensor:
    """KL(N(μ_q, v_q I) ‖ N(μ_p, v_p I)) = ½ Σ_d [ln(v_p/v_q) + (v_q + (μ_q − μ_p)²)/v_p − 1], per row."""
    terms = torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1
    return 0.5 * terms.sum(dim=1)


@torch.no_grad()
def diffusion_variational_bound(
    score: Score,
    x: Tensor,
    alphas_cumprod: Tensor,
    *,
    variance: str = "beta",
    generator: torch.Generator | None = None,
) -> VariationalBound:
    """The DDPM variational bound on −log p_θ(x_0) in nats (Ho et al. 2020, eq. 5), per sample.

    p_θ(x_{t−1} | x_t) = N(μ̃(x̂_0, x_t), σ_t² I) is the chain :func:`scorelab.sampling.ddpm`
    samples from, with σ_t² = β_t (``variance="beta"``) or β̃_t (``"posterior"``), and
    x̂_0 from the score's ε-prediction. Each L_{t−1} is a KL between Gaussians, estimated
    at one draw x_t ~ q(x_t | x_0) per step (Ho et al.'s evaluation loop).

    The decoder is continuous, p_θ(x_0 | x_1) = N(x̂_0(x_1), β_1 I), since our data are
    continuous (Ho et al. discretise to 8 bits instead). Its variance is β_1 for both
    choices, because β̃_1 = 0. So the bound is for a chain whose last step adds N(0, β_1 I),
    while the samplers return the decoder mean; the difference is of order β_1.
    Costs one score evaluation per step of the chain.
    """
    if variance not in ("beta", "posterior"):
        raise ConfigError(f"unknown DDPM variance {variance!r}; use one of: beta, posterior")
    alpha_bars = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
    sigmas = vp_sigmas(alpha_bars).tolist()
    alpha_bars = alpha_bars.tolist()
    eps_model = score_to_eps(score)

    def denoised(x_t: Tensor, step: int) -> Tensor:
        sigma = per_sample(sigmas[step], x)
        return predict_x0(x_t, eps_model(x_t, sigma), alpha_bars[step])

    last = alpha_bars[-1]
    prior = 0.5 * (last * x**2 + (1 - last) - 1 - math.log(1 - last)).sum(dim=1)
    diffusion = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for step in range(1, len(alpha_bars)):
        alpha_bar, alpha_bar_prev = alpha_bars[step], alpha_bars[step - 1]
        x_t, _ = q_sample(x, alpha_bar, generator=generator)
        true_mean, true_variance = q_posterior(x, x_t, alpha_bar, alpha_bar_prev)
        model_mean, _ = q_posterior(denoised(x_t, step), x_t, alpha_bar, alpha_bar_prev)
        model_variance = 1 - alpha_bar / alpha_bar_prev if variance == "beta" else true_variance
        diffusion += _gaussian_kl(true_mean, true_variance, model_mean, torch.as_tensor(model_variance).to(x))
    x_1, _ = q_sample(x, alpha_bars[0], generator=generator)
    beta_1 = 1 - alpha_bars[0]
    decoder = 0.5 * ((x - denoised(x_1, 0)) ** 2 / beta_1 + math.log(2 * math.pi * beta_1)).sum(dim=1)
    return VariationalBound(prior, diffusion, decoder)
