"""The trace of a score's Jacobian, tr ∇ₓs(x) = ∇·s(x): exactly, in closed form, or by Hutchinson.

Exact score matching needs it with a graph (to train through it), the likelihood without
one (to integrate it along the ODE). One home for the ways to get it:

- :func:`trace_by_reverse_passes`: any score, one reverse pass per coordinate (D of them).
- :func:`chain_trace`: a Linear → activation → … → Linear chain, in closed form from its
  weights and activation slopes, with no reverse pass at all.
- :func:`hutchinson_trace`: vᵀ(∇ₓs)v for random v with E[vvᵀ] = I (Hutchinson 1989), one
  vector-Jacobian product per probe, unbiased whatever D.

A module that knows its own trace says so with ``computes_trace = True`` and returns
``(s, tr)`` when called with ``with_trace=True``. :func:`score_and_trace` asks for it through
any DistributedDataParallel or ``torch.compile`` wrapper around the module (whose forward
hooks must run), so wrapping a model never switches the closed form off. A bare
``nn.Sequential`` chain gets the closed form too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from scorelab.core.score import Score, call_score


def differentiable(x: Tensor) -> Tensor:
    """``x`` itself if it already requires grad (so results stay differentiable in it), else a detached
    view that does; the caller's tensor and its flags are never changed."""
    return x if x.requires_grad else x.detach().requires_grad_(True)


def trace_by_reverse_passes(value: Tensor, x: Tensor, *, create_graph: bool) -> Tensor:
    """Σ_i ∂value_i/∂x_i per sample, for ``value`` computed from ``x`` (both [B, *shape]).

    Row i of the Jacobian is one reverse pass, ∇ₓ value_i summed over the batch (samples
    are independent). ``create_graph`` keeps the graph so the trace can be differentiated.
    """
    flat_value = value.flatten(1)
    count = flat_value.shape[1]
    trace = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(count):
        (row,) = torch.autograd.grad(flat_value[:, i].sum(), x, create_graph=create_graph,
                                     retain_graph=create_graph or i + 1 < count)
        trace = trace + row.flatten(1)[:, i]
    return trace


def hutchinson_trace(value: Tensor, x: Tensor, probe: Tensor, *, create_graph: bool) -> Tensor:
    """vᵀ(∂value/∂x)v per sample for the probe v shaped like ``x``: one vector-Jacobian product."""
    (vjp,) = torch.autograd.grad(value, x, probe, create_graph=create_graph, retain_graph=create_graph)
    return (vjp * probe).flatten(1).sum(dim=1)


# --- the closed form for Linear/activation chains ----------------------------------------------

# Derivatives φ'(a) of the elementwise activations whose chains get a closed-form trace.
ACTIVATION_SLOPES: dict[type[nn.Module], Callable[[nn.Module, Tensor], Tensor]] = {
    nn.Softplus: lambda layer, a: torch.where(
        layer.beta * a > layer.threshold, torch.ones_like(a), torch.sigmoid(layer.beta * a)
    ),
    nn.SiLU: lambda layer, a: torch.sigmoid(a) * (1 + a * (1 - torch.sigmoid(a))),
    nn.Tanh: lambda layer, a: 1 - torch.tanh(a) ** 2,
}


def is_chain(layers: list[nn.Module]) -> bool:
    """True for Linear → φ → Linear → … → φ → Linear with every φ in :data:`ACTIVATION_SLOPES`."""
    linears, activations = layers[0::2], layers[1::2]
    return (len(layers) >= 3 and len(layers) % 2 == 1
            and all(type(layer) is nn.Linear for layer in linears)
            and all(type(layer) in ACTIVATION_SLOPES for layer in activations))


def _trace_of_product(weights: list[Tensor], slopes: list[Tensor]) -> Tensor:
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


def chain_trace(layers: list[nn.Module], x: Tensor) -> tuple[Tensor, Tensor]:
    """s(x) and tr ∇ₓs(x) of a Linear/activation chain (:func:`is_chain`) on x [B, D], in one forward pass.

    ∇ₓs = W_L A_{L−1} W_{L−1} ⋯ A_1 W_1 with A_l = diag φ'(a_l) at the pre-activations a_l,
    so the trace follows from the weights and the slopes, with no reverse pass.
    """
    weights, slopes = [], []
    hidden = x
    for layer in layers:
        if isinstance(layer, nn.Linear):
            weights.append(layer.weight)
        else:
            slopes.append(ACTIVATION_SLOPES[type(layer)](layer, hidden))
        hidden = layer(hidden)
    return hidden, _trace_of_product(weights, slopes)


# --- any score --------------------------------------------------------------------------------


def unwrapped(module: Any) -> Any:
    """The module inside DistributedDataParallel, DataParallel and ``torch.compile`` wrappers."""
    compiled = sys.modules.get("torch._dynamo.eval_frame")  # loaded by the time anything was compiled
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif compiled is not None and isinstance(module, compiled.OptimizedModule):
            module = module._orig_mod
        else:
            return module


def computes_trace(score: Score) -> bool:
    """True when ``score``, or the module a wrapper holds, returns its own trace on ``with_trace=True``."""
    return bool(getattr(unwrapped(score), "computes_trace", False))


def score_and_trace(score: Score, x: Tensor, cond: Any = None) -> tuple[Tensor, Tensor]:
    """s(x) and tr ∇ₓs(x) per sample, differentiable in the parameters (and in x if it requires grad).

    In closed form for a module that :func:`computes_trace` (called through its wrappers) and
    for a plain ``nn.Sequential`` chain; otherwise one forward pass and D reverse passes.
    """
    if type(score) is nn.Sequential and is_chain(list(score)) and cond is None:
        return chain_trace(list(score), x)
    if computes_trace(score):
        return score(x, with_trace=True) if cond is None else score(x, cond=cond, with_trace=True)
    with torch.enable_grad():
        x = differentiable(x)
        value = call_score(score, x, cond=cond)
        return value, trace_by_reverse_passes(value, x, create_graph=True)
