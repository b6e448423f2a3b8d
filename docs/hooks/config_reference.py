"""MkDocs hook: the pages that are generated from the code at build time, never written by hand.

- ``config-reference.md``: every registered part of every config section and every setting, with its
  flag, TOML key, default and help, read from the registries (``scorelab.runs.config``).
- the ``<!-- cli-help -->`` marker in ``cli.md``: each command's ``--help``, as ``scorelab`` prints it.
- ``benchmarks.md``: the repository's ``BENCHMARKS.md`` as it is, its figures (``benchmarks/*.png``)
  copied in as ``images/benchmarks/*.png``.
- the ``<!-- pretrained-table -->`` marker in ``pretrained.md``: the runs that ship, read from their
  ``provenance.toml`` (what ``scorelab pretrained`` prints).

Registered under ``hooks:`` in ``mkdocs.yml``. The generated page exists only in the build; nothing is
written into ``docs/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from scorelab import pretrained
from scorelab.app.cli import main
from scorelab.data import DATA
from scorelab.runs import config as run_config
from scorelab.runs.config import CHOICE_SECTIONS, OptimSettings, RunSettings, parts

PAGE = "config-reference.md"
ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_PAGE = "benchmarks.md"
FIGURES = "images/benchmarks"
CLI_MARKER = "<!-- cli-help -->"
PRETRAINED_MARKER = "<!-- pretrained-table -->"
COMMANDS = ("train", "distill", "sample", "evaluate", "plot", "report", "vocode", "pretrained", "demo", "bench")

SECTION_TEXT = {
    "run": "Top-level keys of `config.toml`: the seed every random draw starts from, and the device.",
    "data": "The data set: a registered name, or a path (a `.csv`/`.npy` of rows, a folder or `.npy` of "
            "images, a folder of `.wav` files).",
    "model": "The backbone, made into a score by the preconditioning wrapper.",
    "process": "The noise process: which levels training draws, where sampling starts and which grid it walks.",
    "objective": "The training loss.",
    "sampler": "How `scorelab sample` (and `evaluate`, `plot`) draws from the trained score.",
    "optim": "The optimiser and the run's bookkeeping (Adam, EMA, checkpoints, log).",
}


def markdown_of(text: str) -> str:
    """A docstring-style help line as Markdown for a table cell: Sphinx roles and ``literals`` as code."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    text = " ".join(text.split())
    return text.replace("|", "\\|")


def default_of(spec: dataclasses.Field) -> Any:
    if spec.default is not dataclasses.MISSING:
        return spec.default
    if spec.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return spec.default_factory()  # type: ignore[misc]
    return None


def shown(value: Any) -> str:
    """A value as it is written in ``config.toml``."""
    if value is None:
        return "(required)"
    if isinstance(value, (bool, int, float, str)):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value!r}`"


def flag_of(spec: dataclasses.Field) -> str:
    flag = "--" + spec.name.replace("_", "-")
    if isinstance(default_of(spec), bool):
        return f"`{flag}`, `--no-{flag[2:]}`"
    return f"`{flag}`"


def settings_table(rows: list[tuple[dataclasses.Field, list[str]]], with_parts: bool) -> list[str]:
    head = "| flag | key | default |" + (" parts |" if with_parts else "") + " meaning |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for spec, names in rows:
        cells = [flag_of(spec), f"`{spec.name}`", shown(default_of(spec))]
        if with_parts:
            cells.append(", ".join(f"`{name}`" for name in names))
        cells.append(markdown_of(spec.metadata.get("help", "")))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def section_settings(section_parts: list) -> list[tuple[dataclasses.Field, list[str]]]:
    """Each distinct setting of a section (name, default and help alike) with the parts that have it."""
    found: dict[tuple, tuple[dataclasses.Field, list[str]]] = {}
    for part in section_parts:
        for spec in dataclasses.fields(part.settings):
            key = (spec.name, repr(default_of(spec)), spec.metadata.get("help", ""))
            found.setdefault(key, (spec, []))[1].append(part.name)
    return list(found.values())


def reference_page() -> str:
    lines = [
        "# Config reference",
        "",
        "!!! note \"Generated\"",
        "    This page is written at build time from the registries (`docs/hooks/config_reference.py` reads",
        "    `scorelab.runs.config`): every part and setting below is the one the code has.",
        "",
        "A run is five registered parts, one per section, plus the optimiser's settings, a seed and a device. "
        "Each setting's name is unique across sections, so it can be given flat, as a flag "
        "(`--n-levels 10`) or a flat TOML key (`n_levels = 10`), or in its section's table of "
        "`config.toml` (`[process] n_levels = 10`). Precedence: defaults, then a part's presets, then "
        "the `--config` file, then flags. Choosing a part implies the parts in its *implies* column "
        "unless those are chosen too; a setting the chosen part lacks is an error. "
        "See [the command line](cli.md) for how a run is configured.",
        "",
    ]
    defaults = dict(getattr(run_config, "DEFAULTS", {}))
    for section in ("run", *CHOICE_SECTIONS, "optim"):
        lines += [f"## `[{section}]`" if section != "run" else "## Top level", "", SECTION_TEXT.get(section, ""), ""]
        if section in ("run", "optim"):
            settings = RunSettings if section == "run" else OptimSettings
            lines += settings_table([(spec, []) for spec in dataclasses.fields(settings)], with_parts=False)
            lines.append("")
            continue
        section_parts = parts(section)
        name_key = "dataset" if section == "data" else section
        lines += [f"Chosen with `--{name_key} NAME` (or `{name_key} = \"NAME\"`); "
                  f"the default is `{defaults.get(section, '?')}`.", "",
                  "| part | what it is | implies | presets |", "|---|---|---|---|"]
        for part in section_parts:
            name = f"`{part.name}`"
            if section == "data" and part.name not in DATA:
                name += " (a path)"
            implies = ", ".join(f"{other} `{chosen}`" for other, chosen in part.implies.items()) or "–"
            presets = ", ".join(f"`{key} = {json.dumps(value)}`" for key, value in part.presets.items()) or "–"
            lines.append(f"| {name} | {markdown_of(part.help)} | {implies} | {presets} |")
        lines.append("")
        rows = section_settings(section_parts)
        if rows:
            lines += ["Settings:", ""] + settings_table(rows, with_parts=True)
        else:
            lines.append("No part of this section has settings.")
        lines.append("")
    return "\n".join(lines)


def cli_help() -> str:
    """Each command's ``--help`` as the CLI prints it, at 100 columns."""
    blocks = []
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        for command in COMMANDS:
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
                main([command, "--help"])
            blocks += [f"### `scorelab {command}`", "", "```text", out.getvalue().rstrip(), "```", ""]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(blocks)


def benchmarks_page() -> str:
    """BENCHMARKS.md with its image links pointing where this site keeps the figures."""

    def relink(match: re.Match) -> str:
        alt, target = match.group(1), match.group(2)
        if target.startswith("docs/"):
            return f"![{alt}]({target[len('docs/'):]})"
        return f"![{alt}]({FIGURES}/{Path(target).name})"

    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", relink, text)


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, PAGE, content=reference_page()))
    files.append(File.generated(config, BENCHMARKS_PAGE, content=benchmarks_page()))
    for figure in sorted((ROOT / "benchmarks").glob("*.png")):
        files.append(File.generated(config, f"{FIGURES}/{figure.name}", abs_src_path=str(figure)))
    return files


def pretrained_table() -> str:
    rows = ["| run | what | size | trained | scores |", "|---|---|---|---|---|"]
    for name in pretrained.names():
        record = pretrained.Provenance.read(name)
        values = record.values
        scores = record.scores_text()
        rows.append(f"| `pretrained:{name}` | {markdown_of(record.summary)} | {record.size / 1e6:.2f} MB, "
                    f"{values['weights']} | {values['steps']} steps, {values['train_minutes']:.1f} min on {values['machine']}: "
                    f"`{values['command']}` | {scores} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_help())
    if PRETRAINED_MARKER in markdown:
        markdown = markdown.replace(PRETRAINED_MARKER, pretrained_table())
    return markdown
