"""The instance caches on their own: byte bounds, LRU order, checksums,
atomic writes and what a crash leaves behind."""

from __future__ import annotations

import zlib

import pytest

from trolleyfs.read.disk import DiskCache
from trolleyfs.read.memory import MemoryCache


def test_memory_cache_is_bounded_in_bytes_and_lru():
    evicted: list[str] = []
    c = MemoryCache(100, on_evict=lambda uid, n: evicted.append(uid))
    c.put("a", b"x" * 40)
    c.put("b", b"y" * 40)
    assert c.get("a") == b"x" * 40  # a is now the young one
    c.put("c", b"z" * 40)
    assert evicted == ["b"] and c.bytes_used == 80
    c.put("huge", b"h" * 101)  # larger than the cache: not kept, nothing evicted
    assert c.get("huge") is None and evicted == ["b"]
    assert (c.hits, c.misses) == (1, 1)


def test_disk_cache_round_trip_survives_reopen_and_trims(tmp_path):
    d = DiskCache(str(tmp_path), max_bytes=3 * (1000 + DiskCache.SUFFIX_LEN))
    for i in range(3):
        d.put(f"1.2.{i}", bytes([i]) * 1000)
    assert d.get("1.2.0") == b"\0" * 1000  # now the young one
    again = DiskCache(str(tmp_path), max_bytes=d.max_bytes)  # a remount
    assert again.size_of("1.2.1") == 1000 and again.bytes_used == 3 * (1000 + DiskCache.SUFFIX_LEN)
    again.put("1.2.3", b"3" * 1000)  # over the bound: the oldest file goes
    assert again.bytes_used <= again.max_bytes
    assert sum(again.size_of(f"1.2.{i}") is not None for i in range(4)) == 3


def test_disk_cache_drops_corrupt_and_unfinished_files(tmp_path):
    d = DiskCache(str(tmp_path), max_bytes=10**6)
    d.put("9.9", b"payload" * 100)
    (path,) = list(tmp_path.glob("??/*"))  # the one object (beside the layout's marker)
    raw = bytearray(path.read_bytes())
    raw[3] ^= 1
    path.write_bytes(bytes(raw))
    assert d.get("9.9") is None and d.corrupt == 1 and not path.exists()
    # a write cut short by a crash leaves a temp file: ignored and removed at start
    tmp = path.with_name(path.name + ".tmp123.456")
    tmp.write_bytes(b"half")
    path.write_bytes(b"sho"[: DiskCache.SUFFIX_LEN - 1])  # a file shorter than its own checksum
    d2 = DiskCache(str(tmp_path), max_bytes=10**6)
    assert not tmp.exists()
    assert d2.size_of("9.9") is None and not path.exists()
    assert d2.get("9.9") is None


@pytest.mark.parametrize(
    ("marker", "trailer"),
    [(None, bytes(32)), ("2 crc32\n", zlib.crc32(b"an object").to_bytes(4, "little"))],
    ids=["sha256-v1", "crc32-v2"],
)
def test_a_disk_cache_written_by_an_earlier_version_is_emptied_once(tmp_path, marker, trailer):
    """Earlier layouts trailed each object with its SHA-256 (1, no marker) or
    CRC-32 (2): such files would all fail the XXH3; they go at start, once,
    and what is written now stays."""
    if marker is not None:
        (tmp_path / "objects.format").write_text(marker)
    old = tmp_path / "ab" / ("ab" + "0" * 62)
    old.parent.mkdir()
    old.write_bytes(b"an object" + trailer)
    listings = tmp_path / "listings"
    listings.mkdir()
    (listings / "kept.json").write_text("{}")  # not an object: left alone
    d = DiskCache(str(tmp_path), max_bytes=10**6)
    assert not old.exists() and d.bytes_used == 0 and (listings / "kept.json").exists()
    d.put("1.2.3", b"now")
    again = DiskCache(str(tmp_path), max_bytes=10**6)
    assert again.get("1.2.3") == b"now"
