# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Part 2: diffusion probabilistic models (DDPM)
#
# Ho et al. (2020) fix a forward process that adds Gaussian noise over T steps and learn to
# undo one step at a time. Learning the reverse step comes down to predicting the noise that was
# added (the ε-loss), which is denoising score matching at every level at once. This notebook
# checks each piece against its closed form, then trains a DDPM on 2-D data, samples it by ancestral
# sampling, and gives its variational bound in nats; then draws 8×8 digits and MNIST from the trained
# runs that ship with scorelab.
#
# `SCORELAB_TUTORIAL_QUICK=1` runs the notebook with small settings (the test suite does).

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from IPython.display import Image, display  # noqa: E402

import scorelab as sl  # noqa: E402
from scorelab.plots.images import show_grid  # noqa: E402

QUICK = os.environ.get("SCORELAB_TUTORIAL_QUICK") == "1"
# The image runs load trained from the runs that ship with scorelab; this one switch trains them here instead
# (minutes on 2 cores). The quick settings always train, tiny models for seconds.
FROM_SCRATCH = QUICK or os.environ.get("SCORELAB_TUTORIAL_FROM_SCRATCH") == "1"
RUNS = Path(os.environ.get("SCORELAB_TUTORIAL_DIR", "tutorial_runs")) / "02"
RUNS.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(os.cpu_count() or 1)
g = torch.Generator().manual_seed(0)


def show(figure, name):
    figure.savefig(RUNS / name, dpi=90, bbox_inches="tight")
    plt.close(figure)
    display(Image(filename=str(RUNS / name)))


# %% [markdown]
# ## The forward process
#
# q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I), with ᾱ_t = Π(1 − β_s) and β rising linearly from
# 10⁻⁴ to 0.02 over T = 1000 steps. For data N(m, v) the marginal is N(√ᾱ_t m, ᾱ_t v + 1 − ᾱ_t):
# the cell checks the sampled moments against it.

# %%
process = sl.processes.VP("linear", 1000)
alpha_bar = process.alphas_cumprod
m, v = 2.0, 0.25
x0 = m + v**0.5 * torch.randn(200_000, 1, generator=g, dtype=torch.float64)
for t in (1, 100, 500, 1000):
    sigma = process.levels[t - 1]  # the level of step t in the VE coordinates scorelab works in
    x_t = process.perturb(x0, sigma.expand(len(x0)), torch.randn(x0.shape, generator=g, dtype=torch.float64))
    mean, var = alpha_bar[t - 1].sqrt() * m, alpha_bar[t - 1] * v + 1 - alpha_bar[t - 1]
    print(f"t = {t:4d}: mean {x_t.mean():.4f} (closed form {mean:.4f}), variance {x_t.var():.4f} ({var:.4f})")

moons = sl.data.load("moons", 5000, generator=g)
figure, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, t in zip(axes, (1, 100, 300, 1000)):
    sigma = process.levels[t - 1].float()
    noisy = process.perturb(moons, sigma.expand(len(moons)), torch.randn(moons.shape, generator=g))
    ax.scatter(*noisy.T, s=1, alpha=0.3)
    ax.set_title(f"x_t at t = {t}")
    ax.set_aspect("equal")
show(figure, "forward.png")

# %% [markdown]
# ## The posterior q(x_{t−1} | x_t, x_0)
#
# Bayes' rule on two Gaussians gives it in closed form (Ho et al., eqs. 6–7): mean
# √ᾱ_{t−1}β_t/(1 − ᾱ_t)·x_0 + √α_t(1 − ᾱ_{t−1})/(1 − ᾱ_t)·x_t and variance
# β̃_t = (1 − ᾱ_{t−1})β_t/(1 − ᾱ_t). The cell draws many (x_{t−1}, x_t) pairs from one x_0 and
# regresses x_{t−1} on x_t: the slope and the residual variance are the posterior's.

# %%
t, x_start = 300, 1.5
beta = 1 - alpha_bar[t - 1] / alpha_bar[t - 2]
before = alpha_bar[t - 2].sqrt() * x_start + (1 - alpha_bar[t - 2]).sqrt() * torch.randn(400_000, generator=g,
                                                                                           dtype=torch.float64)
after = (1 - beta).sqrt() * before + beta.sqrt() * torch.randn(400_000, generator=g, dtype=torch.float64)
slope = ((before - before.mean()) * (after - after.mean())).mean() / after.var()
residual = (before - before.mean() - slope * (after - after.mean())).var()
print(f"slope {slope:.5f} (closed form {(1 - beta).sqrt() * (1 - alpha_bar[t - 2]) / (1 - alpha_bar[t - 1]):.5f})")
print(f"variance {residual:.3e} (closed form β̃_t = {(1 - alpha_bar[t - 2]) * beta / (1 - alpha_bar[t - 1]):.3e})")

# %% [markdown]
# ## The ε-loss, ancestral sampling and the bound
#
# The network ε̂(x_t, t) learns the noise: L = E‖ε − ε̂(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖², t uniform.
# Its noise prediction is a score, ε̂ = −√(1 − ᾱ_t)·∇ log q(x_t), so sampling can walk the posterior
# backwards with x_0 replaced by its estimate (ancestral sampling, σ_t² = β_t). The variational
# bound on −log p(x_0) sums one KL per step; scorelab gives it in nats per sample. Beside it is the
# exact negative log-likelihood of the probability-flow ODE built from the same network: another
# model of the data, so neither number bounds the other, but both should be close for a good
# network. (With the quick settings the bound runs on 100 of the 1000 steps.)

# %%
steps = 400 if QUICK else 4000
config = sl.Config(dataset="moons", model="ddpm", steps=steps, device="cpu", seed=0)
sl.train(config, RUNS / "moons", overwrite=True, progress=False)
run = sl.load_run(RUNS / "moons", "cpu")
n = 1000 if QUICK else 5000
samples = run.sample(n, sampler="ddpm", generator=torch.Generator().manual_seed(1))
report = sl.metrics.w2_ratio(lambda k, gen: run.sample(k, sampler="ddpm", generator=gen),
                             lambda k, gen: sl.data.load("moons", k, generator=gen), n=n, repeats=1)
figure, ax = plt.subplots(figsize=(4, 3))
ax.scatter(*moons[:n].T, s=1, color="grey", alpha=0.4, label="data")
ax.scatter(*samples.T, s=1, color="tab:red", alpha=0.4, label="DDPM samples")
ax.legend(markerscale=8)
show(figure, "moons_samples.png")
print(f"W2 ratio of 1000-step ancestral sampling: {report.ratio:.3f}")

held_out = sl.data.load("moons", 200 if QUICK else 1000, generator=torch.Generator().manual_seed(9))
model_units = run.normalisation.to_model(held_out)
bound = sl.likelihood.variational_bound(run.model, model_units, run.process, n_steps=100 if QUICK else None,
                                        generator=torch.Generator().manual_seed(2))
nll = -run.log_prob(held_out[:100], generator=torch.Generator().manual_seed(3))
print(f"variational bound of the chain: {bound.total.mean():.3f} nats per sample "
      f"(prior {bound.prior.mean():.3f}, steps {bound.diffusion.mean():.3f}, decoder {bound.decoder.mean():.3f})")
print(f"exact NLL of the probability-flow ODE: {nll.mean():.3f} nats per sample")

# %% [markdown]
# ## On images: 8×8 digits and MNIST
#
# The same process and loss, with a U-Net (`--dataset digits` chooses it with the DDPM family), here
# trained with each image's label so that it can be asked for a class (part 5 says how). Training it
# takes minutes on 2 cores, so the notebook loads the run that ships with scorelab,
# `pretrained:digits` (`scorelab pretrained` lists the shipped runs, how each was trained and what it
# scores); `FROM_SCRATCH` trains the same recipe here instead. A row per class, the same noise in
# every row:

# %%
if FROM_SCRATCH:
    digits_config = sl.Config(dataset="digits", conditional=True, device="cpu", seed=0,
                              **({"steps": 30, "channels": 8, "levels": 2} if QUICK else {}))
    sl.train(digits_config, RUNS / "digits", overwrite=True, progress=False)
digits = sl.load_run(RUNS / "digits" if FROM_SCRATCH else "pretrained:digits", "cpu")
per_class = 8
rows = digits.class_grid_rows(0, per_class * digits.classes, seed=4, per_class=per_class,
                              **({"sample_steps": 10} if QUICK else {}))
figure, ax = plt.subplots(figsize=(4, 5))
show_grid(ax, rows, digits.value_range, columns=per_class)
show(figure, "digits.png")
sampler, settings = digits.sampler_settings()
print(f"{digits.step} training steps; sampled by {sampler} in {settings.sample_steps} steps")

# %% [markdown]
# MNIST's 28×28 digits take the flow-matching family (part 4), class-conditional, sampled by
# DPM-Solver++(2M) in 20 network evaluations: `scorelab train --dataset mnist5k`, 16 minutes on 2
# cores, which `pretrained:mnist` has done.

# %%
if FROM_SCRATCH:
    mnist_config = sl.Config(dataset="mnist5k", device="cpu", seed=0,
                             **({"steps": 10, "channels": 8, "levels": 2} if QUICK else {}))
    sl.train(mnist_config, RUNS / "mnist", overwrite=True, progress=False)
mnist = sl.load_run(RUNS / "mnist" if FROM_SCRATCH else "pretrained:mnist", "cpu")
rows = mnist.class_grid_rows(0, per_class * mnist.classes, seed=4, per_class=per_class,
                             **({"sample_steps": 4} if QUICK else {}))
figure, ax = plt.subplots(figsize=(4, 5))
show_grid(ax, rows, mnist.value_range, columns=per_class)
show(figure, "mnist.png")
