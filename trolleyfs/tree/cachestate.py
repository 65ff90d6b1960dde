"""What a read of a series' files would take from the caches, found without
fetching anything: the ``user.trolleyfs.cached`` attribute of a listed series
directory (JSON), which ``trolleyfs prefetch --check`` reads.

The ``server`` they come from and the ``form`` they are served in ("": as
stored; else a transfer syntax), ``files`` instance files, ``cached`` of them
in memory or on disk (a read would not ask the server), ``on_disk`` of them in
the disk cache (they outlive a remount), ``sized`` of them of known size,
together ``bytes`` long, and the names of the ``missing`` ones
(``missing_complete`` is false when the list was cut to fit the kernel's
limit on an attribute's size)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from .files import InstanceFile

CACHE_XATTR = "user.trolleyfs.cached"
MAX_VALUE = 60_000  # bytes; Linux takes at most 64 KiB per attribute value


class CacheView(Protocol):
    def cached_in(self, uid: str) -> tuple[bool, bool]: ...

    def size_of(self, uid: str) -> int | None: ...


def cache_state(server: str, files: Sequence[InstanceFile], caches: CacheView) -> str:
    cached = on_disk = sized = known = 0
    missing: list[str] = []
    for f in files:
        in_memory, in_disk = caches.cached_in(f.content_key)  # the file's form, as the caches know it
        if in_memory or in_disk:
            cached += 1
        else:
            missing.append(f.name)
        on_disk += in_disk
        size = caches.size_of(f.content_key)
        if size is not None:
            sized += 1
            known += size
    doc: dict[str, object] = {
        "server": server,
        "form": files[0].source.form if files else "",  # the form the files are served in ("": as stored)
        "files": len(files),
        "cached": cached,
        "on_disk": on_disk,
        "sized": sized,
        "bytes": known,
    }
    budget = MAX_VALUE - len(json.dumps(doc)) - 64
    kept = []
    for name in missing:
        budget -= len(json.dumps(name)) + 2
        if budget < 0:
            break
        kept.append(name)
    doc["missing"] = kept
    doc["missing_complete"] = len(kept) == len(missing)
    return json.dumps(doc, separators=(",", ":"))
