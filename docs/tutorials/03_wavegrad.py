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
# # Part 3: WaveGrad, diffusion on waveforms
#
# WaveGrad (Chen et al. 2020) is a DDPM whose samples are waveforms and whose condition is the
# log-mel spectrogram of the speech: a vocoder. Three ideas set it apart from part 2. The network
# is conditioned on the **continuous noise level** √ᾱ rather than the step index, so it can be
# sampled on any schedule. The loss is the L1 norm of ε − ε̂. And a **few-step schedule**, searched
# after training, makes 6 refinement steps do the work of 1000.
#
# The speech is synthesised offline by eSpeak NG (the `speech` data set, 20 minutes of it). Started
# from noise, a network trained briefly on it keeps little more than the loudness envelope of the
# speech, over hiss; so scorelab's chains start instead from **Griffin-Lim's waveform** of the same
# mel spectrogram, noised to the chain's first level (shallow diffusion: the sampler's `start`), and
# the network only refines it. Training a good vocoder takes long on 2 cores, so the notebook loads
# the one that ships with scorelab, `pretrained:speech` (`scorelab pretrained` says how it was trained
# and what it scores; BENCHMARKS.md "audio" what each start scores). `FROM_SCRATCH` trains one here
# instead, for two minutes; with `SCORELAB_TUTORIAL_QUICK=1` (the test suite) it trains for seconds
# on synthetic tones.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from IPython.display import Audio, Image, display  # noqa: E402

import scorelab as sl  # noqa: E402
from scorelab.data.audio import SAMPLE_RATE  # noqa: E402
from scorelab.data.mel import MelSettings, log_mel  # noqa: E402
from scorelab.evaluation.audio import test_utterances  # noqa: E402
from scorelab.evaluation.schedule_search import prepare, saved_record  # noqa: E402
from scorelab.evaluation.vocoding import griffin_lim_vocode, vocode, whole_frames  # noqa: E402
from scorelab.pretrained import resolve  # noqa: E402

QUICK = os.environ.get("SCORELAB_TUTORIAL_QUICK") == "1"
# The one switch: train the vocoder here (two minutes; the quick settings' tiny one in seconds) rather than load
# the one that ships.
FROM_SCRATCH = QUICK or os.environ.get("SCORELAB_TUTORIAL_FROM_SCRATCH") == "1"
RUNS = Path(os.environ.get("SCORELAB_TUTORIAL_DIR", "tutorial_runs")) / "03"
RUNS.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(os.cpu_count() or 1)


def show(figure, name):
    figure.savefig(RUNS / name, dpi=90, bbox_inches="tight")
    plt.close(figure)
    display(Image(filename=str(RUNS / name)))


# %% [markdown]
# ## The mel features
#
# One definition serves training, vocoding and the metrics (`scorelab.data.mel`): an STFT of 1024
# samples every 256 (`torch.stft`), its magnitude projected onto 80 mel bands (Slaney's filter
# bank, as librosa builds it), and the log. A pure tone lights the band around its frequency.

# %%
settings = MelSettings()
time_axis = torch.arange(86 * settings.hop) / SAMPLE_RATE  # about a second: spectrograms take whole hops
figure, axes = plt.subplots(1, 3, figsize=(12, 3))
for ax, hertz in zip(axes, (300, 1000, 4000)):
    mel = log_mel(0.5 * torch.sin(2 * torch.pi * hertz * time_axis), settings)
    ax.imshow(mel, origin="lower", aspect="auto", cmap="magma")
    ax.set_title(f"{hertz} Hz: loudest band {mel.mean(1).argmax().item()} of {settings.n_mels}")
    ax.set_xlabel("frame")
show(figure, "tones_mel.png")

# %% [markdown]
# ## Training, on the continuous noise level
#
# Each training segment gets a level drawn between two adjacent steps of the chain: t uniform, then
# √ᾱ uniform between √ᾱ_t and √ᾱ_{t−1} (Chen et al., Sec. 3.1). The draws cover the whole range of
# levels, not only the T values of the steps.

# %%
process = sl.processes.VP("linear", 1000, continuous=True)
draws = process.training_sigma(20_000, torch.zeros(1), torch.Generator().manual_seed(0))
root_alpha_bar = (1 + draws.double() ** 2).rsqrt()
figure, ax = plt.subplots(figsize=(5, 3))
ax.hist(root_alpha_bar.numpy(), bins=100)
ax.set_xlabel("√ᾱ of a training draw")
show(figure, "continuous_levels.png")

settings_of_run = (dict(dataset="tones", n_tones=8, tone_seconds=0.5, segment_frames=8, width=0.0625, steps=30,
                        batch_size=4, timesteps=100) if QUICK else dict(dataset="speech", steps=250))
config = sl.Config(model="wavegrad", device="cpu", seed=0, **settings_of_run)
if FROM_SCRATCH:
    sl.train(config, RUNS / "wavegrad", overwrite=True, progress=False)
run_dir = RUNS / "wavegrad" if FROM_SCRATCH else resolve("pretrained:speech")  # the shipped run's directory

# %% [markdown]
# ## The few-step schedules
#
# After training, a search scores candidate β schedules of 6, 25 and 50 steps (the training
# schedule respaced, and geometric ones, down to the small levels that only refine Griffin-Lim's
# waveform) by the log-mel distance of their reconstructions on held-out segments, and keeps the
# one a listener would rate best (DNSMOS) of those within 1.5 times Griffin-Lim's distance, or the
# closest where none is (`scorelab train` runs it itself; the shipped run keeps its search's record).

# %%
schedules = prepare(run_dir, steps=(6,) if QUICK else (6, 25, 50)) if FROM_SCRATCH else saved_record(run_dir)
for steps, found in schedules.items():
    print(f"{steps} steps from {found['start']}: chose {found['name']} (log-mel L1 {found['log_mel_error']:.3f}); "
          f"the respaced training schedule {found['candidates']['respaced']['log_mel_l1']:.3f}")

# %% [markdown]
# ## Listening
#
# A test utterance, never heard in training, vocoded from its mel spectrogram by WaveGrad in 6
# steps (refining Griffin-Lim's waveform) and by Griffin-Lim alone (which keeps the mel's
# magnitudes and searches a phase for them).

# %%
run = sl.load_run(run_dir, "cpu")
(wave,), (name,) = test_utterances(run, 1)
wavegrad = vocode(run, wave, generator=torch.Generator().manual_seed(1), sampler="wavegrad", sample_steps=6)
griffin = griffin_lim_vocode(wave, n_iter=32)
print(f"{name}: {len(wave) / SAMPLE_RATE:.2f} s; WaveGrad-6 took {wavegrad.seconds:.2f} s, "
      f"Griffin-Lim-32 {griffin.seconds:.2f} s")
for label, sound in (("reference", wave), ("WaveGrad, 6 steps", wavegrad.wave), ("Griffin-Lim, 32", griffin.wave)):
    print(label)
    display(Audio(sound.numpy(), rate=SAMPLE_RATE))
figure, axes = plt.subplots(1, 3, figsize=(12, 3), sharey=True)
for ax, (label, sound) in zip(axes, (("reference", wave), ("WaveGrad-6", wavegrad.wave),
                                      ("Griffin-Lim-32", griffin.wave))):
    ax.imshow(log_mel(whole_frames(sound), settings), origin="lower", aspect="auto", cmap="magma")
    ax.set_title(label)
show(figure, "spectrograms.png")
