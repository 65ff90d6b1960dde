"""The one JSON form of search results, kept on disk (:mod:`.disk`) and in
the cluster tier (:mod:`.cluster`) alike: a study, series or instance with
the deeper levels its search carried.  ``decode_*`` raise ValueError (or
KeyError / TypeError, which :func:`load` turns into ValueError) for anything
that is not what :func:`encode` wrote."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..model import Instance, Series, Study

T = TypeVar("T")
Listed = Study | Series | Instance


def _strs(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError("attributes are not a string map")
    return dict(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a UID is not a string")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value


def encode(obj: Listed) -> dict[str, Any]:
    """A study, series or instance (with the levels it carries) as JSON data."""
    if isinstance(obj, Instance):
        return {"study": obj.study_uid, "series": obj.series_uid, "uid": obj.uid, "attrs": obj.attrs}
    if isinstance(obj, Series):
        out: dict[str, Any] = {"study": obj.study_uid, "uid": obj.uid, "attrs": obj.attrs}
        if obj.instances is not None:
            out["instances"] = [encode(i) for i in obj.instances]
        return out
    out = {"uid": obj.uid, "attrs": obj.attrs}
    if obj.series is not None:
        out["series"] = [encode(s) for s in obj.series]
    return out


def decode_instance(d: Any) -> Instance:
    return Instance(_str(d["study"]), _str(d["series"]), _str(d["uid"]), _strs(d["attrs"]))


def decode_series(d: Any) -> Series:
    inst = d.get("instances")
    instances = None if inst is None else [decode_instance(i) for i in _list(inst)]
    return Series(_str(d["study"]), _str(d["uid"]), _strs(d["attrs"]), instances)


def decode_study(d: Any) -> Study:
    ser = d.get("series")
    series = None if ser is None else [decode_series(s) for s in _list(ser)]
    return Study(_str(d["uid"]), _strs(d["attrs"]), series)


def items(items: Sequence[Listed]) -> list[dict[str, Any]]:
    """A search result as JSON data."""
    return [encode(i) for i in items]


def from_items(data: Any, decode: Callable[[Any], T]) -> list[T]:
    """A search result from JSON data; ValueError if it is not one."""
    try:
        return [decode(d) for d in _list(data)]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a stored search result: {exc!r}") from None


def dumps(doc: dict[str, Any]) -> bytes:
    """A document holding results, compactly."""
    return json.dumps(doc, separators=(",", ":")).encode()
