"""The record of instance sizes: one number per SOP Instance UID, written
whenever an object is kept, so a file's size is known (``stat``) without
fetching it again, also after the object left the caches.

Instances never change, so a recorded size stays exact.  The record is an LRU
bounded in entries: it is pruned, never grows without end."""

from __future__ import annotations

import cachetools

SIZES_KEPT = 1_000_000  # about 150 MB at most; far more files than a session looks at


class Sizes:
    def __init__(self, max_entries: int = SIZES_KEPT) -> None:
        self._lru: cachetools.LRUCache[str, int] = cachetools.LRUCache(maxsize=max_entries)

    def record(self, uid: str, size: int) -> None:
        self._lru[uid] = size

    def get(self, uid: str) -> int | None:
        return self._lru.get(uid)

    def __len__(self) -> int:
        return len(self._lru)
