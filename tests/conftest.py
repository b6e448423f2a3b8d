"""Shared fixtures: tiny, seeded training runs that take a second or two."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import scorelab as sl
from scorelab.app.cli import main
from scorelab.runs.config import NAME_KEYS

# Two cores are shared by everything (two test workers among them); one thread each keeps the workers from
# spinning against each other and results identical. The environment carries it to the CLI's subprocesses.
os.environ["OMP_NUM_THREADS"] = "1"
sl.set_threads(1)


TINY = dict(n_data=512, steps=40, batch_size=64, hidden=32, depth=2, checkpoint_every=20, log_every=10,
            n_levels=4, n_steps_each=5, seed=3, device="cpu")


def tiny_config(**changes) -> sl.Config:
    """A run small enough for unit tests (not for quality): the TINY settings its parts have, then ``changes``.

    Where neither ``changes`` nor the data name a family, it is the NCSN (the default family until issue 33, for
    which these unit tests were written), which samples with annealed Langevin (4 levels × 5 steps), the cheapest
    sampler to test with.
    """
    parts = sl.Config(**{key: value for key, value in changes.items() if key in NAME_KEYS})
    if parts.process.name == "flow" and not {"model", "process", "objective"} & set(changes):
        changes = {"model": "noise_conditional", **changes}
        parts = sl.Config(**{key: value for key, value in changes.items() if key in NAME_KEYS})
    if parts.sampler.name == "stochastic_heun" and "sampler" not in changes:
        changes = {**changes, "sampler": "ald"}
        parts = sl.Config(**{key: value for key, value in changes.items() if key in NAME_KEYS})
    return sl.Config(**{**{key: value for key, value in TINY.items() if key in parts.flat()}, **changes})


def run_cli(capsys, *argv):
    """Run the CLI in this process: its exit code (argparse's too), stdout and stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_clean_error(code, err, pattern):
    """Exit code 2 and one ``scorelab: error:`` line containing ``pattern``, no traceback."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scorelab: error: "), err
    assert pattern in lines[0]
    assert "Traceback" not in err


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Cached floors go to a directory of the test session's own, never the user's (CLI children inherit it)."""
    import os

    previous = os.environ.get("SCORELAB_CACHE")
    os.environ["SCORELAB_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        del os.environ["SCORELAB_CACHE"]
    else:
        os.environ["SCORELAB_CACHE"] = previous


@pytest.fixture
def tiny_run(tmp_path):
    """A trained tiny run directory."""
    run_dir = tmp_path / "run"
    sl.train(tiny_config(), run_dir, progress=False)
    return run_dir


# --- a page in a real browser ----------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Put first in <head>, so that it sees every error from the first element on; once the page and every
# audio element's metadata have loaded (or failed), it writes what it found into the page.
BROWSER_CHECK = """<script>
window.scorelabErrors = [];
window.addEventListener("error", e => scorelabErrors.push(String(e.message || e.target.tagName)), true);
const consoleError = console.error;
console.error = (...args) => { scorelabErrors.push(args.join(" ")); consoleError(...args); };
window.addEventListener("load", async () => {
  const broken = [...document.images].filter(image => !image.complete || image.naturalWidth === 0);
  const sounds = await Promise.all([...document.querySelectorAll("audio")].map(audio => audio.readyState >= 1 ?
    true : new Promise(done => { audio.addEventListener("loadedmetadata", () => done(true));
                                 audio.addEventListener("error", () => done(false)); audio.load(); })));
  const verdict = document.createElement("pre");
  verdict.id = "verdict";
  verdict.textContent = JSON.stringify({images: document.images.length, broken: broken.length,
                                        audio: sounds.length, silent: sounds.filter(ok => !ok).length,
                                        errors: scorelabErrors.map(error => error.slice(0, 200))});
  document.body.append(verdict);
});
</script>"""


def render_in_chromium(page, *flags):
    """Headless Chromium on the file ``page``, with ``flags`` (a screenshot, a DOM dump)."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                           "--autoplay-policy=no-user-gesture-required", *flags, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def browser_verdict(page, scratch):
    """What :data:`BROWSER_CHECK` found in ``page`` rendered by Chromium: counts of images and broken ones,
    audio elements and silent ones (no metadata loaded), and the errors reported."""
    checked = scratch / f"checked_{page.name}"
    checked.write_text(page.read_text().replace("<head>", "<head>" + BROWSER_CHECK, 1))
    dom = render_in_chromium(checked, "--virtual-time-budget=15000", "--dump-dom").stdout
    assert '<pre id="verdict">' in dom, "the page's check never ran"
    return json.loads(dom.split('<pre id="verdict">', 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))


def without_saved_setting(run_dir: Path, section: str, key: str) -> None:
    """Rewrite the run in ``run_dir`` as it was saved before ``[section] key`` existed: the key leaves the
    checkpoint's config and ``config.toml``."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = Path(run_dir) / "model.safetensors"
    with safe_open(path, framework="pt") as file:
        metadata = file.metadata()
    config = json.loads(metadata["config"])
    del config[section][key]
    save_file(load_file(path), path, metadata={**metadata, "config": json.dumps(config)})
    toml = Path(run_dir) / "config.toml"
    toml.write_text("".join(line for line in toml.read_text().splitlines(keepends=True)
                            if not line.startswith(f"{key} =")))
