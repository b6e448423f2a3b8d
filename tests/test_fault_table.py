"""The fault table: bad inputs through the real CLI, across loaders, commands, configs, checkpoints and flags.

Every row must end with exit code 2 and one ``scorelab: error:`` line naming the problem, no traceback,
and leave every file that existed before it byte for byte as it was (a trained run directory among them).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_error, run_cli, tiny_config

import scorelab as sl
from scorelab import pretrained

SHIPPED = "pretrained:swiss_roll"  # a run that ships, small and quick
Setup = Callable[[Path, Path], list]  # (a scratch directory, a trained run) -> the CLI's arguments


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("fault") / "run"
    sl.train(tiny_config(), run_dir, progress=False)
    return run_dir


def _write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _npy(path: Path, array) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=True)
    return path


def _wav(path: Path, data: np.ndarray, rate: int = 22_050) -> Path:
    from scipy.io import wavfile

    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, data)
    return path


def _tone(seconds: float = 0.5) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * 220 * np.arange(round(seconds * 22_050)) / 22_050)).astype(np.float32)


def _train(data: Path | str, tmp: Path, *flags) -> list:
    return ["train", "--dataset", data, "--out", tmp / "new_run", "--steps", 2, "--no-progress", *flags]


def _wav_folder(tmp: Path, second: np.ndarray | bytes) -> Path:
    _wav(tmp / "wavs" / "a.wav", _tone())
    if isinstance(second, bytes):
        _write(tmp / "wavs" / "b.wav", second)
    else:
        _wav(tmp / "wavs" / "b.wav", second)
    return tmp / "wavs"


def _config(tmp: Path, text: str) -> list:
    return ["train", "--config", _write(tmp / "config.toml", text), "--out", tmp / "new_run", "--no-progress"]


def _copy_run(run: Path, tmp: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp / "copied_run"))


def _broken_checkpoint(run: Path, tmp: Path, content: bytes) -> Path:
    copy = _copy_run(run, tmp)
    (copy / "model.safetensors").write_bytes(content)
    return copy


def _distill(run: Path, tmp: Path, out: Path | None = None) -> list:
    return ["distill", run, "--out", out or tmp / "new_run", "--steps", 2, "--no-progress"]


def _tiny_run(tmp: Path, **changes) -> Path:
    run_dir = tmp / ("tiny_" + "_".join(str(value) for value in changes.values()))
    sl.train(tiny_config(steps=2, **changes), run_dir, progress=False)
    return run_dir


ROWS: dict[str, tuple[Setup, str]] = {
    # 2-D data files
    "csv with text": (lambda t, r: _train(_write(t / "d.csv", "x,y\n1,a\n2,3\n"), t), "d.csv"),
    "csv ragged": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3\n4,5\n"), t), "d.csv"),
    "csv empty": (lambda t, r: _train(_write(t / "d.csv", ""), t), "d.csv"),
    "csv header only": (lambda t, r: _train(_write(t / "d.csv", "x,y\n"), t), "d.csv"),
    "csv with nan": (lambda t, r: _train(_write(t / "d.csv", "1,2\nnan,3\n4,5\n"), t), "NaN or infinite"),
    "npy 3-D of a few rows": (lambda t, r: _train(_npy(t / "d.npy", np.zeros((2, 2, 2, 2, 2))), t), "d.npy"),
    "npy pickled objects": (lambda t, r: _train(_npy(t / "d.npy", np.array([{"a": 1}], dtype=object)), t),
                            "not a readable .npy array"),
    "npy that is text": (lambda t, r: _train(_write(t / "d.npy", "1,2\n3,4\n"), t), "d.npy"),
    "npy with inf": (lambda t, r: _train(_npy(t / "d.npy", np.array([[1.0, np.inf], [2.0, 3.0]])), t),
                     "NaN or infinite"),
    "missing data file": (lambda t, r: _train(t / "absent.csv", t), "absent.csv"),
    "unknown dataset": (lambda t, r: _train("no_such_set", t), "unknown dataset"),
    "pickle disguised as npy": (lambda t, r: _train(_write(t / "d.npy", pickle.dumps([[1, 2]])), t), "d.npy"),
    # images
    "image folder with a text file": (lambda t, r: _train(_write(t / "imgs" / "a.png", "not a png"), t), "a.png"),
    "image npy with nan": (lambda t, r: _train(_npy(t / "i.npy", np.full((4, 8, 8), np.nan)), t),
                           "NaN or infinite"),
    # audio
    "wav stereo": (lambda t, r: _train(_wav_folder(t, np.stack([_tone(), _tone()], 1)), t), "2 channels"),
    "wav silent": (lambda t, r: _train(_wav_folder(t, np.zeros(22_050, np.float32)), t), "no sound"),
    "wav not a wav": (lambda t, r: _train(_wav_folder(t, b"RIFF but nothing else"), t), "b.wav"),
    "wav too short": (lambda t, r: _train(_wav_folder(t, _tone(0.02)), t, "--segment-frames", 8),
                      "shorter than one training segment"),
    "wav float too loud": (lambda t, r: _train(_wav_folder(t, 3 * _tone()), t), "must lie in [-1, 1]"),
    "wav with nan": (lambda t, r: _train(_wav_folder(t, np.where(np.arange(11_025) == 7, np.nan, _tone())
                                                    .astype(np.float32)), t), "NaN or infinite"),
    "wav folder of one file": (lambda t, r: _train(_wav(t / "one" / "a.wav", _tone()).parent, t),
                               "at least 2 .wav files"),
    # configs
    "config not toml": (lambda t, r: _config(t, "this is = = not toml"), "config.toml"),
    "config unknown key": (lambda t, r: _config(t, "[optim]\nsteps = 10\nwarp = 3\n"), "warp"),
    "config wrong type": (lambda t, r: _config(t, "[optim]\nsteps = \"many\"\n"), "steps"),
    "config unknown section": (lambda t, r: _config(t, "[engine]\nsteps = 10\n"), "engine"),
    "config unknown model": (lambda t, r: _config(t, "[model]\nname = \"transformer\"\n"), "transformer"),
    "config missing": (lambda t, r: ["train", "--config", t / "absent.toml", "--out", t / "new_run"], "absent.toml"),
    # checkpoints and run directories
    "checkpoint is a pickle": (lambda t, r: ["sample", _broken_checkpoint(r, t, pickle.dumps({"w": 1})), "--n", 4,
                                             "--out", t / "s.npy"], "model.safetensors"),
    "checkpoint truncated": (lambda t, r: ["sample", _broken_checkpoint(r, t, (r / "model.safetensors").read_bytes()
                                                                          [:100]), "--n", 4, "--out", t / "s.npy"],
                             "model.safetensors"),
    "checkpoint empty": (lambda t, r: ["sample", _broken_checkpoint(r, t, b""), "--n", 4, "--out", t / "s.npy"],
                         "model.safetensors"),
    "run directory missing": (lambda t, r: ["sample", t / "nowhere", "--out", t / "s.npy"], "nowhere"),
    "run directory without a model": (lambda t, r: ["evaluate", _write(t / "empty" / "notes.txt", "x").parent],
                                      "empty"),
    "config.toml of a run unreadable on resume": (lambda t, r: ["train", "--resume", "--no-progress", "--out",
                                                                _write(_copy_run(r, t) / "config.toml", "[[[").parent],
                                                  "config.toml"),
    "train into a run without --resume": (lambda t, r: ["train", "--out", r, "--no-progress"], "--resume"),
    # flags
    "sample n zero": (lambda t, r: ["sample", r, "--n", 0, "--out", t / "s.npy"], "--n"),
    "sample bad suffix": (lambda t, r: ["sample", r, "--n", 4, "--out", t / "s.txt"], "--out must end in"),
    "sample larger than the disk": (lambda t, r: ["sample", r, "--n", 10**13, "--out", t / "s.npy"], "free"),
    "sample batch size zero": (lambda t, r: ["sample", r, "--batch-size", 0, "--out", t / "s.npy"], "--batch-size"),
    "evaluate more points than memory": (lambda t, r: ["evaluate", r, "--n", 10**12, "--repeats", 1],
                                         "out of memory"),
    "sample steps zero": (lambda t, r: ["sample", r, "--sampler", "dpmpp_2m", "--sample-steps", 0, "--n", 4,
                                        "--out", t / "s.npy"], "sample_steps"),
    "unknown sampler": (lambda t, r: ["sample", r, "--sampler", "teleport", "--out", t / "s.npy"], "teleport"),
    "unknown flag": (lambda t, r: ["sample", r, "--frobnicate", "--out", t / "s.npy"], "--frobnicate"),
    "flag without its value": (lambda t, r: ["sample", r, "--out"], "--out"),
    "negative learning rate": (lambda t, r: _train("moons", t, "--lr", -1), "lr"),
    "unknown objective": (lambda t, r: _train("moons", t, "--objective", "guesswork"), "guesswork"),
    "evaluate repeats zero": (lambda t, r: ["evaluate", r, "--repeats", 0], "--repeats"),
    "vocode a 2-D run": (lambda t, r: ["vocode", r, "--input", _wav(t / "in.wav", _tone()), "--out", t / "o.wav"],
                         "not waveforms"),
    "vocode out not wav": (lambda t, r: ["vocode", r, "--input", _wav(t / "in.wav", _tone()), "--out", t / "o.mp3"],
                           "--out must end in .wav"),
    "evaluate vocoder steps zero": (lambda t, r: ["evaluate", r, "--vocoder-steps", 0], "--vocoder-steps"),
    "vocode from an unknown start": (lambda t, r: ["vocode", r, "--input", _wav(t / "in.wav", _tone()), "--out",
                                                   t / "o.wav", "--start", "silence"], "silence"),
    "unknown noise prior": (lambda t, r: _train("tones", t, "--prior", "pink"), "pink"),
    "noise prior floor zero": (lambda t, r: _train("tones", t, "--prior", "energy", "--prior-floor", 0), "prior_floor"),
    "griffin-lim start of no iterations": (lambda t, r: _train("tones", t, "--start-iterations", 0),
                                           "start_iterations"),
    "unknown device": (lambda t, r: ["sample", r, "--device", "tpu", "--out", t / "s.npy"], "tpu"),
    # the new families' flags
    "flow t_max of 1": (lambda t, r: _train("moons", t, "--process", "flow", "--t-max", 1), "t_max"),
    "flow t_min above t_max": (lambda t, r: _train("moons", t, "--process", "flow", "--t-min", 0.5, "--t-max", 0.4),
                               "t_min"),
    "flow unknown t density": (lambda t, r: _train("moons", t, "--process", "flow", "--t-density", "beta"), "beta"),
    "flow logit std zero": (lambda t, r: _train("moons", t, "--process", "flow", "--logit-std", 0), "logit_std"),
    "ot coupling on mel-conditioned waveforms": (lambda t, r: _train("tones", t, "--process", "flow", "--objective",
                                                                     "flow_matching", "--coupling", "ot"),
                                                 "--coupling ot pairs data with noise within classes"),
    "lognormal sigma without continuous": (lambda t, r: _train("moons", t, "--sigma-density", "lognormal",
                                                               "--model", "noise_conditional"), "--continuous"),
    "unknown sigma density": (lambda t, r: _train("moons", t, "--process", "ve", "--sigma-density", "gamma"), "gamma"),
    "edm p_std zero": (lambda t, r: _train("moons", t, "--model", "edm", "--p-std", 0), "p_std"),
    "edm negative sigma_data": (lambda t, r: _train("moons", t, "--model", "edm", "--sigma-data", -1), "sigma_data"),
    # consistency models (issue 33 item 3): scorelab distill, the objectives' and the sampler's flags
    "distill a missing run": (lambda t, r: _distill(t / "nowhere", t), "nowhere"),
    "distill an unconditional run": (lambda t, r: _distill(_tiny_run(t, model="mlp", objective="sliced"), t),
                                     "noise-conditional"),
    "distill a consistency run": (lambda t, r: _distill(_tiny_run(t, dataset="moons", model="consistency"), t),
                                  "is a consistency model"),
    "distill into a directory that holds files": (lambda t, r: _distill(r, t, _write(t / "taken" / "a.txt", "x")
                                                                        .parent), "--overwrite"),
    "distill into the teacher": (lambda t, r: _distill(r, t, r), "teacher's own"),
    "distillation without a teacher": (lambda t, r: _train("moons", t, "--objective", "consistency_distillation"),
                                       "needs a teacher"),
    "distillation teacher missing": (lambda t, r: _train("moons", t, "--objective", "consistency_distillation",
                                                         "--teacher", t / "absent_run"), "absent_run"),
    "distillation levels one": (lambda t, r: _train("moons", t, "--objective", "consistency_distillation",
                                                    "--distill-levels", 1), "distill_levels"),
    "consistency curriculum reversed": (lambda t, r: _train("moons", t, "--model", "consistency", "--curriculum-start",
                                                            20, "--curriculum-end", 10), "curriculum_end"),
    "consistency huber_c negative": (lambda t, r: _train("moons", t, "--model", "consistency", "--huber-c", -1),
                                     "huber_c"),
    "consistency unknown distance": (lambda t, r: _train("moons", t, "--model", "consistency", "--distance", "l7"),
                                     "l7"),
    "consistency training on vp": (lambda t, r: _train("moons", t, "--model", "consistency", "--process", "vp"),
                                   "--process ve"),
    "consistency sigmas of the wrong count": (lambda t, r: ["sample", r, "--sampler", "consistency", "--sample-steps", 3,
                                                            "--consistency-sigmas", "0.5", "--n", 4, "--out",
                                                            t / "s.npy"], "consistency_sigmas"),
    "consistency sigmas not decreasing": (lambda t, r: ["sample", r, "--sampler", "consistency", "--sample-steps", 3,
                                                        "--consistency-sigmas", "0.1,0.5", "--n", 4, "--out",
                                                        t / "s.npy"], "largest to smallest"),
    # class labels (issue 32 item 1): --conditional, --labels and --classes, refused when the run is set up
    "conditional on data without labels": (lambda t, r: _train("swiss_roll", t, "--conditional"), "no class labels"),
    "conditional on a data file without labels": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n"), t,
                                                                       "--conditional"), "--labels FILE"),
    "conditional on audio": (lambda t, r: _train("tones", t, "--conditional"), "conditional does not apply"),
    "labels for a named data set": (lambda t, r: _train("moons", t, "--labels", _write(t / "l.csv", "0\n1\n")),
                                    "labels does not apply"),
    "classes fewer than the data has": (lambda t, r: _train("8gaussians", t, "--conditional", "--classes", 3),
                                        "8gaussians has 8 classes"),
    "label file missing": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n"), t, "--labels", t / "absent.csv"),
                           "absent.csv"),
    "label file with a fraction": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n5,6\n"), t, "--conditional",
                                                       "--labels", _write(t / "l.csv", "0\n2.5\n1\n")),
                                   "l.csv: label 2.5 at row 2 is not an integer"),
    "label file with a word": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n5,6\n"), t, "--labels",
                                                   _write(t / "l.txt", "0\ncat\n1\n")), "l.txt"),
    "label file negative": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n5,6\n"), t, "--conditional",
                                                "--labels", _npy(t / "l.npy", np.array([0, -1, 1]))), "negative"),
    "label file at classes": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n5,6\n"), t, "--conditional",
                                                  "--classes", 2, "--labels", _write(t / "l.csv", "0\n2\n1\n")),
                              "not below classes = 2"),
    "label file of the wrong count": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n5,6\n"), t,
                                                          "--conditional", "--labels", _write(t / "l.csv", "0\n1\n")),
                                      "holds 2 labels, but the data has 3"),
    "label file with a stray large id": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n5,6\n"), t,
                                                             "--conditional", "--labels",
                                                             _write(t / "l.csv", "0\n1\n20240\n")),
                                         "would make 20241 classes of 3 labels"),
    "label file empty": (lambda t, r: _train(_write(t / "d.csv", "1,2\n3,4\n"), t, "--conditional", "--labels",
                                             _write(t / "l.csv", "")), "l.csv: the file is empty"),
    "image labels of the wrong count": (lambda t, r: _train(_npy(t / "i.npy", np.arange(160.0).reshape(10, 4, 4)), t,
                                                            "--conditional", "--labels",
                                                            _npy(t / "l.npy", np.arange(9) % 2)),
                                        "holds 9 labels, but the data has 10"),
    "image labels with a class of one image": (lambda t, r: _train(_npy(t / "i.npy", np.arange(160.0).reshape(10, 4, 4)),
                                                                   t, "--conditional", "--labels",
                                                                   _npy(t / "l.npy", np.array([0] * 5 + [1] * 4 + [2]))),
                                               "l.npy: cannot split 10 images"),
    # guidance (issue 32 items 3-5): its flags on sample, evaluate and train
    "class for an unconditional run": (lambda t, r: ["sample", r, "--class", 1, "--out", t / "s.npy"],
                                       "--class needs a class-conditional run"),
    "class out of range": (lambda t, r: ["sample", _tiny_run(t, dataset="moons", conditional=True), "--class", 2,
                                         "--out", t / "s.npy"], "--class must be an integer in [0, 2)"),
    "guidance without classes or a guide": (lambda t, r: ["sample", r, "--guidance", 2, "--out", t / "s.npy"],
                                            "guidance needs a class-conditional run"),
    "guidance negative": (lambda t, r: ["evaluate", r, "--guidance", -1], "guidance must be >= 0"),
    "guidance interval reversed": (lambda t, r: ["sample", r, "--guidance-interval", 5, 1, "--out", t / "s.npy"],
                                   "0 <= LO < HI"),
    "guide missing": (lambda t, r: ["sample", r, "--guide", t / "nowhere", "--guidance", 2, "--out", t / "s.npy"],
                      "nowhere"),
    "guide of other data": (lambda t, r: ["sample", r, "--guide", _tiny_run(t, dataset="moons"), "--guidance", 2,
                                          "--out", t / "s.npy"], "autoguidance needs a weaker model of the same data"),
    "keep guide at the last step": (lambda t, r: _train("moons", t, "--keep-guide-at", 2), "keep_guide_at = 2"),
    # pretrained runs (issue 36): read-only, named by pretrained:NAME, fine-tuned by --init-from
    "train into a pretrained run": (lambda t, r: ["train", "--dataset", "swiss_roll", "--out", f"{SHIPPED}",
                                                  "--steps", 2, "--no-progress"], "is read-only"),
    "distill into a pretrained run": (lambda t, r: _distill(r, t, SHIPPED) + ["--overwrite"], "is read-only"),
    "resume a pretrained run": (lambda t, r: ["train", "--resume", "--out", SHIPPED, "--steps", 9000], "is read-only"),
    "a pretrained run that does not ship": (lambda t, r: ["sample", "pretrained:nope", "--out", t / "s.npy"],
                                            "no pretrained run named 'nope'"),
    "resume a copy of a pretrained run": (lambda t, r: ["train", "--resume", "--out",
                                                        _copy_run(pretrained.resolve(SHIPPED), t), "--steps", 9000],
                                          "EMA weights only"),
    "init from another network": (lambda t, r: _train("swiss_roll", t, "--init-from", SHIPPED, "--hidden", 16),
                                  "do not fit the network"),
    "init from a missing run": (lambda t, r: _train("moons", t, "--init-from", t / "absent_run"), "absent_run"),
    "init and resume together": (lambda t, r: _train("moons", t, "--init-from", SHIPPED, "--resume"),
                                 "not allowed with argument"),
}


def _hashes(*roots: Path) -> dict[Path, str]:
    return {path: hashlib.sha256(path.read_bytes()).hexdigest()
            for root in roots for path in sorted(root.rglob("*")) if path.is_file()}


def test_the_table_has_at_least_forty_rows():
    assert len(ROWS) >= 40


@pytest.mark.parametrize("case", sorted(ROWS))
@pytest.mark.slow
def test_a_bad_input_is_one_line_exit_code_2_and_changes_no_file(case, trained, tmp_path, capsys):
    setup, message = ROWS[case]
    argv = setup(tmp_path, trained)
    before = _hashes(tmp_path, trained, pretrained.ROOT)
    code, _, err = run_cli(capsys, *argv)
    assert_clean_error(code, err, message)
    after = _hashes(tmp_path, trained, pretrained.ROOT)
    assert {path: after.get(path) for path in before} == before
    assert not (tmp_path / "new_run" / "model.safetensors").exists()
