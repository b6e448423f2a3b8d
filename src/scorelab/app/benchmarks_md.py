"""Sections of a Markdown benchmark file, each rewritten in place with its provenance.

Each benchmark owns one section of ``BENCHMARKS.md``, delimited by HTML
comments, and rewrites only that section, with the command, the machine, the
date and the commit. The file path is passed in, so that ``scorelab bench``
works from an installed package and ``benchmarks/*.py`` share the same code.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

from scorelab.core.atomic import write_atomic

TITLE = "# Benchmarks\n\nEvery table below was written by the script named in its section.\n"


def git_commit(repo: str | Path) -> str | None:
    """The short commit of the git checkout ``repo`` lies in, with ``+uncommitted changes`` when its tracked
    files have some; None outside a checkout (an installed wheel) or without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+uncommitted changes" if dirty else "")


def provenance(repo: str | Path = ".") -> str:
    """One line: command, machine (cores), date and the git commit of ``repo``."""
    commit = git_commit(repo) or "unknown"
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Command: `{command}` · machine: {machine()} · date: {date} · commit: {commit}"


def machine() -> str:
    """This machine in one phrase: architecture, processor, cores, torch and its threads."""
    return (f"{platform.machine()}{_processor()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads")


def _processor() -> str:
    """`` (model name, AVX-512 or not)`` from /proc/cpuinfo where there is one: the U-Net's convolutions ran
    several times faster on 2 cores with AVX-512 than without (BENCHMARKS.md, notes), so timings name it."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    names = re.findall(r"^model name\s*:\s*(.+)$", info, flags=re.MULTILINE)
    flags = re.search(r"^flags\s*:(.*)$", info, flags=re.MULTILINE)
    avx512 = flags is not None and " avx512f" in flags.group(1)
    return f" ({names[0].strip()}, {'with' if avx512 else 'no'} AVX-512)" if names else ""


def write_section(path: str | Path, name: str, title: str, body: str) -> str:
    """Replace (or append) the section ``name`` of the Markdown file ``path``; returns the section."""
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    section = f"{begin}\n## {title}\n\n{provenance(path.resolve().parent)}\n\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else TITLE
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    write_atomic(path, text.encode())
    return section


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
