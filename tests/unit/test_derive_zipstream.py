"""The streamed zip on its own: its exact size before any member is read,
reads at any offset equal to the whole, what Python's zipfile and Info-ZIP's
``unzip -t`` make of it, ZIP64 (forced, and by member count), and a member
that changed size failing instead of shifting the archive."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from trolleyfs.derive.zipstream import Crcs, Member, MemberChanged, ZipStream, archive_size
from trolleyfs.errors import TrolleyError


class Source:
    """Members' bytes, counting reads."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.reads = 0

    def members(self) -> list[Member]:
        return [
            Member(path, len(data), 1_700_000_000.0, f"key:{path}", self._reader(path))
            for path, data in self.blobs.items()
        ]

    def _reader(self, path: str):
        async def read() -> bytes:
            self.reads += 1
            return self.blobs[path]

        return read


def blobs(n: int = 12, seed: int = 7) -> dict[str, bytes]:
    rnd = random.Random(seed)
    out = {f"001 CT Axial é/{i:04}.dcm": rnd.randbytes(rnd.randint(0, 4000)) for i in range(n)}
    out["001 CT Axial é/empty.dcm"] = b""
    return out


def unzip_t(path: Path) -> str:
    if shutil.which("unzip") is None:
        pytest.fail("unzip is not installed: run `make test`, which installs it")
    done = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_the_size_is_known_before_a_byte_is_read_and_zipfile_reads_every_member() -> None:
    b = blobs()
    src = Source(b)
    z = ZipStream(src.members(), Crcs())
    assert z.size == archive_size(list(b), [len(v) for v in b.values()]) and src.reads == 0 and not z.zip64
    whole = await z.read(0, z.size + 1000)
    assert len(whole) == z.size
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        assert zf.testzip() is None  # every CRC checks
        assert [i.filename for i in zf.infolist()] == list(b)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert {n: zf.read(n) for n in zf.namelist()} == b


async def test_reads_at_any_offset_are_the_same_bytes_as_the_whole() -> None:
    src = Source(blobs(30))
    z = ZipStream(src.members(), Crcs())
    whole = await z.read(0, z.size)
    rnd = random.Random(3)
    for _ in range(300):
        off, n = rnd.randint(0, z.size + 10), rnd.randint(0, 9000)
        assert await z.read(off, n) == whole[off : off + n]
    assert await z.read(z.size, 100) == b""


async def test_unzip_tests_it(tmp_path: Path) -> None:
    z = ZipStream(Source(blobs()).members(), Crcs())
    (tmp_path / "a.zip").write_bytes(await z.read(0, z.size))
    out = unzip_t(tmp_path / "a.zip")
    assert "No errors detected" in out and "0011.dcm" in out


async def test_forced_zip64_is_read_by_zipfile_and_unzip(tmp_path: Path) -> None:
    b = blobs()
    z = ZipStream(Source(b).members(), Crcs(), force_zip64=True)
    assert z.zip64
    data = await z.read(0, z.size)
    assert len(data) == z.size
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None and {n: zf.read(n) for n in zf.namelist()} == b
    (tmp_path / "z64.zip").write_bytes(data)
    assert "No errors detected" in unzip_t(tmp_path / "z64.zip")


async def test_65535_members_need_zip64() -> None:
    b = {f"{i:05}.dcm": b"" for i in range(65535)}
    z = ZipStream(Source(b).members(), Crcs())
    assert z.zip64 and z.size == archive_size(list(b), [0] * len(b))
    with zipfile.ZipFile(io.BytesIO(await z.read(0, z.size))) as zf:
        assert len(zf.infolist()) == 65535


def test_a_member_of_4_gib_needs_zip64_in_the_size() -> None:
    small = archive_size(["a"], [1000])
    assert small == 30 + 1 + 1000 + 46 + 1 + 22
    big = 5 * 2**30
    assert archive_size(["a"], [big]) == 30 + 1 + 20 + big + 46 + 1 + 28 + 56 + 20 + 22


async def test_an_empty_archive() -> None:
    z = ZipStream([], Crcs())
    data = await z.read(0, 100)
    assert len(data) == z.size == 22
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == []


async def test_crcs_are_computed_once_per_member() -> None:
    b = blobs(4)
    src, crcs = Source(b), Crcs()
    z = ZipStream(src.members(), crcs)
    await z.read(z.size - 50, 50)  # the central directory needs every CRC: each member read once
    assert src.reads == len(b)
    z2 = ZipStream(src.members(), crcs)
    await z2.read(z2.size - 50, 50)  # known CRCs: nothing read again
    assert src.reads == len(b)


async def test_a_member_that_changed_size_fails_the_read() -> None:
    b = blobs(3)
    src = Source(b)
    members = src.members()
    z = ZipStream(members, Crcs())
    first = next(iter(b))
    src.blobs[first] = b[first] + b"x"
    with pytest.raises(MemberChanged) as err:
        await z.read(0, 100)
    assert isinstance(err.value, TrolleyError) and first in str(err.value)
