"""Registries: every data set, model, noise process, objective and sampler is a part registered by name.

A part has a name, a settings dataclass (each field a :func:`setting` with its default,
its help and its check) and the callables its family needs. The config file's tables,
the command-line flags and their help are all read from these registrations, so a new
part is one registered entry and nothing else.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from scorelab.core.errors import ConfigError, require_positive, require_positive_int

Check = Callable[[str, Any], None]


def setting(default: Any, help: str, check: Check | None = None) -> Any:
    """A settings field: its default, one line of help, and an optional ``check(name, value)``."""
    return field(default=default, metadata={"help": help, "check": check})


def help_of(settings: type, name: str) -> str:
    """The help line of the field ``name`` of a settings dataclass."""
    return next(f.metadata.get("help", name) for f in dataclasses.fields(settings) if f.name == name)


def redefault(base: type, name: str, default: Any) -> Any:
    """The field ``name`` of the settings dataclass ``base`` with another default, for a subclass: the
    setting keeps its meaning, help and check (``sample_steps`` of the Karras grid is 50 for stochastic Heun)."""
    spec = next(f for f in dataclasses.fields(base) if f.name == name)
    return field(default=default, metadata=spec.metadata)


def origin(settings: type, name: str) -> type:
    """The settings dataclass that first declares the field ``name`` of ``settings``: the most basic class
    in its MRO with that field. Two parts whose field has one origin share that setting in meaning."""
    return next(cls for cls in reversed(settings.__mro__)
                if dataclasses.is_dataclass(cls) and name in {f.name for f in dataclasses.fields(cls)})


def shared_settings(a: type, b: type) -> set[str]:
    """The fields of the settings dataclasses that ``a`` and ``b`` both derive from (all of them when a is b).

    Settings shared in meaning are declared once, in a common base (the samplers' ``KarrasGrid`` holds
    ``sample_steps`` and ``rho``), so only those carry over from one part's settings to another's.
    """
    common = [cls for cls in a.__mro__ if cls in b.__mro__ and dataclasses.is_dataclass(cls)]
    return {f.name for cls in common for f in dataclasses.fields(cls)}


# --- checks -------------------------------------------------------------------------------

positive = require_positive
positive_int = require_positive_int


def at_least_zero(zero_means: str) -> Check:
    """A check for a number >= 0 whose 0 has a meaning of its own."""

    def check(name: str, value: float) -> None:
        if not value >= 0:
            raise ConfigError(f"{name} must be >= 0 (0: {zero_means}), got {value}")

    return check


def one_of(*choices: str) -> Check:
    def check(name: str, value: str) -> None:
        if value not in choices:
            raise ConfigError(f"unknown {name} {value!r}; use one of: {', '.join(choices)}")

    return check


def within(low: float, high: float, *, high_open: bool = False) -> Check:
    """A check for low <= value <= high (or < high)."""

    def check(name: str, value: float) -> None:
        if not (low <= value < high if high_open else low <= value <= high):
            raise ConfigError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {value}")

    return check


# --- settings from values -------------------------------------------------------------------

_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "str": str}


def make_settings(settings: type, values: Mapping[str, Any], owner: str) -> Any:
    """An instance of the dataclass ``settings`` from ``values``, type-checked and validated.

    ``owner`` names the part in messages (e.g. ``"model 'mlp'"``). A key the part lacks,
    a value of the wrong type and a value its check refuses are each a :class:`ConfigError`.
    """
    fields = {f.name: f for f in dataclasses.fields(settings)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise ConfigError(f"{', '.join(unknown)} does not apply to {owner} (its settings: {known})")
    typed = {}
    for name, value in values.items():
        expected = _TYPES[str(fields[name].type)]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)) or (
                expected == (int, float) and isinstance(value, bool)):
            raise ConfigError(f"{name} should be {fields[name].type}, got {value!r}")
        typed[name] = float(value) if expected == (int, float) else value
    instance = settings(**typed)
    for name, spec in fields.items():
        check = spec.metadata.get("check")
        if check is not None:
            check(name, getattr(instance, name))
    if hasattr(instance, "check"):
        instance.check()
    return instance


# --- parts and registries -------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A registered part: its name, its settings dataclass, a line of help and what choosing it implies.

    ``implies`` maps another section to the part chosen there unless the user chose
    one (``--model energy`` trains by sliced score matching unless told otherwise).
    ``presets`` are settings of any section, by their flat names, that choosing this part
    brings unless they are stated (the U-Net trains with a smaller learning rate than an MLP).
    ``resolve(settings, data)`` fills the settings that are measured on the training data (0 = "from
    the data": the NCSN's σ_1, EDM's σ_d) and returns them, so that config.toml holds the numbers used.
    """

    section: ClassVar[str] = "part"  # each family's subclass names its config section

    name: str
    settings: type
    help: str = ""
    implies: Mapping[str, str] = field(default_factory=dict)
    presets: Mapping[str, Any] = field(default_factory=dict)
    resolve: Callable[[Any, Any], Any] = lambda settings, data: settings

    def make(self, values: Mapping[str, Any] | None = None) -> Any:
        """This part's settings from ``values`` over its defaults."""
        return make_settings(self.settings, values or {}, f"{self.section} {self.name!r}")


P = TypeVar("P", bound=Part)


class Registry(Generic[P]):
    """The parts of one config section (``model``, ``sampler``, ...) by name, in registration order."""

    def __init__(self, section: str) -> None:
        self.section = section
        self._parts: dict[str, P] = {}
        self._renamed: dict[str, str] = {}

    def register(self, part: P, *, formerly: str | None = None) -> P:
        """Add ``part``; ``formerly`` is an old name of it that keeps working (see :meth:`canonical`)."""
        if part.name in self._parts or part.name in self._renamed:
            raise ValueError(f"{self.section} {part.name!r} is registered twice")
        self._parts[part.name] = part
        if formerly is not None:
            self._renamed[formerly] = part.name
        return part

    def canonical(self, name: str) -> str:
        """``name``, or the part's name today where ``name`` is an old one (with a :class:`FutureWarning`)."""
        if name in self._renamed:
            warnings.warn(f"{self.section} {name!r} is now called {self._renamed[name]!r}; the old name still works",
                          FutureWarning, stacklevel=2)
            return self._renamed[name]
        return name

    def __getitem__(self, name: str) -> P:
        name = self._renamed.get(name, name)
        if name not in self._parts:
            raise ConfigError(f"unknown {self.section} {name!r}; use one of: {', '.join(self._parts)}")
        return self._parts[name]

    def __contains__(self, name: object) -> bool:
        return name in self._parts or name in self._renamed

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def parts(self) -> list[P]:
        return list(self._parts.values())
