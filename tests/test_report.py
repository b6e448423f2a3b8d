"""`scorelab report`: one self-contained page of a run, checked as HTML and, where Chromium is installed, in it."""

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import CHROMIUM, assert_clean_error, browser_verdict, render_in_chromium, run_cli
from PIL import Image

from scorelab.app.run_report import metric_rows


class Page(HTMLParser):
    """The elements of a page that load something, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sources: list[tuple[str, str]] = []  # (tag, src or href)
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.sources.append((tag, value))

    def handle_data(self, data):
        self.text.append(data)


def decoded(uri: str, media_type: str) -> bytes:
    head, payload = uri.split(",", 1)
    assert head == f"data:{media_type};base64"
    return base64.b64decode(payload, validate=True)


@pytest.fixture
def reported(tiny_run, capsys):
    for argv in (["plot", tiny_run], ["evaluate", tiny_run, "--n", 200, "--repeats", 1], ["report", tiny_run]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 0, err
    assert out.strip() == f"wrote {tiny_run / 'report.html'}"
    return tiny_run / "report.html"


@pytest.mark.slow
def test_a_report_embeds_the_curve_every_figure_the_metrics_and_the_config(reported):
    page = Page(reported.read_text())
    images = [src for tag, src in page.sources if tag == "img"]
    assert [tag for tag, _ in page.sources] == ["img"] * len(images)  # nothing but the embedded images loads
    names = ("training_curve.png", "data.png", "score_field.png", "samples.png", "trajectories.png")
    assert len(images) == len(names)
    for uri, name in zip(images, names):
        with Image.open(io.BytesIO(decoded(uri, "image/png"))) as image:
            assert image.size == Image.open(reported.parent / name).size
    text = " ".join(page.text)
    w2 = json.loads((reported.parent / "metrics.json").read_text())["w2"]
    assert (f"W2 to the data {w2['model_mean']:.3g} ± {w2['model_std']:.3g}, floor {w2['floor_mean']:.3g} ± "
            f"{w2['floor_std']:.3g}, ratio {w2['ratio']:.2f}") in text  # in words, floors included
    assert "w2." not in text and "model_mean" not in text
    assert 'name = "swiss_roll"' in text and "trained steps" in text and "scorelab" in text


@pytest.mark.slow
def test_a_report_right_after_training_makes_the_evaluation_and_the_figures_and_shows_them(tiny_run, capsys):
    code, out, err = run_cli(capsys, "report", tiny_run, "--n", 200, "--repeats", 1)
    assert code == 0, err
    assert out.splitlines() == [
        f"made the evaluation the page lacked (scorelab evaluate): {tiny_run / 'metrics.json'}",
        "made the figures the page lacked (scorelab plot): data.png, score_field.png, samples.png, trajectories.png",
        f"wrote {tiny_run / 'report.html'}"]
    w2 = json.loads((tiny_run / "metrics.json").read_text())["w2"]
    assert (w2["n"], w2["repeats"]) == (200, 1)  # the flags reach the evaluation
    page = Page((tiny_run / "report.html").read_text())
    assert len([src for tag, src in page.sources if tag == "img"]) == 5  # the curve and the four figures
    text = " ".join(page.text)
    assert f"W2 to the data {w2['model_mean']:.3g}" in text and f"ratio {w2['ratio']:.2f}" in text
    assert "No metrics yet" not in text and "No figures yet" not in text
    code, out, err = run_cli(capsys, "report", tiny_run)  # nothing lacks now: nothing is made again
    assert code == 0 and out == f"wrote {tiny_run / 'report.html'}\n", err


@pytest.mark.slow
def test_a_report_with_no_compute_makes_nothing_and_says_how(tiny_run, capsys):
    code, out, err = run_cli(capsys, "report", tiny_run, "--no-compute")
    assert code == 0, err
    assert out == f"wrote {tiny_run / 'report.html'}\n"
    assert not (tiny_run / "metrics.json").exists()
    assert sorted(path.name for path in tiny_run.glob("*.png")) == ["training_curve.png"]
    text = " ".join(Page((tiny_run / "report.html").read_text()).text)
    assert f"scorelab evaluate {tiny_run}" in text and f"scorelab plot {tiny_run}" in text


def test_metrics_read_as_words_for_points_images_and_waveforms_and_as_keys_otherwise():
    points = {"step": 40, "dataset": "moons",
              "w2": {"model_mean": 0.0512, "model_std": 0.0041, "floor_mean": 0.0533, "floor_std": 0.0032,
                     "ratio": 0.9506, "n": 5000, "repeats": 3, "floor_repeats": 9},
              "nll": {"n": 500, "ode_nll": 1.23456, "ode_nll_se": 0.0123, "bound": 1.3, "bound_se": 0.02,
                      "data_nll": None}}
    rows = dict(metric_rows(points, step=80))
    assert rows["W2 to the data"] == "0.0512 ± 0.0041, floor 0.0533 ± 0.0032, ratio 0.95"
    assert rows["evaluated at step"] == "40 (the checkpoint is at step 80: evaluate again)"
    assert rows["test NLL, probability-flow ODE"] == "1.2346 ± 0.0123 nats (n = 500 test points)"
    assert "the data's own NLL" not in rows and rows["data set"] == "moons"
    assert "3 repetitions" in rows[""] and "over 9" in rows[""] and "n = 5,000 points per set" in rows[""]
    images = {"images": {
        "n": 1000, "classifier_test_accuracy": 0.975, "block_size": 360,
        "fd": {"model": 12.3, "floor": 4.1, "ratio": 3.0, "repeats": 2},
        "kid": {"model": 0.004, "floor": -0.001, "ratio": None, "repeats": 2},
        "precision": {"model": 0.81, "floor": 0.85}, "recall": {"model": 0.7, "floor": 0.8},
        "classes": {"fractions": [0.5, 0.5], "min_fraction": 0.5, "max_fraction": 0.5, "chi2": 0.0, "p_value": 1.0},
        "memorisation": {"fraction": 0.02, "threshold": 3.2, "sample_median": 4.1, "test_median": 4.5},
        "bits_per_dim": {"n": 360, "levels": 17, "model": {"mean": 1.5, "se": 0.01},
                         "gaussian": {"mean": 2.5, "se": 0.02}, "mixture": {"mean": 2.0, "se": 0.02},
                         "mixture_components": 10}}}
    rows = dict(metric_rows(images))
    assert rows["Fréchet distance in its features"] == "12.3, floor 4.1, ratio 3.00 (means over 2 blocks)"
    assert rows["KID in its features"].startswith("0.004, floor -0.001, ratio —, the floor is not positive")
    assert rows["precision"] == "0.810, floor 0.850" and rows["feature classifier"].startswith("test accuracy 97.5%")
    assert rows["memorisation"].startswith("2.0% of the samples lie nearer a training image than 99%")
    assert rows["bits per dimension"].startswith("1.5000 ± 0.0100; a Gaussian 2.5000, a mixture of 10 2.0000")
    audio = {"audio": {"utterances": ["LJ001-0001", "LJ001-0002"], "seconds_of_audio": 12.34, "threads": 2,
                       "rows": [{"method": "WaveGrad, 6 steps", "kind": "wavegrad", "steps": 6, "log_mel_l1": 0.5,
                                 "mr_stft": 1.25, "real_time_factor": 0.3, "timing_repeats": 1}]}}
    rows = dict(metric_rows(audio))
    assert rows["WaveGrad, 6 steps"] == "log-mel L1 0.5000, MR-STFT 1.2500, real-time factor 0.300"
    assert rows["test utterances"] == "2 (LJ001-0001, LJ001-0002), 12.3 s of audio"
    # Unknown keys, and a known group of another shape, keep their names.
    assert metric_rows({"w2": {"mean": 0.5}, "fid": 7.25, "extra": {"a": [1, 2]}}) == [
        ("w2.mean", "0.5"), ("fid", "7.25"), ("extra.a", "1, 2")]


def test_a_report_of_no_run_is_one_line(tmp_path, capsys):
    for flags in ([], ["--no-compute"]):
        code, _, err = run_cli(capsys, "report", tmp_path / "nowhere", *flags)
        assert_clean_error(code, err, "no such run directory")
    code, _, err = run_cli(capsys, "report", tmp_path / "nowhere", "--n", 0)
    assert_clean_error(code, err, "--n must be a positive integer")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's chromium package; .ci/run installs it)")
@pytest.mark.slow
def test_the_report_renders_in_chromium_with_every_image_loaded_and_no_error(reported, tmp_path):
    assert browser_verdict(reported, tmp_path) == {"images": 5, "broken": 0, "audio": 0, "silent": 0, "errors": []}
    screenshot = tmp_path / "report.png"
    render_in_chromium(reported, "--window-size=1200,1800", f"--screenshot={screenshot}")
    with Image.open(screenshot) as image:
        assert image.size == (1200, 1800) and len(np.unique(np.asarray(image.convert("L")))) > 16  # not blank
