"""WaveGrad: the backbone, the L1 ε-loss, the few-step chains and their search, checked against closed forms;
a tiny model on tones, and the waveform commands end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import CHROMIUM, assert_clean_error, browser_verdict, run_cli, without_saved_setting

import scorelab as sl
from scorelab.core.noise import alphas_cumprod, beta_schedule, sigmas_of_betas
from scorelab.core.processes import VP
from scorelab.evaluation.schedule_search import candidates, choose, geometric_betas, respaced_betas
from scorelab.models import build_model
from scorelab.models.wavegrad import WaveGrad, noise_embedding
from scorelab.objectives import OBJECTIVES, eps_loss_at
from scorelab.runs.config import Config
from scorelab.sampling import SAMPLERS

pytest.importorskip("librosa")

HOP = 256
TINY_WAVEGRAD = dict(dataset="tones", n_tones=8, tone_seconds=0.5, segment_frames=8, width=0.0625, steps=30,
                     batch_size=4, checkpoint_every=30, log_every=5, timesteps=100, seed=0, device="cpu")


def test_wavegrad_is_the_paper_size_at_width_one_and_keeps_a_sample_to_itself():
    assert 14e6 < sum(p.numel() for p in WaveGrad(width=1.0).parameters()) < 17e6  # Chen et al.: about 15 M
    torch.manual_seed(0)
    network = WaveGrad(width=0.0625)
    for p in network.output.parameters():  # the output conv starts at zero; give it weights to see through it
        torch.nn.init.normal_(p, std=0.1)
    x, mel, c_noise = torch.randn(3, 1, 4 * HOP), torch.randn(3, 80, 4), torch.tensor([-2.0, 0.0, 1.0])
    out = network(x, c_noise, mel)
    assert out.shape == x.shape
    # Each sample's output depends on its own input, mel and noise level only.
    alone = network(x[1:2], c_noise[1:2], mel[1:2])
    assert torch.allclose(out[1:2], alone, atol=1e-5)
    changed = mel.clone()
    changed[0] += 1.0
    again = network(x, c_noise, changed)
    assert not torch.allclose(again[0], out[0]) and torch.allclose(again[1:], out[1:], atol=1e-6)


def test_wavegrad_refuses_a_waveform_that_is_not_its_mel_s_length():
    network = WaveGrad(width=0.0625)
    with pytest.raises(sl.errors.DataError, match="frames"):
        network(torch.randn(1, 1, 3 * HOP), torch.zeros(1), torch.randn(1, 80, 4))
    with pytest.raises(sl.errors.DataError, match="log-mel"):
        network(torch.randn(1, 1, 4 * HOP), torch.zeros(1))


def test_the_noise_embedding_reads_the_square_root_of_alpha_bar():
    sigma = torch.tensor([0.01, 1.0, 30.0])
    root = 1 / torch.sqrt(1 + sigma**2)
    embedding = noise_embedding(sigma.log(), 8)[:, :, 0]
    # The first frequency is 1: sin(5000·√ᾱ) and cos(5000·√ᾱ).
    assert torch.allclose(embedding[:, 0], torch.sin(5000 * root), atol=1e-3)
    assert torch.allclose(embedding[:, 4], torch.cos(5000 * root), atol=1e-3)


def test_the_vp_forward_process_on_waveforms_has_its_closed_form_moments():
    """x_t = √ᾱ x_0 + √(1 − ᾱ) ε: mean √ᾱ x_0 and variance 1 − ᾱ in every sample of a waveform."""
    process = VP("wavegrad", 1000)
    generator = torch.Generator().manual_seed(0)
    x0 = 0.5 * torch.sin(torch.arange(2 * HOP) / 7.0).expand(20_000, 1, -1)
    sigma = torch.full((len(x0),), 0.75)
    x_t = process.perturb(x0, sigma, torch.randn(x0.shape, generator=generator))
    alpha_bar = 1 / (1 + 0.75**2)
    assert torch.allclose(x_t.mean(0), math.sqrt(alpha_bar) * x0[0], atol=0.03)
    assert torch.allclose(x_t.var(0), torch.full_like(x0[0], 1 - alpha_bar), rtol=0.05)


def test_the_l1_eps_loss_is_the_mean_absolute_noise_error_summed_over_samples():
    """With ε̂ = 0 the L1 loss is E‖ε‖₁ = D·√(2/π); with the L2 norm it is E‖ε‖² = D."""
    x = torch.zeros(4000, 1, 64)
    sigma = torch.full((len(x),), 2.0)
    zero_eps = lambda y, s, cond=None: torch.zeros_like(y)  # noqa: E731 - ε̂ = 0 is the score 0
    generator = torch.Generator().manual_seed(1)
    l1 = eps_loss_at(zero_eps, x, sigma, norm="l1", generator=generator)
    l2 = eps_loss_at(zero_eps, x, sigma, norm="l2", generator=generator)
    assert l1.item() == pytest.approx(64 * math.sqrt(2 / math.pi), rel=0.01)
    assert l2.item() == pytest.approx(64, rel=0.01)
    with pytest.raises(sl.errors.ConfigError, match="eps norm"):
        eps_loss_at(zero_eps, x, sigma, norm="l3")


def test_a_few_step_chain_keeps_its_own_levels():
    betas = geometric_betas(1e-4, 0.5, 6)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.5)
    assert all(b / a == pytest.approx(betas[1] / betas[0]) for a, b in zip(betas, betas[1:]))
    sigmas = sigmas_of_betas(betas)
    assert torch.all(sigmas[:-1] > sigmas[1:]) and len(sigmas) == 6
    # Respacing keeps the training chain's ᾱ at the kept steps, so both chains end where the training one does.
    training = beta_schedule("wavegrad", 1000)
    short = respaced_betas(training, 25)
    assert alphas_cumprod(torch.tensor(short))[-1].item() == pytest.approx(alphas_cumprod(training)[-1].item())


def _gaussian_eps_sampling(betas: str, sample_steps: int, variances: torch.Tensor, n: int = 20_000,
                           guess: torch.Tensor | None = None) -> torch.Tensor:
    """The wavegrad sampler with the exact score of Gaussian "audio" N(0, diag(v)), in VE coordinates:
    s(y, σ) = −y/(v + σ²), conditioned on a dummy mel it passes through; from ``guess`` where one is given."""
    process = VP("wavegrad", 1000, continuous=True)
    settings = SAMPLERS["wavegrad"].make({"betas": betas, "sample_steps": sample_steps,
                                          "start": "noise" if guess is None else "griffin_lim"})

    def score(y, sigma, cond=None):
        assert cond is not None
        return -y / (variances + sigma[:, None, None] ** 2)

    generator = torch.Generator().manual_seed(2)
    start = process.prior((n, 1, len(variances)), generator=generator)
    from_guess = {} if guess is None else {"guess": guess.expand(n, 1, len(variances))}
    return SAMPLERS["wavegrad"].sample(score, process, settings, start, generator, None, torch.zeros(n, 80, 1),
                                       **from_guess)


def _chain_moments(sigmas: list[float], variance: float, mean: float, spread: float) -> tuple[float, float]:
    """The exact mean and variance of the ancestral chain's output for N(0, v) data and its exact denoiser
    D = y·v/(v + σ²), from y ~ N(mean, spread): each step y' = c·y + noise, c = r + (1 − r)·v/(v + σ²),
    r = σ'²/σ², noise of variance σ'²(1 − r)."""
    for sigma, sigma_next in zip(sigmas, [*sigmas[1:], 0.0]):
        ratio = sigma_next**2 / sigma**2
        gain = ratio + (1 - ratio) * variance / (variance + sigma**2)
        mean, spread = gain * mean, gain**2 * spread + sigma_next**2 * (1 - ratio)
    return mean, spread


def _chain_variance(sigmas: list[float], variance: float) -> float:
    """The chain's output variance from its prior, y ~ N(0, 1 + σ_1²)."""
    return _chain_moments(sigmas, variance, 0.0, 1 + sigmas[0] ** 2)[1]


def test_wavegrad_sampling_with_the_exact_eps_of_gaussian_audio_reproduces_its_moments():
    """The sampled moments are the chain's closed form, and 1000 steps bring those within 7% of the data's.
    (The posterior variance β̃ leaves out Var[x_0 | x_t], so a chain is a little narrow where few of its
    steps fall near σ² = v: that is what the closed form says, not a sampling error.)"""
    variances = torch.tensor([0.005, 0.01, 0.02, 0.05])
    samples = _gaussian_eps_sampling("", 1000, variances)
    assert torch.all(samples.mean(0)[0].abs() < 5 * (variances / len(samples)).sqrt())
    sigmas = VP("wavegrad", 1000).grid().tolist()
    exact = torch.tensor([_chain_variance(sigmas, v) for v in variances.tolist()])
    assert torch.allclose(samples.var(0)[0], exact, rtol=0.04)  # the estimate's own spread: √(2/n) = 1%
    assert torch.all((exact < variances) & (exact > 0.93 * variances))


def test_a_griffin_lim_start_is_the_guess_noised_to_the_chain_s_first_level():
    """From a guess g the chain starts at y_N ~ N(g, σ_N²) (shallow diffusion): the sampled moments are the chain's
    closed form from there, which keeps part of g, and not its closed form from the prior."""
    variances, guess, betas = torch.tensor([0.05, 0.2]), torch.tensor([[0.3, -0.6]]), "0.001,0.01,0.05,0.2"
    samples = _gaussian_eps_sampling(betas, 4, variances, guess=guess)
    sigmas = sigmas_of_betas([float(b) for b in betas.split(",")]).tolist()
    for k, v in enumerate(variances.tolist()):
        mean, spread = _chain_moments(sigmas, v, guess[0, k].item(), sigmas[0] ** 2)
        assert samples[:, 0, k].mean().item() == pytest.approx(mean, abs=4 * (spread / len(samples)) ** 0.5)
        assert samples[:, 0, k].var().item() == pytest.approx(spread, rel=0.04)
        assert abs(mean) > 10 * (spread / len(samples)) ** 0.5  # the guess shows; from the prior the mean is 0
    settings = SAMPLERS["wavegrad"].make({"betas": betas, "sample_steps": 4, "start": "griffin_lim"})
    with pytest.raises(sl.errors.ConfigError, match="needs a first estimate"):
        SAMPLERS["wavegrad"].sample(lambda y, sigma, cond=None: -y, VP(), settings, torch.zeros(2, 1, 2), None, None,
                                    None)


def test_a_searched_refining_chain_is_refused_from_noise():
    """A chain searched to refine Griffin-Lim's waveform (σ_N < 1) walked from noise would return noise: one line.
    From its guess, or from noise with a chain that starts in noise, it runs."""
    refining, from_noise = "0.000001,0.00001,0.0001", "0.001,0.01,0.05,0.2,0.5,0.9"
    settings = SAMPLERS["wavegrad"].make({"schedules": f"3:{refining};6:{from_noise}", "sample_steps": 3,
                                          "start": "noise"})
    score = lambda y, sigma, cond=None: -y  # noqa: E731
    start = torch.zeros(2, 1, 4)
    with pytest.raises(sl.errors.ConfigError, match="too little noise to start from noise"):
        SAMPLERS["wavegrad"].sample(score, VP(), settings, start, None, None, None)
    six = SAMPLERS["wavegrad"].make({"schedules": f"3:{refining};6:{from_noise}", "sample_steps": 6, "start": "noise"})
    assert SAMPLERS["wavegrad"].sample(score, VP(), six, start, None, None, None).isfinite().all()
    guessed = SAMPLERS["wavegrad"].make({"schedules": f"3:{refining}", "sample_steps": 3, "start": "griffin_lim"})
    assert SAMPLERS["wavegrad"].sample(score, VP(), guessed, start, None, None, None, guess=start).isfinite().all()


def test_the_schedule_search_returns_a_schedule_no_worse_than_the_respaced_one_on_its_objective():
    """The objective: the error in variance of Gaussian "audio" sampled in 6 steps with its exact ε; with no candidate
    within the bound, the least error is chosen."""
    variances = torch.tensor([0.001, 0.005, 0.02, 0.05])

    def variance_error(betas):
        samples = _gaussian_eps_sampling(",".join(map(repr, betas)), len(betas), variances, n=4000)
        return (samples.var(0)[0].log() - variances.log()).abs().mean().item()

    schedules = candidates(beta_schedule("wavegrad", 1000), 6)
    found = {name: {"log_mel_l1": variance_error(betas), "dnsmos": 1.0} for name, betas in schedules.items()}
    best = choose(found, l1_bound=0.0)
    assert found[best]["log_mel_l1"] == min(score["log_mel_l1"] for score in found.values())
    assert found[best]["log_mel_l1"] <= found["respaced"]["log_mel_l1"]


def test_the_search_chooses_the_best_rated_chain_within_the_distance_bound():
    found = {"a": {"log_mel_l1": 0.20, "dnsmos": 2.0}, "b": {"log_mel_l1": 0.25, "dnsmos": 2.4},
             "c": {"log_mel_l1": 0.40, "dnsmos": 3.0}}
    assert choose(found, l1_bound=0.3) == "b"  # c is rated higher but too far from the reference
    assert choose(found, l1_bound=0.1) == "a"  # none within: the least distance
    # From Griffin-Lim's waveform the candidates reach down to the levels that only refine it.
    training = beta_schedule("wavegrad", 1000)
    refining = set(candidates(training, 6, "griffin_lim")) - set(candidates(training, 6))
    assert refining and all(max(candidates(training, 6, "griffin_lim")[name]) <= 0.03 * (1 + 1e-9) for name in refining)


def test_the_wavegrad_model_brings_its_family():
    config = Config(dataset="tones")
    assert (config.model.name, config.process.name, config.objective.name, config.sampler.name) == \
        ("wavegrad", "vp", "eps", "wavegrad")
    assert config.process.continuous and config.process.schedule == "wavegrad"
    assert config.objective.eps_norm == "l1"
    assert (config.sampler.settings.start, config.data.settings.prior) == ("griffin_lim", "spectral")
    with pytest.raises(sl.errors.ConfigError, match="waveforms"):
        build_model("wavegrad", config.model.settings, shape=(2,), process=VP())


@pytest.mark.slow
def test_a_tiny_wavegrad_on_tones_lowers_its_loss_on_waveforms_scaled_to_unit_variance(tmp_path):
    from scorelab.runs.trained import TrainedRun
    from scorelab.runs.training import training_data

    config = Config(**{**TINY_WAVEGRAD, "steps": 60, "checkpoint_every": 60})
    result = sl.train(config, tmp_path / "run", progress=False)
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()[1:]
    losses = [float(row.split(",")[1]) for row in rows]
    assert result.steps == 60 and losses[-1] < 0.9 * losses[0]
    normalisation = TrainedRun.load(tmp_path / "run", "cpu").normalisation
    assert normalisation.shift.abs().max() == 0
    assert normalisation.scale.unique().tolist() == pytest.approx([training_data(config).std().item()])
    assert OBJECTIVES["eps"].make({"eps_norm": "l1"}).eps_norm == "l1"


@pytest.mark.slow
def test_the_waveform_commands_end_to_end(tmp_path, capsys):
    """train (with the schedule search), vocode, sample, evaluate and plot on a tiny tones run."""
    from scorelab.data.audio import tone
    from scorelab.evaluation.vocoding import write_wav

    run_dir = tmp_path / "run"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in TINY_WAVEGRAD.items()]
    code, out, err = run_cli(capsys, "train", "--out", run_dir, "--no-progress", *flags)
    assert code == 0, err
    schedules = json.loads((run_dir / "schedule_search.json").read_text())
    assert set(schedules) == {"6", "25", "50"}
    six = schedules["6"]
    assert six["name"] == choose(six["candidates"], 1.5 * six["griffin_lim"]["log_mel_l1"])
    assert six["log_mel_error"] == six["candidates"][six["name"]]["log_mel_l1"] and 1 <= six["griffin_lim"]["dnsmos"] <= 5
    # The chosen chains are the run's sampler settings, which sampling reads as they are.
    run = sl.load_run(run_dir, device="cpu")
    assert run.sampler_settings()[1].schedules.split(";")[0] == "6:" + ",".join(map(repr, schedules["6"]["betas"]))

    _a_run_searched_before_schedules_were_a_setting_samples_as_it_did(run_dir, tmp_path / "old", schedules)
    _a_run_saved_before_its_start_and_prior_starts_from_noise_with_white_noise(run_dir, tmp_path / "older")

    speech = tmp_path / "in.wav"
    write_wav(speech, tone(torch.Generator().manual_seed(5), 0.3))
    code, out, err = run_cli(capsys, "vocode", run_dir, "--input", speech, "--out", tmp_path / "out.wav")
    assert code == 0, err
    from scorelab.data.audio import read_wav

    assert len(read_wav(tmp_path / "out.wav")) == len(read_wav(speech))

    code, out, err = run_cli(capsys, "sample", run_dir, "--n", 1, "--out", tmp_path / "samples")
    assert code == 0, err
    assert (tmp_path / "samples" / "test_000.wav").is_file()

    code, out, err = run_cli(capsys, "evaluate", run_dir, "--n", 1, "--vocoder-steps", 6)
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())["audio"]
    assert [row["method"] for row in metrics["rows"]] == ["reference", "WaveGrad-6 from Griffin-Lim",
                                                          "Griffin-Lim-32", "Griffin-Lim-100"]
    assert all(row["log_mel_l1"] > 0 and row["real_time_factor"] > 0 for row in metrics["rows"][1:])
    assert all(1 <= row["dnsmos"] <= 5 for row in metrics["rows"])

    code, out, err = run_cli(capsys, "plot", run_dir)
    assert code == 0, err
    page = (run_dir / "listen.html").read_text()
    assert page.count("<audio") == 4 and "data:audio/wav;base64," in page
    assert page.count("DNSMOS") == 5 and page.count("log-mel L1") == 4  # the reference has no distance to itself
    assert (run_dir / "spectrograms.png").is_file() and (run_dir / "waveforms.png").is_file()
    code, out, err = run_cli(capsys, "report", run_dir)  # the run's page plays the same examples
    assert code == 0, err
    report = (run_dir / "report.html").read_text()
    assert report.count("<audio") == len(list((run_dir / "audio").glob("*.wav"))) >= 4
    assert "spectrograms.png" in report and "WaveGrad-6" in report
    if CHROMIUM is not None:  # and in a browser every player has its sound
        verdict = browser_verdict(run_dir / "report.html", tmp_path)
        assert verdict["audio"] == report.count("<audio") and verdict["silent"] == verdict["broken"] == 0, verdict
        assert verdict["errors"] == [], verdict

    code, out, err = run_cli(capsys, "vocode", run_dir, "--input", tmp_path / "missing.wav",
                             "--out", tmp_path / "o.wav")
    assert_clean_error(code, err, "missing.wav")


def _a_run_searched_before_schedules_were_a_setting_samples_as_it_did(run_dir, old_dir, record):
    """A copy of ``run_dir`` laid out as before: no ``schedules`` setting, the chains in noise_schedules.json."""
    import shutil

    shutil.copytree(run_dir, old_dir)
    without_saved_setting(old_dir, "sampler", "schedules")
    (old_dir / "schedule_search.json").rename(old_dir / "noise_schedules.json")
    mel = torch.randn(1, 80, 4, generator=torch.Generator().manual_seed(0))

    def draw(directory):
        run = sl.load_run(directory, device="cpu")
        # From a first estimate, as the run's start (Griffin-Lim's) samples: its searched chains only refine one.
        return run.sample(1, cond=mel, shape=(1, 4 * 256), generator=torch.Generator().manual_seed(1),
                          guess=torch.zeros(1, 1, 4 * 256))

    assert sl.load_run(old_dir, device="cpu").config.sampler.schedules == sl.load_run(
        run_dir, device="cpu").config.sampler.schedules
    assert torch.equal(draw(old_dir), draw(run_dir))
    assert sl.load_run(old_dir, device="cpu").config.sampler.schedules.startswith(
        "6:" + ",".join(map(repr, record["6"]["betas"])))


def _a_run_saved_before_its_start_and_prior_starts_from_noise_with_white_noise(run_dir, old_dir):
    """A copy of ``run_dir`` saved as before the sampler's ``start`` and the data's ``prior`` existed: it is read as
    the run it was, white noise and chains from noise, not with today's defaults."""
    import shutil

    shutil.copytree(run_dir, old_dir)
    without_saved_setting(old_dir, "sampler", "start")
    without_saved_setting(old_dir, "data", "prior")
    old = sl.load_run(old_dir, device="cpu")
    assert (old.config.sampler.settings.start, old.config.data.settings.prior) == ("noise", "white")
    assert old.noise_prior is None and sl.load_run(run_dir, device="cpu").noise_prior is not None
