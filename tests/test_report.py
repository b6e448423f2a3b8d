"""`scorelab report`: one self-contained page of a run, checked as HTML and, where Chromium is installed, in it."""

import base64
import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import CHROMIUM, assert_clean_error, browser_verdict, render_in_chromium, run_cli
from PIL import Image


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
    ratio = json.loads((reported.parent / "metrics.json").read_text())["w2"]["ratio"]
    assert f"{ratio:.4g}" in text and "w2.floor" in text  # the table, floors included
    assert 'name = "swiss_roll"' in text and "trained steps" in text and "scorelab" in text


def test_a_report_of_a_run_not_yet_evaluated_or_plotted_says_how(tiny_run, capsys):
    code, _, err = run_cli(capsys, "report", tiny_run)
    assert code == 0, err
    text = " ".join(Page((tiny_run / "report.html").read_text()).text)
    assert f"scorelab evaluate {tiny_run}" in text and f"scorelab plot {tiny_run}" in text


def test_a_report_of_no_run_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", tmp_path / "nowhere")
    assert_clean_error(code, err, "no such run directory")
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's chromium package; .ci/run installs it)")
def test_the_report_renders_in_chromium_with_every_image_loaded_and_no_error(reported, tmp_path):
    assert browser_verdict(reported, tmp_path) == {"images": 5, "broken": 0, "audio": 0, "silent": 0, "errors": []}
    screenshot = tmp_path / "report.png"
    render_in_chromium(reported, "--window-size=1200,1800", f"--screenshot={screenshot}")
    with Image.open(screenshot) as image:
        assert image.size == (1200, 1800) and len(np.unique(np.asarray(image.convert("L")))) > 16  # not blank
