"""Reading one table of the TOML config: typed values, the dotted key of each
problem, and unknown keys reported by name.  Every problem is a
:class:`~trolleyfs.errors.ConfigError` naming the file, the key and what is
wrong, so the CLI can print one line.

Some checks hold for every value, whatever its key: a number is finite (no
``inf`` or ``nan``, nothing too large for a float); a string holds no control
character (NUL, newline, ...: config strings end up in requests, file names
and logs).  Numbers and integers are read with their bounds, paths with ``~``
expanded, files only when they are regular files of a sane size."""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import httpx

from .errors import ConfigError

T = TypeVar("T")

_VALUE_KINDS: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
    _dt.date: "a date",
    _dt.datetime: "a date-time",
    _dt.time: "a time",
}
_KIND_NAMES = _VALUE_KINDS
_URL = re.compile(r"^https?://[^/\s]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
MAX_SMALL_FILE = 1 << 20  # secrets, keys: a file larger than this is not one


def control_problem(text: str) -> str | None:
    """What is wrong with a string that must hold no control character, or None."""
    m = _CONTROL.search(text)
    return None if m is None else f"must not contain control characters ({m.group()!a} found)"


def key_text(name: str) -> str:
    """A key as TOML writes it: bare, or quoted when it must be."""
    if _BARE_KEY.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


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
        name = key_text(name)
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
            try:
                value = float(value)
            except OverflowError:
                raise self.error(name, "is too large") from None
        if isinstance(value, _dt.datetime) and _dt.datetime not in kinds:
            raise self.error(name, f"must be {_names(kinds)}, not a date-time")
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {_names(kinds)}, not {kind_name(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.error(name, f"must be a finite number, not {value}")
        if isinstance(value, str) and (problem := control_problem(value)):
            raise self.error(name, problem)
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

    def number(self, name: str, default: float, lo: float, hi: float, *, above: bool = False) -> float:
        """A number from ``lo`` (or, with ``above``, more than ``lo``) to ``hi``."""
        value = self.get(name, float, default)
        if not ((value > lo if above else value >= lo) and value <= hi):
            raise self.error(name, f"must be {'more than' if above else 'at least'} {lo:g} and at most {hi:g}")
        return value

    def integer(self, name: str, default: int, lo: int, hi: int) -> int:
        """An integer from ``lo`` to ``hi``."""
        value = self.get(name, int, default)
        if not lo <= value <= hi:
            raise self.error(name, f"must be between {lo} and {hi}")
        return value

    def url(self, name: str) -> str:
        """A required http:// or https:// URL, without a trailing slash."""
        url = self.require(name, str)
        if not _URL.match(url) or url != url.strip():
            raise self.error(name, f"{url!r} is not an http:// or https:// URL")
        try:
            parsed = httpx.URL(url)
            parsed.port  # noqa: B018 - a bad port raises
        except (httpx.InvalidURL, ValueError) as exc:
            raise self.error(name, f"{url!r} is not a usable URL: {exc}") from None
        if not parsed.host:
            raise self.error(name, f"{url!r} names no host")
        return url.rstrip("/")

    def local_path(self, name: str) -> str | None:
        """A path (``~`` expanded), or None if absent."""
        value = self.get(name, str)
        if value is None:
            return None
        if not value.strip():
            raise self.error(name, "must be a path, not an empty string")
        try:
            return str(Path(value).expanduser())
        except RuntimeError as exc:  # ~user whose home is unknown
            raise self.error(name, f"cannot expand {value!r}: {exc}") from None

    def file(self, name: str, max_bytes: int | None = None) -> str | None:
        """The path of an existing regular file (not a directory, device or
        pipe: reading one of those could block or never end), or None if
        absent; with ``max_bytes``, no larger than that."""
        path = self.local_path(name)
        if path is None:
            return None
        problem = file_problem(path, max_bytes)
        if problem:
            raise self.error(name, problem)
        return path

    def read_small(self, name: str, path: str) -> bytes:
        """The bytes of a small regular file (a secret, a key) named by ``name``."""
        problem = file_problem(path, MAX_SMALL_FILE)
        if problem:
            raise self.error(name, problem)
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise self.error(name, f"cannot read {path}: {exc.strerror or exc}") from None

    def table(self, name: str) -> Table | None:
        if name not in self.data:
            return None
        return Table(self.path, self.sub(name), self.data[name])

    def check_keys(self, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for name in self.data:
            if name not in allowed:
                raise self.error(name, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def file_problem(path: str, max_bytes: int | None = None) -> str | None:
    """Why ``path`` is not a regular file to read (of at most ``max_bytes``), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return f"no such file: {path}"
    except (OSError, ValueError) as exc:
        return f"cannot use {path!r}: {getattr(exc, 'strerror', None) or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a directory, not a file"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if max_bytes is not None and st.st_size > max_bytes:
        return f"{path} is too large ({st.st_size} bytes; at most {max_bytes})"
    return None
