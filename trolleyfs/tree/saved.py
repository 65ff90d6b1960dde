"""Search results kept on disk, beside the disk cache's objects
(``<disk_dir>/listings``), so that what was listed once lists again after a
remount without asking the server: the offline half of the disk cache.

One JSON file per search result, in a directory per server, named by a hash
of the search's key; written to a temp file and renamed, so a crash never
leaves half a listing.  The file's mtime is when it was saved; the file holds
the key (a file that does not hold the key asked for is a miss) and the
objects, with whatever deeper levels the search carried.  A file that cannot
be read back is deleted and missed.  At most :data:`MAX_FILES` listings are
kept (the oldest go first, at start).

Blocking file I/O: call from a worker thread."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..model import Instance, Series, Study

log = logging.getLogger("trolleyfs.tree")

LISTINGS_DIR = "listings"  # inside the disk cache's directory
MAX_FILES = 100_000
FORMAT = 1

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


def holds(disk_dir: str, server: str) -> bool:
    """Whether the disk cache in ``disk_dir`` keeps anything listed on ``server``."""
    try:
        return any(p.suffix == ".json" for p in (Path(disk_dir) / LISTINGS_DIR / f"s-{server}").iterdir())
    except OSError:
        return False


class SavedListings:
    def __init__(self, disk_dir: str, max_files: int = MAX_FILES) -> None:
        self.dir = Path(disk_dir) / LISTINGS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._max_files = max_files
        self._prune()

    def _server_dir(self, server: str) -> Path:
        return self.dir / f"s-{server}"  # the prefix keeps a server called ".." inside

    def _path(self, server: str, key: str) -> Path:
        return self._server_dir(server) / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def holds(self, server: str) -> bool:
        """Whether anything listed on ``server`` is kept."""
        return holds(str(self.dir.parent), server)

    def age(self, server: str, key: str, now: float) -> float | None:
        """Seconds since the listing of ``key`` was saved, or None if it is not kept."""
        try:
            return max(0.0, now - self._path(server, key).stat().st_mtime)
        except OSError:
            return None

    def load(self, server: str, key: str, decode: Callable[[Any], T]) -> list[T] | None:
        """The kept listing of ``key``, or None (not kept, or unreadable: then dropped)."""
        p = self._path(server, key)
        try:
            raw = p.read_bytes()
        except OSError:
            return None
        try:
            doc = json.loads(raw)
            if doc.get("format") != FORMAT or doc.get("key") != key:
                return None  # another version's file, or a hash clash: not ours to use
            return [decode(item) for item in _list(doc["items"])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("saved listing %s is unreadable (%s); dropped", p, exc)
            p.unlink(missing_ok=True)
            return None

    def save(self, server: str, key: str, items: Sequence[Listed]) -> None:
        p = self._path(server, key)
        doc = {"format": FORMAT, "key": key, "items": [encode(i) for i in items]}
        tmp = p.with_name(f"{p.name}.tmp{os.getpid()}.{threading.get_ident()}")
        try:
            p.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, p)
        except OSError as exc:
            log.warning("cannot save listing in %s: %s", p.parent, exc)
            tmp.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Drop unfinished writes, and the oldest listings beyond the limit."""
        files = []
        for sub in self.dir.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if ".tmp" in f.name:
                    f.unlink(missing_ok=True)
                    continue
                try:
                    files.append((f.stat().st_mtime, f))
                except OSError:
                    continue
        if len(files) > self._max_files:
            files.sort()
            for _, f in files[: len(files) - self._max_files]:
                f.unlink(missing_ok=True)
