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
# # Part 5: guidance
#
# A class-conditional model learns the score of each class, s(x, σ | c) = ∇ₓ log p_σ(x | c), and
# sampling it draws from p(x | c). In practice those samples are often less convincing than one
# would like: the model spreads mass where its class is uncertain. **Guidance** trades some of the
# variety of the samples for more typical ones, by pushing the score away from a weaker reference
# score s_ref with a weight γ:
#
#     s̃(x, σ | c) = s_ref(x, σ) + γ·(s(x, σ | c) − s_ref(x, σ)).
#
# - **Classifier guidance** (Dhariwal & Nichol 2021) added γ·∇ₓ log p_σ(c | x) from a classifier
#   trained on noisy data. By Bayes' rule ∇ₓ log p_σ(c | x) = ∇ₓ log p_σ(x | c) − ∇ₓ log p_σ(x), so
#   the classifier is not needed: **classifier-free guidance** (CFG; Ho & Salimans 2022) trains one
#   network on labels that are dropped some of the time (the "null class" ∅; scorelab's
#   `label_dropout`, 0.1 by default), so that it knows both s(x | c) and s(x | ∅), and takes
#   s_ref = s(x | ∅). Then
#   s̃ = s(x | c) + (γ − 1)·∇ₓ log p_σ(c | x): γ = 1 is the plain conditional model, γ = 0 the
#   unconditional one, γ > 1 moves every sample towards where the class is more certain.
# - **Autoguidance** (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself")
#   takes for s_ref a weaker model of the *same* conditional density, s_bad(x | c): smaller, or
#   trained for fewer steps. Where the two disagree is where the weak model's errors are, and
#   extrapolating away from them corrects the good model's own, smaller errors of the same kind,
#   without the pull towards a few class prototypes that CFG's unconditional reference brings.
# - The **guidance interval** (Kynkäänniemi et al. 2024) guides only at middle noise levels,
#   lo < σ ≤ hi, and uses s(x | c) elsewhere.
#
# In scorelab all three are one score wrapper, `guided(score, weight, *, guide=None, interval=None)`
# (`scorelab.core.guidance`), which every sampler takes. This notebook checks it against exact
# scores, compares CFG with autoguidance on a labelled 2-D density, and guides a digits U-Net.
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
from scorelab.core.guidance import NULL_LABEL, GuidedScore, guided  # noqa: E402
from scorelab.core.processes import PROCESSES  # noqa: E402
from scorelab.plots.images import show_grid  # noqa: E402
from scorelab.sampling import SAMPLERS  # noqa: E402

QUICK = os.environ.get("SCORELAB_TUTORIAL_QUICK") == "1"
# Section 3 loads the class-conditional digits run that ships with scorelab; this one switch trains it here instead
# (minutes on 2 cores). The quick settings always train, a tiny model for seconds.
FROM_SCRATCH = QUICK or os.environ.get("SCORELAB_TUTORIAL_FROM_SCRATCH") == "1"
RUNS = Path(os.environ.get("SCORELAB_TUTORIAL_DIR", "tutorial_runs")) / "05"
RUNS.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(os.cpu_count() or 1)
COLOURS = plt.get_cmap("tab10")


def show(figure, name):
    figure.savefig(RUNS / name, dpi=90, bbox_inches="tight")
    plt.close(figure)
    display(Image(filename=str(RUNS / name)))


# %% [markdown]
# ## 1. Conditional scores with an exact answer
#
# A Gaussian mixture p(x) = Σ_k w_k N(x; μ_k, s_k² I) is a class-conditional density whose classes
# are its components. Noised by N(0, σ² I), component c is N(μ_c, (s_c² + σ²) I), so both halves of
# CFG are known in closed form: `mixture(x, σ, cond=labels)` is the exact score of each row's
# component, and the label `NULL_LABEL` (−1) gives the whole mixture's score, the unconditional
# reference that a network trained with label dropout learns. Three overlapping components:

# %%
mixture = sl.data.GaussianMixture(means=[[-1.5, 0.0], [1.5, 0.0], [0.0, 2.2]], stds=[0.7, 0.7, 0.5],
                                  weights=[0.4, 0.4, 0.2])
points, components = mixture.sample_labelled(3000, generator=torch.Generator().manual_seed(0))
grid = torch.stack(torch.meshgrid(torch.linspace(-4, 4, 161), torch.linspace(-3, 5, 161), indexing="xy"), -1)
density = mixture.log_prob(grid.reshape(-1, 2).double()).exp().reshape(grid.shape[:2])
figure, axes = plt.subplots(figsize=(4.5, 4.5))
axes.contour(grid[..., 0], grid[..., 1], density, levels=8, colors="grey", linewidths=0.7)
axes.scatter(*points.T, s=2, alpha=0.5, c=[COLOURS(int(k)) for k in components])
axes.set_aspect("equal")
axes.set_title("the mixture, coloured by component")
show(figure, "mixture.png")

# %% [markdown]
# The guided score of the wrapper should be exactly s(x | ∅) + γ·(s(x | c) − s(x | ∅)). The check
# below computes the two scores independently of `mixture.score`, by differentiating the log-densities
# log p_σ(x | c) and log p_σ(x) with autograd, and compares: first the null class's score with the
# whole mixture's, then the wrapper with the formula. It also checks the Bayes form
# s̃ = s(x | c) + (γ − 1)·∇ₓ log p_σ(c | x), with log p_σ(c | x) = log w_c + log p_σ(x | c) − log p_σ(x).
# CFG evaluates both halves in one call of the model on a doubled batch (the rows with c, then the
# same rows with ∅).

# %%
generator = torch.Generator().manual_seed(1)
x = 3 * torch.randn(64, 2, generator=generator, dtype=torch.float64)
labels = torch.arange(64) % 3
for sigma_value in (0.1, 1.0, 5.0):
    sigma = torch.full((64,), sigma_value, dtype=torch.float64)
    x_grad = x.clone().requires_grad_()
    log_conditional = mixture.log_prob(x_grad, sigma, cond=labels)
    log_marginal = mixture.log_prob(x_grad, sigma)
    conditional = torch.autograd.grad(log_conditional.sum(), x_grad, retain_graph=True)[0]
    unconditional = torch.autograd.grad(log_marginal.sum(), x_grad, retain_graph=True)[0]
    log_posterior = mixture.weights[labels].log() + log_conditional - log_marginal  # log p_σ(c | x)
    classifier = torch.autograd.grad(log_posterior.sum(), x_grad)[0]
    null = mixture(x, sigma, cond=torch.full_like(labels, NULL_LABEL))  # the null class: the whole mixture
    print(f"σ = {sigma_value:3.1f}: max |s(x | ∅) − ∇ log p_σ(x)| = {(null - unconditional).abs().max():.1e}")
    for gamma in (0.0, 1.0, 3.0):
        wrapped = GuidedScore(mixture, gamma)(x, sigma, cond=labels)
        formula = unconditional + gamma * (conditional - unconditional)
        bayes = conditional + (gamma - 1) * classifier
        print(f"σ = {sigma_value:3.1f}, γ = {gamma:.0f}: max |wrapper − formula| = "
              f"{(wrapped - formula).abs().max():.1e}, |wrapper − Bayes form| = {(wrapped - bayes).abs().max():.1e}")

# %% [markdown]
# Now sample component c = 2 (the small one at the top) from the prior N(0, σ_max² I) of the VE
# process with DPM-Solver++(2M) (part 4), driven by the guided exact score, at γ = 0, 1 and 3.
# γ = 0 samples the whole mixture; γ = 1 samples the component itself, N(μ_2, s_2² I), up to the
# solver's and the prior's small errors. γ = 3 adds twice ∇ₓ log p_σ(2 | x), which points away from
# the other components wherever the classes overlap. The guided scores at different σ are the
# scores of the tilted densities p_σ(x | c)^γ·p_σ(x)^(1−γ), but those are not one density noised
# by N(0, σ²I), so the samples are not exactly draws of the tilted density at σ = 0 (Bradley &
# Nakkiran 2024); what guidance does is best seen by measuring it. The table gives, for each γ,
# the share of samples that Bayes' rule assigns to component 2 (below 100% even for exact draws of
# the component, since the components overlap), their mean, and their spread (standard deviation
# per coordinate) against the component's own s_2.

# %%
process = PROCESSES["ve"].build(PROCESSES["ve"].make({"sigma_max": 20.0, "continuous": True}))
solver = SAMPLERS["dpmpp_2m"]
solver_settings = solver.make({"sample_steps": 20})
n = 1000 if QUICK else 4000
c = 2


def sample_component(score):
    generator = torch.Generator().manual_seed(2)
    start = process.prior((n, 2), generator=generator).double()
    return solver.sample(score, process, solver_settings, start, generator, None, torch.full((n,), c))


def own_share(samples):
    """The share of samples whose most probable component (Bayes' rule on the clean mixture) is c."""
    log_joint = torch.stack([mixture.log_prob(samples, 0.0, torch.full((len(samples),), k)) for k in range(3)], 1)
    return ((log_joint + mixture.weights.log()).argmax(1) == c).double().mean().item()


def describe(name, samples):
    mean, std = samples.mean(0), samples.std(0)
    print(f"{name:22s} own component {own_share(samples):6.1%}   mean ({mean[0]:+.2f}, {mean[1]:+.2f})   "
          f"std ({std[0]:.2f}, {std[1]:.2f}) = {std.mean() / mixture.stds[c, 0]:.2f} × s_2")


print(f"component 2: mean ({mixture.means[c, 0]:+.2f}, {mixture.means[c, 1]:+.2f}), std s_2 = {mixture.stds[c, 0]:.2f}")
by_gamma = {}
for gamma in (0.0, 1.0, 3.0):
    by_gamma[gamma] = sample_component(guided(mixture, gamma))
    describe(f"γ = {gamma:g}", by_gamma[gamma])

figure, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
circle = torch.linspace(0, 2 * torch.pi, 100)
for ax, (gamma, samples) in zip(axes, by_gamma.items()):
    ax.contour(grid[..., 0], grid[..., 1], density, levels=8, colors="grey", linewidths=0.5)
    ax.scatter(*samples.T, s=2, alpha=0.4, color=COLOURS(c))
    for radius in (1, 2):  # circles of radius s_2 and 2·s_2 around μ_2
        ax.plot(mixture.means[c, 0] + radius * mixture.stds[c, 0] * circle.cos(),
                mixture.means[c, 1] + radius * mixture.stds[c, 0] * circle.sin(), color="black", linewidth=0.8)
    ax.set_title(f"component 2, γ = {gamma:g}")
    ax.set_aspect("equal")
show(figure, "mixture_guided.png")

# %% [markdown]
# Guidance with γ > 1 gives fewer samples in the other classes' territory and a narrower cloud, and
# it shifts the cloud *past* μ_2, away from the others: it makes the class more certain, raising
# p(c | x), which is not the same as sampling p(x | c) more faithfully. Where along the noise levels
# does it act? The guidance interval answers that: the same γ = 3 applied only at large noise
# (1 < σ ≤ 20) or only at small noise (0 < σ ≤ 1):

# %%
describe("γ = 3, 1 < σ ≤ 20", sample_component(guided(mixture, 3.0, interval=(1.0, 20.0))))
describe("γ = 3, 0 < σ ≤ 1", sample_component(guided(mixture, 3.0, interval=(0.0, 1.0))))

# %% [markdown]
# Compare the two rows with the row of γ = 3 at every level: the shift of the mean, the push away
# from the other classes, comes from the large noise levels, where the classes still overlap and
# the sample is choosing its mode; the small levels narrow the cloud around where it already is.
# Kynkäänniemi et al. (2024) found on images that guidance at the largest levels costs variety
# (it drives samples to a few modes early) while at the smallest it does little, and guide only in
# a middle interval.
#
# ## 2. Classifier-free guidance against autoguidance on a labelled density
#
# The pinwheel's five arms are its classes (`from scorelab.data.toy import LABELLED`). A run
# trained with `conditional=True` learns s(x, σ | arm), with the label replaced by ∅ for a
# `label_dropout` share (0.1) of each batch, so the same network also learns s(x, σ | ∅).
# `keep_guide_at` keeps a copy of the weights early in training, `guide.safetensors` in the run
# directory: the same network, trained for a tenth of the steps, is autoguidance's bad version of
# itself. On the command line: `scorelab train --dataset pinwheel --conditional --keep-guide-at 300`.

# %%
from scorelab.data.toy import LABELLED  # noqa: E402

steps = 600 if QUICK else 3000
pinwheel_config = sl.Config(dataset="pinwheel", conditional=True, steps=steps, keep_guide_at=steps // 10,
                            device="cpu", seed=0, **({"batch_size": 256} if QUICK else {}))
sl.train(pinwheel_config, RUNS / "pinwheel", overwrite=True, progress=False)
run = sl.load_run(RUNS / "pinwheel", "cpu")
guide = str(RUNS / "pinwheel" / "guide.safetensors")
print(f"{run.classes} classes, {run.step} steps; the guide is the checkpoint at step {sl.load_run(guide, 'cpu').step}")

# %% [markdown]
# Each arm is sampled with the plain conditional model (γ = 1), with CFG at γ = 3 and with
# autoguidance at γ = 3 (`run.sample(n, cond=labels, guidance=3.0, guide=...)`, with `cond` one
# label for all samples or one per sample). Two measures per arm, against fresh data of *that arm*:
#
# - the **W2 ratio** of part 4, the exact W2 distance to the arm's data divided by the W2 between
#   two fresh draws of the arm (1.0 is as close as the data is to itself at this n): it asks whether
#   the samples have the arm's whole distribution, so it also counts lost variety;
# - the share of **outliers**, samples farther from every data point of the arm than 99% of fresh
#   data points are (about 1% for a perfect sampler): it asks only whether samples land on the arm,
#   the "fidelity" that guidance is meant to buy.

# %%
per_arm = 200 if QUICK else 1000
data, data_labels = LABELLED["pinwheel"](20 * per_arm, torch.Generator().manual_seed(0))
fresh, fresh_labels = LABELLED["pinwheel"](20 * per_arm, torch.Generator().manual_seed(1))
arm_data = [data[data_labels == k][:per_arm] for k in range(run.classes)]
arm_fresh = [fresh[fresh_labels == k][:per_arm] for k in range(run.classes)]
floors = [sl.metrics.wasserstein2(arm_data[k], arm_fresh[k]) for k in range(run.classes)]
# An outlier is farther from the arm's data than 99% of the arm's fresh points are.
reach = [torch.cdist(arm_fresh[k], arm_data[k]).min(1).values.quantile(0.99) for k in range(run.classes)]


def outlier_share(x, k):
    return (torch.cdist(x, arm_data[k]).min(1).values > reach[k]).double().mean().item()


settings = {"conditional (γ = 1)": {}, "CFG γ = 3": {"guidance": 3.0},
            "autoguidance γ = 3": {"guidance": 3.0, "guide": guide}}
arm_labels = torch.arange(run.classes).repeat_interleave(per_arm)  # all arms in one batch, one label per row
panels = {}
heading = f"W2 ratio, {per_arm} per arm:"
print(f"{heading:25s} " + "  ".join(f"arm {k}" for k in range(run.classes)) + "   mean   outliers")
for title, options in settings.items():
    samples = run.sample(len(arm_labels), generator=torch.Generator().manual_seed(10), cond=arm_labels, **options)
    arms = [samples[arm_labels == k] for k in range(run.classes)]
    ratios = [sl.metrics.wasserstein2(arm, arm_data[k]) / floors[k] for k, arm in enumerate(arms)]
    outliers = sum(outlier_share(arm, k) for k, arm in enumerate(arms)) / run.classes
    panels[title] = arms
    print(f"{title:25s} " + "  ".join(f"{ratio:5.2f}" for ratio in ratios)
          + f"  {sum(ratios) / len(ratios):5.2f}   {outliers:6.1%}")

figure, axes = plt.subplots(1, 4, figsize=(14, 3.8), sharex=True, sharey=True)
shown = run.classes * per_arm
axes[0].scatter(*data[:shown].T, s=1.5, alpha=0.5, c=[COLOURS(int(k)) for k in data_labels[:shown]])
axes[0].set_title("data")
for ax, (title, arms) in zip(axes[1:], panels.items()):
    for k, arm in enumerate(arms):
        ax.scatter(*arm.T, s=1.5, alpha=0.5, color=COLOURS(k))
    ax.set_title(title)
for ax in axes:
    ax.set_aspect("equal")
show(figure, "pinwheel_guidance.png")

# %% [markdown]
# W2 to the arm's own data rewards sampling p(x | arm) itself, so any guidance is a departure from
# it: the question is what each kind buys for what it costs. CFG's reference is the unconditional
# density, so its push goes away from the *other* arms: the arms come out thinner, shorter and pulled
# towards their outer, least ambiguous ends. Few of its samples are outliers, but much of each arm's
# variety is gone, which the W2 ratio shows. Autoguidance's reference is the same arm learned worse,
# so its push goes away from the weak model's errors (mass between the arms, blurred ends) and keeps
# the arm's shape: compare its outlier share and its W2 ratio with the other two rows. That is the
# point of Karras et al.'s Fig. 1, made on a 2-D density like this one. With the quick settings
# (600 training steps on small batches) both models are rough and the comparison is only
# illustrative; `python benchmarks/guidance.py --two-d` measures it on the default run over several
# γ. Setting `guidance_interval="lo,hi"` in `run.sample` applies either kind of guidance only in
# that band of σ.
#
# ## 3. Guided digits
#
# The same switch on 8×8 digits: `conditional=True` gives the U-Net a learned embedding of the label
# (ten classes and the null class), added to its noise-level embedding. `run.class_grid_rows` draws a
# grid with one row per class, sample i of class c the same as `run.sample` of class c alone gives,
# so the rows at different γ start from the same noise and differ by the guidance only. The run is
# `pretrained:digits`, trained by the first command below with its guide kept at step 750, its file
# `pretrained:digits/guide.safetensors`. (The quick settings train for a few dozen steps: their rows
# are noise, guided or not.)

# %%
digits_settings = ({"steps": 30, "batch_size": 32, "channels": 8, "sample_steps": 10, "keep_guide_at": 10} if QUICK
                   else {"keep_guide_at": 750})
if FROM_SCRATCH:
    digits_config = sl.Config(dataset="digits", conditional=True, device="cpu", seed=0, **digits_settings)
    sl.train(digits_config, RUNS / "digits", overwrite=True, progress=False)
digits_run = str(RUNS / "digits") if FROM_SCRATCH else "pretrained:digits"
digits = sl.load_run(digits_run, "cpu")
per_class = 4 if QUICK else 8
digit_panels = {
    "γ = 1 (conditional)": {"guidance": 1.0},
    "CFG γ = 3": {"guidance": 3.0},
    "autoguidance γ = 3": {"guidance": 3.0, "guide": f"{digits_run}/guide.safetensors"},
}
figure, axes = plt.subplots(1, len(digit_panels), figsize=(3.2 * len(digit_panels), 3.4 * per_class / 4 + 1))
for ax, (title, options) in zip(axes, digit_panels.items()):
    rows = digits.class_grid_rows(0, per_class * digits.classes, seed=0, per_class=per_class, **options)
    show_grid(ax, rows, digits.value_range, columns=per_class)
    ax.set_title(title)
show(figure, "digits_guidance.png")
guide_step = sl.load_run(digit_panels["autoguidance γ = 3"]["guide"], "cpu").step
print(f"{digits.step} training steps, guide at step {guide_step}, pixels in {digits.value_range}")

# %% [markdown]
# On the command line the same run and figures are
#
#     scorelab train --dataset digits --conditional --keep-guide-at 750 --out runs/cdigits
#     scorelab sample runs/cdigits --class 3 --guidance 2 --out threes.png
#     scorelab sample runs/cdigits --class all --guidance 2 --out grid.png
#     scorelab sample runs/cdigits --class all --guidance 2 --guidance-interval 0.28 5.42 --out interval.png
#     scorelab sample runs/cdigits --class all --guidance 2 --guide runs/cdigits/guide.safetensors --out auto.png
#     scorelab evaluate runs/cdigits --guidance 2
#
# (or, without training, `pretrained:digits` for `runs/cdigits`), where `--class all` draws one row per class, `--guidance-interval 0.28 5.42` is the interval
# Kynkäänniemi et al. used for EDM2 on ImageNet-512 (σ in the model's units, data scaled to
# [−1, 1]), and `evaluate --guidance` reports, per class, the share of samples that a classifier
# assigns to the class asked for and the Fréchet-distance ratio against that class's test images.
# Guidance raises the agreement at the cost of variety; `benchmarks/guidance.py` measures the
# trade-off over γ on the default run.
#
# ## References
#
# - Dhariwal & Nichol (2021), Diffusion models beat GANs on image synthesis.
# - Ho & Salimans (2022), Classifier-free diffusion guidance.
# - Karras, Aittala, Kynkäänniemi, Lehtinen, Aila & Laine (2024), Guiding a diffusion model with a
#   bad version of itself.
# - Kynkäänniemi, Aittala, Karras, Laine, Aila & Lehtinen (2024), Applying guidance in a limited
#   interval improves sample and distribution quality in diffusion models.
# - Bradley & Nakkiran (2024), Classifier-free guidance is a predictor-corrector.
