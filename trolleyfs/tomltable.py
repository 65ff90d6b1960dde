"""Reading one table of the TOML config: typed values, the dotted key of each
problem, and unknown keys reported by name.  Every problem is a
:class:`~trolleyfs.errors.ConfigError` naming the file, the key and what is
wrong, so the CLI can print one line."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from typing import Any, TypeVar, cast, overload

from .errors import ConfigError

T = TypeVar("T")

_VALUE_KINDS: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
}
_KIND_NAMES = {**_VALUE_KINDS, _dt.date: "a date"}
_URL = re.compile(r"^https?://[^/\s]+")


def kind_name(value: object) -> str:
    """``"a string"``, ``"an integer"``, ... for the type of a TOML value."""
    return _VALUE_KINDS.get(type(value), type(value).__name__)


def _names(kinds: Iterable[type]) -> str:
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


class Table:
    """A TOML table being read: knows its dotted path, so that each problem
    names the key it is about."""

    def __init__(self, path: str, key: str, data: object) -> None:
        self.path, self.key = path, key
        if not isinstance(data, dict):
            raise ConfigError(path, key or None, f"must be a table, not {kind_name(data)}")
        self.data: dict[str, Any] = data

    def sub(self, name: str) -> str:
        """The dotted key of ``name`` in this table."""
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str | None, problem: str) -> ConfigError:
        return ConfigError(self.path, self.sub(name) if name else self.key or None, problem)

    def get_any(self, name: str, kinds: tuple[type, ...]) -> object:
        """The value of ``name`` if it is one of ``kinds`` (an integer counts as
        a number), None if absent; a ConfigError otherwise."""
        if name not in self.data:
            return None
        value = self.data[name]
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {_names(kinds)}, not a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {_names(kinds)}, not {kind_name(value)}")
        return value

    @overload
    def get(self, name: str, kind: type[T]) -> T | None: ...

    @overload
    def get(self, name: str, kind: type[T], default: T) -> T: ...

    def get(self, name: str, kind: type[T], default: T | None = None) -> T | None:
        value = self.get_any(name, (kind,))
        return default if value is None else cast(T, value)

    def require(self, name: str, kind: type[T]) -> T:
        if name not in self.data:
            raise self.error(name, "is missing")
        return cast(T, self.get_any(name, (kind,)))

    def url(self, name: str) -> str:
        """A required http:// or https:// URL, without a trailing slash."""
        url = self.require(name, str)
        if not _URL.match(url):
            raise self.error(name, f"{url!r} is not an http:// or https:// URL")
        return url.rstrip("/")

    def table(self, name: str) -> Table | None:
        if name not in self.data:
            return None
        return Table(self.path, self.sub(name), self.data[name])

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for name in self.data:
            if name not in allowed:
                raise self.error(name, f"unknown key (expected one of: {', '.join(sorted(allowed))})")
