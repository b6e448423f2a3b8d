"""Runs that ship with scorelab, named ``pretrained:NAME`` wherever a run directory is asked for.

    scorelab pretrained                                     # what ships: each run's scores and size
    scorelab sample pretrained:digits --class all --n 10 --out digits.png
    run = sl.load_run("pretrained:mnist")

Each run is a directory beside this file, reduced to what sampling needs: ``config.toml``, ``model.safetensors``
(the EMA weights and the data's normalisation, no optimiser state), ``train_log.csv``, the ``metrics.json`` of
``scorelab evaluate`` and ``provenance.toml``: the command and commit that trained it, its steps, minutes and
machine, its headline scores and the SHA-256 of every other file. ``benchmarks/pretrain.py NAME`` makes them.

A pretrained run is read-only: a command that would write into it refuses (:func:`require_writable`), and
``scorelab train --init-from pretrained:NAME --out RUN`` fine-tunes a copy. This module imports no torch, so that
``scorelab pretrained`` answers at once.
"""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from scorelab.core.errors import ConfigError

PREFIX = "pretrained:"
ROOT = Path(__file__).resolve().parent
PROVENANCE = "provenance.toml"
WEIGHTS = "model.safetensors"


def names() -> list[str]:
    """The runs that ship, by name (each a directory here with a ``provenance.toml``)."""
    return sorted(path.parent.name for path in ROOT.glob(f"*/{PROVENANCE}"))


def resolve(run: str | Path) -> Path:
    """The directory of ``run``: a path as it is, ``pretrained:NAME`` the shipped run's (``pretrained:NAME/FILE``
    a file of it, such as the guide of autoguidance); a one-line error for a name that does not ship."""
    if not str(run).startswith(PREFIX):
        return Path(run)
    name, _, file = str(run)[len(PREFIX):].partition("/")
    if name not in names():
        shipped = ", ".join(PREFIX + known for known in names()) or "none"
        raise ConfigError(f"no pretrained run named {name!r}; the runs that ship: {shipped}")
    return ROOT / name / file if file else ROOT / name


def name_of(run_dir: str | Path) -> str | None:
    """The name of the pretrained run whose directory ``run_dir`` is (or lies in); None for any other path."""
    path = Path(run_dir).resolve()
    if path == ROOT or ROOT not in path.parents:
        return None
    return path.relative_to(ROOT).parts[0]


def require_writable(run_dir: str | Path, action: str) -> None:
    """Raise :class:`ConfigError` if ``run_dir`` is a pretrained run, which ``action`` (say, "train into") would
    change."""
    name = name_of(run_dir)
    if name is not None:
        raise ConfigError(f"{PREFIX}{name} is read-only and cannot be {action}; fine-tune a copy with "
                          f"`scorelab train --init-from {PREFIX}{name} --out RUN`")


def working_copy(run_dir: str | Path, where: Path) -> Path:
    """A writable copy of the pretrained run ``run_dir`` in ``where/pretrained-NAME``: made there on first use,
    reused while its weights are the shipped ones; a one-line error if that directory holds anything else."""
    name = name_of(run_dir)
    if name is None:
        raise ConfigError(f"{run_dir} is not a pretrained run")
    copy, weights = where / f"pretrained-{name}", Provenance.read(name).files[WEIGHTS]
    if not copy.exists() or (copy.is_dir() and not any(copy.iterdir())):
        shutil.copytree(ROOT / name, copy, dirs_exist_ok=True)
    elif not (copy / WEIGHTS).is_file() or sha256(copy / WEIGHTS) != weights:
        raise ConfigError(f"{copy} exists and is not a copy of {PREFIX}{name}; move it, or run from another "
                          "directory")
    return copy


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """A pretrained run's ``provenance.toml``: how it was made and what it scores."""

    name: str
    values: dict

    @classmethod
    def read(cls, name: str) -> Provenance:
        return cls(name, tomllib.loads((resolve(PREFIX + name) / PROVENANCE).read_text()))

    @property
    def directory(self) -> Path:
        return ROOT / self.name

    @property
    def summary(self) -> str:
        return self.values["summary"]

    @property
    def scores(self) -> dict[str, float]:
        """The headline scores of ``scorelab evaluate``, by name."""
        return self.values["scores"]

    def scores_text(self, separator: str = "; ") -> str:
        """The headline scores on one line: "W2 ratio 0.953", three significant digits each."""
        return separator.join(f"{label} {value:.3g}" for label, value in self.scores.items())

    @property
    def files(self) -> dict[str, str]:
        """Each file of the run (but this record) with its SHA-256."""
        return self.values["files"]

    @property
    def size(self) -> int:
        """Bytes of the run's files, this record included."""
        return sum((self.directory / file).stat().st_size for file in [*self.files, PROVENANCE])

    def changed_files(self) -> list[str]:
        """The files whose SHA-256 differs from the record's (or that are missing)."""
        return [file for file, digest in self.files.items()
                if not (self.directory / file).is_file() or sha256(self.directory / file) != digest]
