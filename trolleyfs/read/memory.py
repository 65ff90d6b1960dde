"""The memory cache of instances: an LRU bounded in bytes (cachetools), keyed
by the instance's cache key (its SOP Instance UID, or ``<uid>@<form>`` for
another form of it)."""

from __future__ import annotations

from collections.abc import Callable

import cachetools


class MemoryCache:
    def __init__(self, max_bytes: int, on_evict: Callable[[str, int], None] | None = None) -> None:
        self.max_bytes = max_bytes
        self._on_evict = on_evict
        outer = self

        class _LRU(cachetools.LRUCache):  # type: ignore[type-arg]
            def popitem(self):  # type: ignore[no-untyped-def]
                key, value = super().popitem()
                if outer._on_evict:
                    outer._on_evict(key, len(value))
                return key, value

        self._lru: cachetools.LRUCache[str, bytes] = _LRU(maxsize=max_bytes, getsizeof=len)
        self.hits = self.misses = 0

    def get(self, uid: str) -> bytes | None:
        data = self._lru.get(uid)
        if data is None:
            self.misses += 1
        else:
            self.hits += 1
        return data

    def peek(self, uid: str) -> bool:
        return uid in self._lru

    def size_of(self, uid: str) -> int | None:
        """The size of a cached object, without counting a hit or making it young."""
        if uid not in self._lru:
            return None
        return len(cachetools.Cache.__getitem__(self._lru, uid))

    def put(self, uid: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return  # larger than the whole cache: serve it, don't keep it
        self._lru[uid] = data

    @property
    def bytes_used(self) -> int:
        return int(self._lru.currsize)

    def __len__(self) -> int:
        return len(self._lru)

    def stats(self) -> dict[str, object]:
        return {
            "bytes": self.bytes_used,
            "limit": self.max_bytes,
            "objects": len(self),
            "hits": self.hits,
            "misses": self.misses,
        }
