"""Values as stored in the shared tier: split into chunks with a checksum
(optionally sealed with AES-GCM); anything partial, changed, reordered or
sealed with another key fails to decode, so it is never served."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import pytest

from trolleyfs.cluster.codec import Meta, chunk_keys, decode, encode
from trolleyfs.cluster.crypto import Sealer, Unreadable

BASE = "trolleyfs:o:{pacs/1.2.3}"
PLAIN, SEALED = Sealer(None), Sealer(os.urandom(32))


def stored_bytes(chunks) -> list[bytes]:
    return [bytes(c) for c in chunks]


@pytest.mark.parametrize("sealer", [PLAIN, SEALED], ids=["plain", "sealed"])
@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 3500])
def test_a_value_comes_back_whole(sealer, size):
    data = os.urandom(size)
    meta, chunks = encode(data, 1000, sealer, BASE)
    assert meta.size == size and meta.chunks == len(chunks) == (size + 999) // 1000
    assert Meta.load(meta.dump()) == meta
    assert decode(meta, stored_bytes(chunks), sealer, BASE) == data


def test_chunk_keys_share_the_hash_tag_and_name_the_write():
    meta, _ = encode(b"x" * 2500, 1000, PLAIN, BASE)
    keys = chunk_keys(BASE, meta)
    assert keys == [f"{BASE}:{meta.write}:{i}" for i in range(3)]
    assert all(k.split("{")[1].split("}")[0] == "pacs/1.2.3" for k in keys)  # one Cluster slot
    other, _ = encode(b"x" * 2500, 1000, PLAIN, BASE)
    assert other.write != meta.write  # two writers never mix chunks


@pytest.mark.parametrize("sealer", [PLAIN, SEALED], ids=["plain", "sealed"])
def test_a_missing_changed_or_cut_chunk_is_unreadable(sealer):
    data = os.urandom(3500)
    meta, chunks = encode(data, 1000, sealer, BASE)
    good = stored_bytes(chunks)
    gone: list[bytes | None] = list(good)
    gone[1] = None
    with pytest.raises(Unreadable, match="1 of 4 chunks are gone"):
        decode(meta, gone, sealer, BASE)
    flipped = list(good)
    flipped[2] = flipped[2][:5] + bytes([flipped[2][5] ^ 1]) + flipped[2][6:]
    with pytest.raises(Unreadable, match="checksum"):
        decode(meta, flipped, sealer, BASE)
    cut = list(good)
    cut[3] = cut[3][:-1]
    with pytest.raises(Unreadable):
        decode(meta, cut, sealer, BASE)
    with pytest.raises(Unreadable, match="3 chunks given, 4 expected"):
        decode(meta, good[:3], sealer, BASE)


def test_a_meta_record_this_version_did_not_write_is_unreadable():
    for raw in (
        b"",
        b"garbage",
        b'{"v":2,"n":1,"k":1,"h":"x","w":"ab"}',
        b'{"v":1,"n":-1,"k":1,"h":"x","w":"ab"}',
        b'{"v":1,"n":1,"k":1,"h":"x","w":"a:b"}',
    ):
        with pytest.raises(Unreadable):
            Meta.load(raw)


def test_plain_values_are_stored_as_they_are_sealed_ones_are_not():
    data = b"DICM" + b"TEST^ALICE" * 300
    _, plain = encode(data, 1000, PLAIN, BASE)
    assert b"".join(stored_bytes(plain)) == data
    _, sealed = encode(data, 1000, SEALED, BASE)
    blob = b"".join(stored_bytes(sealed))
    assert b"DICM" not in blob and b"TEST^ALICE" not in blob


def test_sealed_chunks_cannot_be_swapped_moved_or_opened_with_another_key():
    data = os.urandom(3000)
    meta, chunks = encode(data, 1000, SEALED, BASE)
    good = stored_bytes(chunks)

    def with_digest(parts: Sequence[bytes | None]) -> Meta:
        """What an attacker who can write Redis can do: fix the checksum."""
        h = hashlib.sha256(b"".join(p for p in parts if p is not None)).hexdigest()
        return Meta(meta.size, meta.chunks, h, meta.write)

    swapped = [good[1], good[0], good[2]]
    with pytest.raises(Unreadable, match="does not open"):
        decode(with_digest(swapped), swapped, SEALED, BASE)
    with pytest.raises(Unreadable, match="does not open"):  # the same chunks under another object's key
        decode(meta, good, SEALED, "trolleyfs:o:{pacs/9.9.9}")
    with pytest.raises(Unreadable, match="does not open"):  # fewer chunks claimed
        decode(Meta(meta.size, 2, with_digest(good[:2]).digest, meta.write), good[:2], SEALED, BASE)
    with pytest.raises(Unreadable, match="does not open"):
        decode(meta, good, Sealer(os.urandom(32)), BASE)


def test_key_names_hide_uids_only_with_a_key():
    assert PLAIN.name("pacs/1.2.840.113619") == "pacs/1.2.840.113619"
    hidden = SEALED.name("pacs/1.2.840.113619")
    assert "1.2.840" not in hidden and len(hidden) == 40 and hidden == SEALED.name("pacs/1.2.840.113619")
    assert Sealer(os.urandom(32)).name("pacs/1.2.840.113619") != hidden
