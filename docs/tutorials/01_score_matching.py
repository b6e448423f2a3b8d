# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 1: score matching and Langevin dynamics
#
# A generative model that knows the **score** ∇ₓ log p(x) of the data can sample from it by
# Langevin dynamics, without ever knowing p itself. This notebook follows the seed tutorial on its
# swiss roll: three ways to learn the score from data (exact, sliced and denoising score
# matching), two ways to climb it (gradient ascent and Langevin dynamics), and the
# noise-conditional score network (NCSN) that makes sampling work, measured by the W2 ratio.
# Where the seed goes wrong, a short cell shows its way, what it does, and the correct one.
#
# Every number below is computed here. `SCORELAB_TUTORIAL_QUICK=1` runs the notebook with small
# settings (the test suite does); without it, it runs in a few minutes on 2 cores.

# %%
import os
from pathlib import Path

import torch
from IPython.display import Image, display

import scorelab as sl
from scorelab import plots
from scorelab.app.demo import DEMO_SETTINGS

QUICK = os.environ.get("SCORELAB_TUTORIAL_QUICK") == "1"
N = 1000 if QUICK else 5000  # points per W2 set
SMALL = {"n_data": 2000, "batch_size": 128} if QUICK else {}  # the quick runs' data and batch
RUNS = Path(os.environ.get("SCORELAB_TUTORIAL_DIR", "tutorial_runs")) / "01"
torch.set_num_threads(os.cpu_count() or 1)


def show(path):
    display(Image(filename=str(path)))


def train(name, steps, **settings):
    """A run of the swiss roll with ``settings``, trained ``steps`` steps (200 when quick) into RUNS/name, loaded."""
    config = sl.Config(**{"dataset": "swiss_roll", "steps": 200 if QUICK else steps, "device": "cpu", "seed": 0,
                          **SMALL, **settings})
    sl.train(config, RUNS / name, overwrite=True, progress=False)
    return sl.load_run(RUNS / name, "cpu")


x = sl.data.load("swiss_roll", 10_000, generator=torch.Generator().manual_seed(0))
show(plots.plot_data(x, RUNS / "data.png", title="the swiss roll"))

# %% [markdown]
# ## Exact score matching
#
# Hyvärinen (2005) showed that ½E‖s(x) − ∇ log p(x)‖² equals, up to a constant,
#
# $$J(\theta) = \mathbb{E}_p\left[\operatorname{tr} \nabla_x s(x) + \tfrac12 \|s(x)\|^2\right],$$
#
# which needs no ∇ log p. The trace costs D reverse passes in general; scorelab computes it in
# closed form for an MLP chain, in one forward pass.

# %%
exact = train("exact", 1000, objective="exact")
show(plots.plot_score_fields(exact, x, RUNS / "exact_field.png"))

# %% [markdown]
# ## Sliced score matching
#
# Song et al. (2019) replace the trace by random projections, vᵀ∇ₓs v with E[vvᵀ] = I, one
# vector-Jacobian product each, whatever the dimension:
# $\mathbb{E}_v \mathbb{E}_p[v^\top \nabla_x s(x)\, v + \tfrac12 (v^\top s(x))^2]$.
#
# **The seed's version** normalises v to unit length (so E[vvᵀ] = I/D), squares element by
# element, (s·v)², instead of (vᵀs)², and averages over the D coordinates where the estimator
# sums. In expectation that is the objective divided by D². The cell below evaluates the three on
# the exact run's model and the same data.

# %%
model, batch = exact.model, exact.normalisation.to_model(x[:4000])
g = torch.Generator().manual_seed(1)
hyvarinen = sl.objectives.exact_score_matching(model, batch).item()
sliced = torch.stack([sl.objectives.sliced_score_matching(model, batch, n_projections=8, generator=g)
                      for _ in range(20)]).mean().item()


def seeds_sliced_loss(score, points, generator):
    """The seed's loss: unit v, an element-wise square where (vᵀs)² belongs, a mean over coordinates."""
    v = torch.randn(points.shape, generator=generator)
    v = v / v.norm(dim=-1, keepdim=True)
    s, jvp = torch.autograd.functional.jvp(score, points, v)
    return (jvp * v + (s * v) ** 2 / 2).mean(-1).mean(-1)


seeds = torch.stack([seeds_sliced_loss(model, batch, g) for _ in range(40 if QUICK else 160)]).mean().item()
print(f"Hyvärinen's J {hyvarinen:.4f}   sliced (E[vvᵀ] = I) {sliced:.4f}   "
      f"the seed's {seeds:.4f}   (J/D² = {hyvarinen / 4:.4f})")

# %%
ssm = train("sliced", 1500, objective="sliced")
show(plots.plot_score_fields(ssm, x, RUNS / "sliced_field.png"))

# %% [markdown]
# ## Denoising score matching
#
# Vincent (2011): perturb the data, x̃ = x + σz, and regress onto the score of the perturbation,
# ½E‖s(x̃) + (x̃ − x)/σ²‖². Its minimiser is the score of the *noisy* data p_σ, which is defined
# everywhere, not only on the roll.
#
# **The seed prints this loss raw at σ = 0.01.** Most of it is the variance of the target z/σ,
# which no model can explain, so the number sits near 10⁴ and says nothing. scorelab reports
# σ²·J = ½E‖σs + z‖², with the same minimiser and a scale of D/2 at every σ.

# %%
dsm = train("dsm", 2000, objective="dsm", sigma_min=0.01)
noisy_batch = dsm.normalisation.to_model(x[:4000])
weighted = sl.objectives.denoising_score_matching(dsm.model, noisy_batch, 0.01, generator=g).item()
print(f"σ²-weighted loss {weighted:.3f} (D/2 = 1)   the seed's raw loss {weighted / 0.01**2:.0f}")
show(plots.plot_score_fields(dsm, x, RUNS / "dsm_field.png"))

# %% [markdown]
# ## Gradient ascent against Langevin dynamics
#
# With an exact score we can watch the samplers alone. A mixture of two Gaussians gives it in
# closed form (`sl.data.GaussianMixture`). Gradient ascent, x ← x + εs(x), climbs to a mode: every
# point ends on a peak. Langevin dynamics, x ← x + (ε/2)s(x) + √ε z, samples p.
#
# **The seed draws z with `torch.rand`**, uniform on [0, 1), which adds a drift of 0.5·√ε per
# axis at every step. On a standard Gaussian the drift shows as a shifted mean.

# %%
gaussian = sl.data.GaussianMixture(means=[[0.0, 0.0]], stds=1.0)
start = torch.zeros(4000, 2)
steps, epsilon = (300, 0.05) if QUICK else (1000, 0.05)
correct = sl.sampling.langevin(gaussian, start, n_steps=steps, step_size=epsilon, generator=g)
seeds_way = start.clone()
for _ in range(steps):  # the seed's step, with uniform noise
    seeds_way = seeds_way + epsilon / 2 * gaussian(seeds_way) + epsilon**0.5 * torch.rand(seeds_way.shape, generator=g)
print(f"mean with N(0, I) noise {correct.mean(0).tolist()}   with the seed's uniform noise "
      f"{seeds_way.mean(0).tolist()}   (the target's mean is 0)")

# %%
mixture = sl.data.GaussianMixture(means=[[5.0, 5.0], [-5.0, -5.0]], stds=1.0, weights=[0.8, 0.2])
uniform_start = torch.rand(4000, 2, generator=g) * 16 - 8
ascent = sl.sampling.gradient_ascent(mixture, uniform_start, n_steps=200, step_size=0.1)
plain = sl.sampling.langevin(mixture, uniform_start, n_steps=1000, step_size=0.1, generator=g)
print(f"gradient ascent: spread around the modes {(ascent.abs() - 5).abs().mean():.4f} (it found them, it did not "
      "sample)")
print(f"plain Langevin: share in the major mode {(plain.sum(1) > 0).float().mean():.3f} (the truth is 0.8)")

# %% [markdown]
# Plain Langevin keeps the share that each mode's basin had at the start, because crossing the
# empty gap between the modes takes a time that grows without bound. **Annealed Langevin**
# (Song & Ermon 2019) starts at a large noise level, where p_σ joins the modes, and lowers σ step
# by step, with step sizes α_i = ε σ_i²/σ_L².

# %%
sigmas = sl.noise.geometric_sigmas(20.0, 1.0, 10)
annealed = sl.sampling.annealed_langevin(mixture, uniform_start, sigmas, n_steps_each=100, step_size=0.1,
                                         generator=g)
print(f"annealed Langevin: share in the major mode {(annealed.sum(1) > 0).float().mean():.3f} (the truth is 0.8)")

# %% [markdown]
# ## The noise-conditional score network
#
# One network s(x, σ) learns the score at every level at once (annealed denoising score
# matching, λ(σ) = σ²), and annealed Langevin samples with it. The seed trained such a network
# but drew no samples and measured nothing. Here it samples, and the **W2 ratio** measures it:
# the exact 2-Wasserstein distance between model samples and fresh data, divided by that between
# two fresh data sets (1.0: as close as a perfect sampler gets at this n). Each panel of the score
# field holds one σ (the seed mixed a random σ into every arrow). The settings are the demo's
# (`scorelab.app.demo.DEMO_SETTINGS`: 10 levels from σ = 1 to 0.01), sampled with 10 × 50 Langevin steps.

# %%
ncsn = train("ncsn", 3000, **{**DEMO_SETTINGS, **SMALL}, sampler="ald", n_steps_each=10 if QUICK else 50)
show(plots.plot_score_fields(ncsn, x, RUNS / "ncsn_field.png"))
samples = ncsn.sample(N, generator=torch.Generator().manual_seed(2))
show(plots.plot_samples(x[:N], samples, RUNS / "ncsn_samples.png", title="annealed Langevin samples"))
report = sl.metrics.w2_ratio(lambda n, gen: ncsn.sample(n, generator=gen),
                             lambda n, gen: sl.data.load("swiss_roll", n, generator=gen), n=N,
                             repeats=1 if QUICK else 3)
print(f"W2 ratio {report.ratio:.3f}: model {report.model_mean:.4f} against the floor {report.floor_mean:.4f}")
