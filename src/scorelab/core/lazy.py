"""Packages whose names load on first use (PEP 562), so that a settings module beside them reads without torch.

``from scorelab.models.settings import ...`` runs ``scorelab/models/__init__.py`` first; that file only maps
the package's public names to the modules that define them, and each module loads when a name of it is asked for.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package module that keeps an object named like one of its submodules: importing the submodule
    ``scorelab.sampling.langevin`` leaves ``scorelab.sampling.langevin`` the function, as an eager
    ``from .langevin import langevin`` in ``__init__`` did."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_lazy_objects", ()):
            return
        super().__setattr__(name, value)


def lazy_package(package: str, objects: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package ``package`` whose names ``objects`` maps to the module
    defining each. Use: ``__getattr__, __dir__ = lazy_package(__name__, {...})``."""
    module = sys.modules[package]
    module.__class__ = _LazyPackage
    module._lazy_objects = dict(objects)

    def __getattr__(name: str) -> Any:
        if name not in objects:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(objects[name]), name)
        module.__dict__[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*module.__dict__, *objects})

    return __getattr__, __dir__
