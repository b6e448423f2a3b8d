"""A cache of measured values under the user's cache directory, keyed by everything that determines them.

``$SCORELAB_CACHE`` if set, else ``$XDG_CACHE_HOME/scorelab``, else ``~/.cache/scorelab``. Each
entry is one JSON file named by the hash of its key, which it also stores: a file whose key
differs (a hash collision, an edit) or that does not parse is recomputed. The cache only saves
time, so a directory that cannot be written is skipped, not an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from scorelab.core.atomic import write_atomic
from scorelab.core.errors import ScorelabError


def cache_dir() -> Path:
    """The root of scorelab's cache (see the module docstring)."""
    if os.environ.get("SCORELAB_CACHE"):
        return Path(os.environ["SCORELAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scorelab"


def _entry(kind: str, key: dict[str, Any]) -> tuple[Path, Any]:
    """The file for ``key`` and the key as it reads back from JSON."""
    text = json.dumps(key, sort_keys=True)
    return cache_dir() / kind / (hashlib.sha256(text.encode()).hexdigest()[:24] + ".json"), json.loads(text)


def lookup(kind: str, key: dict[str, Any]) -> Any | None:
    """The JSON value stored under ``kind`` for ``key``, or None."""
    path, key = _entry(kind, key)
    try:
        entry = json.loads(path.read_text())
        return entry["value"] if entry["key"] == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(kind: str, key: dict[str, Any], value: Any) -> None:
    """Keep ``value`` (JSON) under ``kind`` for ``key``; a directory that cannot be written is skipped."""
    path, key = _entry(kind, key)
    try:
        write_atomic(path, (json.dumps({"key": key, "value": value}, indent=1) + "\n").encode())
    except (OSError, ScorelabError):
        pass
