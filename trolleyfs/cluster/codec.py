"""How a value is laid out in Redis: a small meta record and the value in
chunks, so that neither Redis nor either side's memory ever handles one huge
value (an instance can be hundreds of MB).

The meta record names a write id; the chunks of that write are the keys
``<base>:<write>:<i>``.  Two nodes writing the same object at once therefore
never mix their chunks.  The meta record holds the SHA-256 of the stored
chunks: a chunk missing (evicted, expired, deleted), cut or changed fails
:func:`decode` with :class:`~.crypto.Unreadable`, and is never served."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .crypto import Sealer, Unreadable

FORMAT = 1


@dataclass(frozen=True)
class Meta:
    """What a stored value is: its length, its chunks and their checksum."""

    size: int  # bytes of the value
    chunks: int
    digest: str  # SHA-256 (hex) over the stored chunks, in order
    write: str  # the write id, part of each chunk's key

    def dump(self) -> bytes:
        return json.dumps(
            {"v": FORMAT, "n": self.size, "k": self.chunks, "h": self.digest, "w": self.write}, separators=(",", ":")
        ).encode()

    @classmethod
    def load(cls, raw: bytes) -> Meta:
        try:
            d = json.loads(raw)
            meta = cls(int(d["n"]), int(d["k"]), str(d["h"]), str(d["w"]))
            ok = d.get("v") == FORMAT and meta.size >= 0 and meta.chunks >= 0 and meta.write.isalnum()
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise Unreadable("meta record is not one this version wrote")
        return meta


def chunk_keys(base: str, meta: Meta) -> list[str]:
    """The keys of the chunks ``meta`` describes (they share ``base``'s hash tag)."""
    return [f"{base}:{meta.write}:{i}" for i in range(meta.chunks)]


def _bound(base: str, meta_write: str, i: int, chunks: int) -> bytes:
    return f"{base}|{meta_write}|{i}|{chunks}".encode()


def encode(data: bytes, chunk_size: int, sealer: Sealer, base: str) -> tuple[Meta, list[bytes | memoryview]]:
    """Split (and seal) ``data`` for storage under ``base``."""
    write = os.urandom(6).hex()
    view = memoryview(data)
    count = (len(view) + chunk_size - 1) // chunk_size
    digest = hashlib.sha256()
    stored: list[bytes | memoryview] = []
    for i in range(count):
        piece = sealer.seal(view[i * chunk_size : (i + 1) * chunk_size], _bound(base, write, i, count))
        digest.update(piece)
        stored.append(piece)
    return Meta(len(view), count, digest.hexdigest(), write), stored


def decode(meta: Meta, stored: Sequence[bytes | None], sealer: Sealer, base: str) -> bytes:
    """The value from its meta record and stored chunks (None: a chunk is gone);
    raises :class:`Unreadable` unless every chunk is there and intact."""
    if len(stored) != meta.chunks:
        raise Unreadable(f"{len(stored)} chunks given, {meta.chunks} expected")
    missing = sum(1 for c in stored if c is None)
    if missing:
        raise Unreadable(f"{missing} of {meta.chunks} chunks are gone")
    digest = hashlib.sha256()
    for c in stored:
        assert c is not None
        digest.update(c)
    if digest.hexdigest() != meta.digest:
        raise Unreadable("checksum mismatch")
    parts = [sealer.open(c, _bound(base, meta.write, i, meta.chunks)) for i, c in enumerate(stored) if c is not None]
    data = b"".join(parts)
    if len(data) != meta.size:
        raise Unreadable(f"{len(data)} bytes, {meta.size} expected")
    return data
