"""A command's argparse arguments, described as JSON in the user's cache and rebuilt from it.

The flags of ``scorelab train`` and ``sample`` come from the registries, which load torch, so a
mistyped flag would wait seconds for its error. The description of a command's arguments is
stored once (:mod:`scorelab.core.cache`), keyed by the scorelab version and the modification times
of its source files, and later parsers are rebuilt from it without importing the registries.
Anything the description cannot hold (a type or action outside the lists below) is not cached.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scorelab import __version__
from scorelab.core.cache import lookup, store

TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str, "Path": Path}
ACTIONS = {argparse._StoreAction: "store", argparse._StoreTrueAction: "store_true",
           argparse.BooleanOptionalAction: "boolean"}
_PACKAGE = Path(__file__).resolve().parent


def sources_stamp() -> list[float]:
    """The number of scorelab's source files and their latest modification time."""
    times = [path.stat().st_mtime for path in _PACKAGE.rglob("*.py")]
    return [len(times), max(times)]


def _value(value: Any) -> Any:
    return {"path": str(value)} if isinstance(value, Path) else value


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        return Path(value["path"])
    return argparse.SUPPRESS if value == argparse.SUPPRESS else value  # argparse tests it by identity


def describe(action: argparse.Action) -> dict | None:
    """One argument as JSON, or None when it holds something JSON cannot."""
    kind = ACTIONS.get(type(action))
    type_name = next((name for name, t in TYPES.items() if t is action.type), None)
    if kind is None or (action.type is not None and type_name is None):
        return None
    flags = [flag for flag in action.option_strings if not (kind == "boolean" and flag.startswith("--no-"))]
    return {"flags": flags, "dest": action.dest, "kind": kind, "type": type_name, "nargs": action.nargs,
            "default": _value(action.default), "choices": action.choices and list(action.choices),
            "required": action.required, "help": action.help, "metavar": action.metavar}


def rebuild(parser: argparse.ArgumentParser, described: dict) -> None:
    """Add one described argument to ``parser``."""
    options: dict[str, Any] = {"default": _restore(described["default"]), "help": _restore(described["help"])}
    if described["flags"]:
        options.update(dest=described["dest"], required=described["required"])
    if described["kind"] == "store_true":
        options["action"] = "store_true"
    elif described["kind"] == "boolean":
        options["action"] = argparse.BooleanOptionalAction
    else:
        options.update(type=described["type"] and TYPES[described["type"]], nargs=described["nargs"],
                       choices=described["choices"], metavar=described["metavar"])
    parser.add_argument(*(described["flags"] or [described["dest"]]), **options)


def add_cached_arguments(parser: argparse.ArgumentParser, command: str,
                         add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """``add_arguments(parser)``, from the cached description when there is one."""
    key = {"command": command, "version": __version__, "sources": sources_stamp()}
    described = lookup("cli", key)
    if described is None:
        probe = argparse.ArgumentParser(add_help=False)
        add_arguments(probe)
        described = [describe(action) for action in probe._actions]
        if None in described:
            add_arguments(parser)
            return
        store("cli", key, described)
    for argument in described:
        rebuild(parser, argument)
