"""The documentation: the site builds strictly, its pages render in a browser, and the README's example runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import CHROMIUM, browser_verdict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with ``mkdocs build --strict`` (every warning an error) into a fresh directory."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.mark.slow
def test_the_site_builds_strictly_with_every_page(site):
    for page in ("index.html", "concepts.html", "modalities/points.html", "modalities/images.html",
                 "modalities/waveforms.html", "cli.html", "config-reference.html", "results.html",
                 "benchmarks.html", "api/data.html", "api/objectives.html", "api/sampling.html", "api/metrics.html",
                 *(f"tutorials/{notebook.stem}.html" for notebook in sorted((ROOT / "docs/tutorials").glob("*.ipynb")))):
        assert (site / page).is_file(), page
    assert len(list((ROOT / "docs/tutorials").glob("*.ipynb"))) == 5


@pytest.mark.slow
def test_the_config_reference_is_the_registries(site):
    """Every registered part and every setting appears on the generated page, with its flag."""
    from scorelab.runs.config import CHOICE_SECTIONS, OptimSettings, RunSettings, parts

    page = (site / "config-reference.html").read_text()
    for section in CHOICE_SECTIONS:
        for part in parts(section):
            assert f"<code>{part.name}</code>" in page, (section, part.name)
            for name in part.settings.__dataclass_fields__:
                assert f"<code>--{name.replace('_', '-')}</code>" in page, (section, part.name, name)
    for settings in (OptimSettings, RunSettings):
        for name in settings.__dataclass_fields__:
            assert f"<code>--{name.replace('_', '-')}</code>" in page, name


@pytest.mark.slow
def test_the_cli_page_holds_every_commands_help(site):
    page = (site / "cli.html").read_text()
    for command in ("train", "sample", "evaluate", "plot", "report", "vocode", "demo", "bench"):
        assert f"usage: scorelab {command}" in page, command
    assert "cli-help" not in page


@pytest.mark.slow
def test_the_site_loads_nothing_from_the_network(site):
    """Opened from file://, a page must not wait on (or fail to load) scripts, styles or fonts from outside."""
    for page in site.rglob("*.html"):
        text = page.read_text()
        external = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://[^"]+)"', text)
        assert external == [], page.relative_to(site)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian's chromium package; .ci/run installs it)")
@pytest.mark.parametrize("page", ["index.html", "tutorials/02_diffusion.html", "config-reference.html",
                                  "results.html"])
@pytest.mark.slow
def test_a_page_renders_in_chromium_with_every_image_loaded_and_no_error(site, page, tmp_path):
    path = site / page
    verdict = browser_verdict(path, path.parent)  # beside the page, so its relative links resolve
    assert verdict["broken"] == 0 and verdict["errors"] == [], verdict
    if page == "results.html":
        assert verdict["images"] >= 10, verdict


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    return blocks[0]


@pytest.mark.slow
def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # it writes runs/ into the working directory
    torch.manual_seed(0)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.split()
    assert len(printed) >= 2 and (tmp_path / "runs").is_dir()


def test_the_readme_fits_on_a_screen_and_keeps_the_ci_line():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert 'pip install -e ".[test]" && pytest' in text
    assert 'pytest -m "not slow"' in text
