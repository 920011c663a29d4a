"""Typed options given as ``KEY=VALUE`` strings: one parser for dataset options
(``--dataset-option``) and method hyperparameters (``--method-option``).

An :class:`Option` declares a default (whose type the value takes), an optional valid range
or set of choices, and whether it changes *what* is built (part of the fingerprint) or only
*how* (speed, side outputs). Every refusal is a :class:`~datasets.errors.ConfigError` naming
the option, the value and what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datasets.errors import ConfigError

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_value(label: str, text: Any, default: Any) -> Any:
    """``text`` typed like ``default``: bool, int, float, str, or a tuple (comma-separated);
    a value already typed (from Python) is checked to be of that type. ``label`` names the
    option in messages."""
    if not isinstance(text, str):
        return typed(label, text, default)
    try:
        if isinstance(default, bool):
            if text.lower() not in TRUE + FALSE:
                raise ValueError
            return text.lower() in TRUE
        if isinstance(default, tuple):
            kind = type(default[0]) if default else str
            return tuple(kind(part.strip()) for part in text.split(",") if part.strip())
        if default is None:
            return text
        return type(default)(text)
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise ConfigError(f"{label}={text!r} is not a valid {kind}") from None


def typed(label: str, value: Any, default: Any) -> Any:
    """``value`` if it is of ``default``'s type (an int for a float, a list for a tuple
    accepted), else ``ConfigError``."""
    if default is None:
        return value
    if isinstance(default, tuple):
        kind = type(default[0]) if default else object
        if isinstance(value, (list, tuple)) and all(typed(label, v, kind()) is not None for v in value):
            return tuple(value)
    elif isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, type(default)):
        return value
    raise ConfigError(f"{label}={value!r} is not a valid {type(default).__name__}")


def _number(value: float) -> str:
    """``10000000`` as ``10,000,000``, ``4096`` as ``4096``, ``1e-12`` as ``1e-12``."""
    if float(value).is_integer():
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Option:
    """One option: its default, valid range (``low``/``high``, inclusive) or ``choices``, a
    short help text, and ``fingerprint``: False for options that change how a dataset is
    built (speed, an export) but not its contents."""

    default: Any
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple | None = None
    fingerprint: bool = True

    def valid(self) -> str:
        """What is valid, for messages and ``--list``."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is not None and self.high is not None:
            return f"{_number(self.low)}..{_number(self.high)}"
        if self.low is not None:
            return f">= {_number(self.low)}"
        if self.high is not None:
            return f"<= {_number(self.high)}"
        return f"a {type(self.default).__name__}"

    def parse(self, label: str, text: Any) -> Any:
        """``text`` typed and checked; ``label`` names the option in messages."""
        value = parse_value(label, text, self.default)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{label}={value!r} is not valid; valid: {self.valid()}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and ((self.low is not None and value < self.low) or (self.high is not None and value > self.high)):
            raise ConfigError(f"{label}={value!r} is out of range; valid: {self.valid()}")
        return value


def parse_options(given: Mapping[str, Any], declared: Mapping[str, Option], owner: str) -> dict[str, Any]:
    """Every declared option, with the ``given`` ones parsed and checked; unknown keys refused."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ConfigError(f"{owner}: unknown option(s) {', '.join(unknown)}; valid: "
                          f"{', '.join(sorted(declared)) or 'none'}")
    return {name: option.parse(f"{owner} option {name}", given[name]) if name in given else option.default
            for name, option in declared.items()}
