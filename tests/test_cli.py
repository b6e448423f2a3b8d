"""The command line: bad input gives one line on stderr, exit code 2, and nothing lost."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli

import scorelab as sl
from scorelab.app.cli import main
from scorelab.runs.checkpoint import load_checkpoint, save_checkpoint

COMMON = ["--steps", "30", "--batch-size", "64", "--hidden", "32", "--depth", "2", "--device", "cpu", "--no-progress"]
TINY = ["--n-data", "512", "--n-levels", "4", *COMMON]  # a toy set, VE, the default sampler


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.npy"
    path.write_bytes(b"precious")
    return path


@pytest.mark.slow
def test_train_sample_is_bit_identical_twice(tmp_path, capsys):
    outputs = []
    for name in ("a", "b"):
        code, _, err = run_cli(capsys, "train", "--dataset", "swiss_roll", "--out", tmp_path / name, *TINY)
        assert code == 0, err
        out = tmp_path / f"{name}.npy"
        assert run_cli(capsys, "sample", tmp_path / name, "--n", 300, "--out", out, "--seed", 4)[0] == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    samples = np.load(tmp_path / "a.npy")
    assert samples.shape == (300, 2) and np.isfinite(samples).all()


@pytest.mark.slow
def test_config_file_and_flags_precedence(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('hidden = 16\nlr = 0.002\nsteps = 10\n')
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--config", config, *TINY)
    assert code == 0, err
    saved = sl.Config.from_toml(tmp_path / "run" / "config.toml")
    assert (saved.model.hidden, saved.optim.lr, saved.optim.steps) == (32, 0.002, 30)  # flags > file > defaults


@pytest.mark.slow
def test_sample_csv_and_evaluate_and_plot(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert run_cli(capsys, "train", "--out", run_dir, *TINY)[0] == 0
    assert run_cli(capsys, "sample", run_dir, "--n", 20, "--out", tmp_path / "s.csv")[0] == 0
    assert np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1).shape == (20, 2)
    code, out, _ = run_cli(capsys, "evaluate", run_dir, "--n", 200, "--repeats", 2)
    assert code == 0 and "W2" in out and "floor" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["w2"]["repeats"] == 2 and metrics["w2"]["ratio"] > 0
    code, _, err = run_cli(capsys, "plot", run_dir)
    assert code == 0, err
    for name in ("data.png", "score_field.png", "samples.png", "trajectories.png"):
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_single_level_objective_implies_unconditional_model_and_langevin(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--objective", "sliced", *TINY)
    assert code == 0, err
    saved = sl.Config.from_toml(tmp_path / "run" / "config.toml")
    assert (saved.model.name, saved.sampler.name, saved.sampler.step_size) == ("mlp", "langevin", 3e-3)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "bad", "--objective", "sliced",
                           "--model", "noise_conditional", *TINY)
    assert_clean_error(code, err, "use --model mlp or energy")


@pytest.mark.slow
def test_energy_model_trains_samples_and_draws_its_density(tmp_path, capsys):
    run_dir = tmp_path / "energy"
    code, _, err = run_cli(capsys, "train", "--out", run_dir, "--dataset", "gmm", "--model", "energy",
                           "--n-projections", 2, "--projection", "gaussian", *TINY)
    assert code == 0, err
    saved = sl.Config.from_toml(run_dir / "config.toml")
    assert (saved.objective.name, saved.sampler.name, saved.objective.n_projections,
            saved.objective.projection) == ("sliced", "langevin", 2, "gaussian")  # implied by --model energy
    run = sl.load_run(run_dir, device="cpu")
    assert isinstance(run.model, sl.models.EnergyScore)
    points = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    energy = run.model.energy(points)
    # The sampler's score is −∇E, taken from the saved energy network.
    gradient = torch.func.vmap(torch.func.grad(lambda p: run.model.energy(p[None])[0]))(points)
    torch.testing.assert_close(run.model(points), -gradient)
    assert energy.shape == (16,)
    code, _, err = run_cli(capsys, "sample", run_dir, "--n", 50, "--out", tmp_path / "s.npy")
    assert code == 0, err and np.isfinite(np.load(tmp_path / "s.npy")).all()
    code, _, err = run_cli(capsys, "plot", run_dir)
    assert code == 0, err
    assert (run_dir / "score_field.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_ddpm_run_samples_with_every_sampler_and_reports_nll(tmp_path, capsys):
    run_dir = tmp_path / "ddpm"
    code, _, err = run_cli(capsys, "train", "--dataset", "8gaussians", "--model", "ddpm", "--timesteps", 100,
                           "--n-data", 512, "--out", run_dir, *COMMON)
    assert code == 0, err
    saved = sl.Config.from_toml(run_dir / "config.toml")
    assert (saved.process.name, saved.objective.name, saved.sampler.name) == ("vp", "eps", "ddpm")  # implied
    for extra in (["--sampler", "ddpm"], ["--sampler", "ddim", "--sample-steps", 10, "--eta", 0.5],
                  ["--sampler", "ode", "--sample-steps", 10]):
        code, _, err = run_cli(capsys, "sample", run_dir, "--n", 50, "--out", tmp_path / "s.npy", *extra)
        assert code == 0, err
        assert np.isfinite(np.load(tmp_path / "s.npy")).all()
    code, out, err = run_cli(capsys, "evaluate", run_dir, "--nll", "--n", 100, "--repeats", 2, "--n-test", 20)
    assert code == 0, err
    nll = json.loads((run_dir / "metrics.json").read_text())["nll"]
    assert nll["n"] == 20 and np.isfinite([nll["ode_nll"], nll["bound"]]).all()
    # 8gaussians has an exact density, so the data's own NLL is reported beside the model's.
    assert nll["data_nll"] is not None and "data's own NLL" in out


@pytest.mark.slow
def test_plot_flags_select_figures(tiny_run, capsys):
    code, out, err = run_cli(capsys, "plot", tiny_run, "--trajectories", "--animate")
    assert code == 0, err
    assert (tiny_run / "trajectories.png").is_file() and (tiny_run / "ald.gif").read_bytes()[:3] == b"GIF"
    assert not (tiny_run / "data.png").exists()


@pytest.mark.slow
def test_bench_quick_writes_table_and_figure_into_its_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as inside a clone: ./BENCHMARKS.md must stay untouched by default
    markdown, figure = tmp_path / "runs" / "BENCHMARKS.md", tmp_path / "runs" / "toy_suite.png"
    code, _, err = run_cli(capsys, "bench", "--quick", "--datasets", "8gaussians", "--out", tmp_path / "runs",
                           "--device", "cpu")
    assert code == 0, err
    assert not (tmp_path / "BENCHMARKS.md").exists() and not (tmp_path / "benchmarks").exists()
    text = markdown.read_text()
    assert "<!-- BEGIN toy_suite_quick -->" in text and "`8gaussians`" in text and "W2 ratio" in text
    assert "over 9 repetitions" in text  # the floor's default, 3R with R = 3
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_bench_refuses_a_floor_with_fewer_repetitions_before_training(tmp_path, capsys):
    code, _, err = run_cli(capsys, "bench", "--quick", "--repeats", "3", "--floor-repeats", "2",
                           "--out", tmp_path / "runs", "--benchmarks-md", tmp_path / "B.md")
    assert_clean_error(code, err, "floor_repeats must be >= repeats = 3, got 2")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "B.md").exists()


@pytest.mark.parametrize("argv, pattern", [
    (["train", "--dataset", "no_such_set"], "unknown dataset 'no_such_set'"),
    (["train", "--dataset", "missing.csv"], "no such file"),
    (["train", "--process", "ve", "--sigma-min", "-0.1"], "sigma_min must be a positive"),
    (["train", "--process", "ve", "--sigma-max", "-1"], "sigma_max must be > 0, or 0 for"),
    (["train", "--sampler", "ald", "--step-size", "-1"], "step_size must be >= 0 (0: the NCSNv2 rule)"),
    (["train", "--process", "ve", "--n-levels", "-3"], "n_levels must be >= 0 (0: the NCSNv2 γ criterion)"),
    (["train", "--process", "ve", "--n-levels", "0"], "the γ criterion needs dim >= 5"),
    (["train", "--steps", "0"], "steps must be a positive integer"),
    (["train", "--batch-size", "-5"], "batch_size must be a positive integer"),
    (["train", "--model", "energy", "--objective", "annealed_dsm"], "model 'energy' has no noise-level input"),
    (["train", "--objective", "sliced", "--n-projections", "0"], "n_projections must be a positive integer"),
    (["train", "--model", "noise_conditional", "--reference-size", "-1"], "reference_size must be >= 0"),
    (["train", "--reference-size", "8"], "reference_size does not apply to objective 'flow_matching'"),
    (["train", "--objective", "sliced", "--projection", "cube"], "unknown projection 'cube'"),
    (["train", "--model", "ddpm", "--n-levels", "4"], "n_levels does not apply to process 'vp'"),
    (["train", "--model", "mlp", "--objective", "exact", "--fourier-features", "8"],
     "fourier_features does not apply to model 'mlp'"),
    (["train", "--process", "kinetic"], "unknown process 'kinetic'; use one of: ve, vp"),
])
def test_bad_training_options(tmp_path, capsys, argv, pattern):
    code, _, err = run_cli(capsys, *argv, "--out", tmp_path / "run", "--no-progress")
    assert_clean_error(code, err, pattern)
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("content, pattern", [
    ("x,y\n1,2\nthree,4\n", "non-numeric cell"),
    ("1,2\n3\n", "ragged rows"),
    ("1,2\nnan,4\n", "NaN or infinite"),
    ("1,2\n", "at least 2 rows"),
    ("", "empty"),
])
def test_bad_data_files(tmp_path, capsys, content, pattern):
    path = tmp_path / "data.csv"
    path.write_text(content)
    code, _, err = run_cli(capsys, "train", "--dataset", path, "--out", tmp_path / "run", "--no-progress")
    assert_clean_error(code, err, pattern)


@pytest.mark.slow
def test_three_dimensional_csv_trains_samples_and_evaluates(tmp_path, capsys):
    points = torch.randn(400, 3, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5])
    np.savetxt(tmp_path / "data.csv", points.numpy(), delimiter=",", header="a,b,c", comments="")
    run_dir = tmp_path / "run"
    assert run_cli(capsys, "train", "--dataset", tmp_path / "data.csv", "--standardize", "--out", run_dir,
                   "--n-levels", 4, "--sampler", "ald", "--n-steps-each", 5, *COMMON)[0] == 0
    assert run_cli(capsys, "sample", run_dir, "--n", 50, "--out", tmp_path / "s.npy")[0] == 0
    assert np.load(tmp_path / "s.npy").shape == (50, 3)
    code, out, _ = run_cli(capsys, "evaluate", run_dir, "--n", 100, "--repeats", 2)
    assert code == 0 and "W2" in out
    assert json.loads((run_dir / "metrics.json").read_text())["w2"]["n"] == 100


def test_five_dimensional_npy_and_inf(tmp_path, capsys):
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2, 2, 2)))  # neither rows nor images
    code, _, err = run_cli(capsys, "train", "--dataset", tmp_path / "cube.npy", "--out", tmp_path / "r")
    assert_clean_error(code, err, "expected a 2-D array")
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf], [0.0, 1.0]]))
    code, _, err = run_cli(capsys, "train", "--dataset", tmp_path / "inf.npy", "--out", tmp_path / "r")
    assert_clean_error(code, err, "NaN or infinite")


def test_run_directory_without_model(tmp_path, capsys, good_file):
    (tmp_path / "empty").mkdir()
    for argv in (["sample", tmp_path / "empty", "--out", good_file], ["evaluate", tmp_path / "empty"],
                 ["plot", tmp_path / "empty"], ["sample", tmp_path / "nowhere", "--out", good_file]):
        code, _, err = run_cli(capsys, *argv)
        assert_clean_error(code, err, "")
    assert good_file.read_bytes() == b"precious"


@pytest.mark.slow
def test_corrupt_and_mismatched_checkpoints(tiny_run, tmp_path, capsys, good_file):
    checkpoint = tiny_run / "model.safetensors"
    original = checkpoint.read_bytes()
    checkpoint.write_bytes(original[: len(original) // 2])
    code, _, err = run_cli(capsys, "sample", tiny_run, "--out", good_file)
    assert_clean_error(code, err, "corrupt")
    # A checkpoint whose config promises a different network.
    checkpoint.write_bytes(original)
    ckpt = load_checkpoint(tiny_run)
    ckpt.config = ckpt.config.replace(hidden=64)
    save_checkpoint(tiny_run, ckpt)
    code, _, err = run_cli(capsys, "sample", tiny_run, "--out", good_file)
    assert_clean_error(code, err, "do not match")
    assert good_file.read_bytes() == b"precious"


@pytest.mark.slow
def test_bad_sample_requests_leave_output_alone(tiny_run, capsys, good_file):
    for argv, pattern in ((["--n", 0], "--n must be a positive integer"),
                          (["--n", -3], "--n must be a positive integer"),
                          (["--step-size", -0.5], "step_size must be >= 0"),
                          (["--n-steps-each", 0], "n_steps_each must be a positive integer")):
        code, _, err = run_cli(capsys, "sample", tiny_run, "--out", good_file, *argv)
        assert_clean_error(code, err, pattern)
    code, _, err = run_cli(capsys, "sample", tiny_run, "--out", good_file.with_suffix(".txt"))
    assert_clean_error(code, err, "--out must end in")
    assert good_file.read_bytes() == b"precious"


@pytest.mark.slow
def test_unwritable_output(tiny_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, _, err = run_cli(capsys, "sample", tiny_run, "--n", 5, "--out", blocker / "s.npy")
    assert_clean_error(code, err, "cannot write")
    code, _, err = run_cli(capsys, "train", "--out", blocker / "run", *TINY)
    assert_clean_error(code, err, "cannot write")


@pytest.mark.slow
def test_real_process_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scorelab.app.cli", "train", "--dataset", "nope",
                             "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "unknown dataset" in result.stderr and "Traceback" not in result.stderr


def test_help_at_every_level(capsys):
    for argv in ([], ["train"], ["sample"], ["evaluate"], ["plot"], ["demo"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: scorelab") and "--help" in out


@pytest.mark.slow
def test_trained_run_samples_with_the_solvers_from_the_command_line(tiny_run, tmp_path, capsys):
    out = tmp_path / "heun.npy"
    code, _, err = run_cli(capsys, "sample", tiny_run, "--sampler", "heun", "--sample-steps", "4", "--n", "64",
                           "--out", out, "--device", "cpu")
    assert code == 0, err
    assert np.isfinite(np.load(out)).all() and np.load(out).shape == (64, 2)
    code, _, err = run_cli(capsys, "sample", tiny_run, "--sampler", "dpmpp_2m", "--sample-steps", "0", "--n", "8",
                           "--out", tmp_path / "no.npy", "--device", "cpu")
    assert_clean_error(code, err, "sample_steps")
    assert not (tmp_path / "no.npy").exists()


@pytest.mark.slow
def test_demo_trains_samples_evaluates_and_draws_every_figure(tmp_path, capsys, monkeypatch):
    from scorelab.app import demo

    monkeypatch.setattr(demo, "DEMO_SETTINGS", {**demo.DEMO_SETTINGS, "n_data": 600, "steps": 40, "hidden": 16,
                                                "depth": 2, "checkpoint_every": 40})
    monkeypatch.setattr(demo, "DEMO_SAMPLES", 300)
    code, out, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--device", "cpu")
    assert code == 0, err
    assert "300 points" in out and "W2" in out
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["w2"]["n"] == 300 and metrics["w2"]["ratio"] > 0
    sampler = sl.Config.from_toml(tmp_path / "demo" / "config.toml").sampler.name
    for name in ("data.png", "score_field.png", "samples.png", "trajectories.png", f"{sampler}.gif"):
        assert (tmp_path / "demo" / name).stat().st_size > 0, name


MOONS = Path(__file__).parent / "fixtures" / "v0_2_0" / "moons"  # a trained 2-D run: sampling needs no training


def test_an_interrupted_command_says_what_it_leaves(tmp_path, capsys, monkeypatch, good_file):
    import scorelab.runs.trained
    import scorelab.runs.training

    calls = []

    def first_batch_then_ctrl_c(self, first, count, **kwargs):
        calls.append(first)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return torch.zeros(count, 2)

    monkeypatch.setattr(scorelab.runs.trained.TrainedRun, "sample_rows", first_batch_then_ctrl_c)
    code, _, err = run_cli(capsys, "sample", MOONS, "--n", 20, "--batch-size", 5, "--out", good_file,
                           "--no-progress", "--device", "cpu")
    assert (code, calls) == (130, [0, 5])  # cut off in the second batch
    assert err.strip() == f"scorelab: interrupted; {good_file} was not written (a file already there is untouched)"
    assert good_file.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["good.npy"]

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scorelab.runs.training, "train", ctrl_c)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", *TINY)
    assert code == 130 and err.strip() == "scorelab: interrupted; the last checkpoint written is intact"
    monkeypatch.setattr(scorelab.runs.trained.TrainedRun, "load", ctrl_c)
    code, _, err = run_cli(capsys, "evaluate", MOONS)
    assert code == 130 and err.strip() == "scorelab: interrupted"  # it says nothing it does not know


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """`scorelab pretrained | head -1`: the pipe closes under the command, which stops without an error line."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "scorelab", "pretrained"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the first line is written
    err = process.stderr.read().decode()
    assert process.wait() == 1 and err == ""
