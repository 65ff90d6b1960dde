"""Search results kept on disk, beside the disk cache's objects
(``<disk_dir>/listings``), so that what was listed once lists again after a
remount without asking the server: the offline half of the disk cache.

One JSON file per search result, in a directory per server (named by the server's identity,
:func:`.identity.server_identity`, not by its name in the config), named by a hash
of the search's key; written to a temp file and renamed, so a crash never
leaves half a listing.  The file's mtime is when it was saved; the file holds
the key (a file that does not hold the key asked for is a miss) and the
objects, with whatever deeper levels the search carried.  A file that cannot
be read back is deleted and missed.  At most :data:`MAX_FILES` listings are
kept (the oldest go first, at start).

Blocking file I/O: call from a worker thread."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .codec import Listed, from_items, items

log = logging.getLogger("trolleyfs.listings")

LISTINGS_DIR = "listings"  # inside the disk cache's directory
MAX_FILES = 100_000
FORMAT = 1

T = TypeVar("T")


def _dir_name(identity: str) -> str:
    return f"i-{identity}"  # the prefix keeps an identity called ".." inside


def holds(disk_dir: str, identity: str) -> bool:
    """Whether the disk cache in ``disk_dir`` keeps anything listed on the
    server of ``identity`` (:func:`.identity.server_identity`)."""
    try:
        return any(p.suffix == ".json" for p in (Path(disk_dir) / LISTINGS_DIR / _dir_name(identity)).iterdir())
    except OSError:
        return False


def newest_kept(disk_dir: str, identity: str) -> tuple[int, float] | None:
    """How many listings of the server of ``identity`` the disk cache in
    ``disk_dir`` keeps, and when the newest was saved (None: none)."""
    times = []
    with contextlib.suppress(OSError):
        for p in (Path(disk_dir) / LISTINGS_DIR / _dir_name(identity)).glob("*.json"):
            with contextlib.suppress(OSError):  # dropped meanwhile
                times.append(p.stat().st_mtime)
    return (len(times), max(times)) if times else None


class SavedListings:
    def __init__(self, disk_dir: str, max_files: int = MAX_FILES) -> None:
        self.dir = Path(disk_dir) / LISTINGS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._max_files = max_files
        self._prune()

    def _server_dir(self, server: str) -> Path:
        return self.dir / _dir_name(server)

    def _path(self, server: str, key: str) -> Path:
        return self._server_dir(server) / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def holds(self, server: str) -> bool:
        """Whether anything listed on ``server`` (by its identity) is kept."""
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
            return from_items(doc["items"], decode)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("saved listing %s is unreadable (%s); dropped", p, exc)
            p.unlink(missing_ok=True)
            return None

    def save(self, server: str, key: str, result: Sequence[Listed]) -> None:
        p = self._path(server, key)
        doc = {"format": FORMAT, "key": key, "items": items(result)}
        tmp = p.with_name(f"{p.name}.tmp{os.getpid()}.{threading.get_ident()}")
        try:
            p.parent.mkdir(exist_ok=True)
            tmp.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, p)
        except OSError as exc:
            log.warning("cannot save listing in %s: %s", p.parent, exc)
            tmp.unlink(missing_ok=True)

    def _prune(self) -> None:
        """Drop unfinished writes, listings kept by an earlier version under a
        server's name (``s-NAME``: they cannot be told from another archive's),
        and the oldest listings beyond the limit."""
        files = []
        for sub in self.dir.iterdir():
            if sub.is_dir() and sub.name.startswith("s-"):
                shutil.rmtree(sub, ignore_errors=True)
                continue
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
