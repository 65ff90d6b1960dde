"""The parts of ``trolleyfs prefetch`` that need no mount: the cache-state
attribute of a series directory, the progress tally and its plain lines, the
counting of ``--check``, and the command's argument checks."""

from __future__ import annotations

import io
import json

import pytest

from trolleyfs.errors import UserError
from trolleyfs.model import Instance
from trolleyfs.prefetch import Group, _counts, _interrupted, run_prefetch
from trolleyfs.progress import LineProgress, Tally, progress_for
from trolleyfs.tree.base import StaticDir
from trolleyfs.tree.cachestate import MAX_VALUE, cache_state
from trolleyfs.tree.files import FileSource, InstanceFile


class Caches:
    def __init__(self, memory: set[str], disk: set[str], sizes: dict[str, int]) -> None:
        self.memory, self.disk, self.sizes = memory, disk, sizes

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        return uid in self.memory, uid in self.disk

    def size_of(self, uid: str) -> int | None:
        return self.sizes.get(uid)

    async def get(self, *args: object) -> bytes:
        raise AssertionError("cache_state must not read")


def files(n: int, caches: Caches) -> list[InstanceFile]:
    parent = StaticDir("s", None, 0.0)
    return [
        InstanceFile(f"{i:04}.dcm", parent, Instance("1", "1.1", f"1.1.{i}"), FileSource(caches, "pacs", list))
        for i in range(n)
    ]


def test_the_cache_state_counts_memory_disk_and_known_sizes_and_names_the_missing() -> None:
    caches = Caches({"1.1.0", "1.1.1"}, {"1.1.1", "1.1.2"}, {"1.1.0": 10, "1.1.1": 20, "1.1.2": 30})
    doc = json.loads(cache_state("pacs", files(4, caches), caches))
    assert doc == {
        "server": "pacs",
        "form": "",
        "files": 4,
        "cached": 3,
        "on_disk": 2,
        "sized": 3,
        "bytes": 60,
        "missing": ["0003.dcm"],
        "missing_complete": True,
    }


def test_a_long_missing_list_is_cut_to_fit_an_attribute() -> None:
    caches = Caches(set(), set(), {})
    value = cache_state("pacs", files(20_000, caches), caches)
    doc = json.loads(value)
    assert len(value.encode()) <= MAX_VALUE
    assert doc["files"] == 20_000 and doc["cached"] == 0 and not doc["missing_complete"]
    assert 1000 < len(doc["missing"]) < 20_000


def test_check_counts_whole_directories_and_doubts_single_files_it_cannot_tell() -> None:
    state = {"files": 4, "cached": 3, "on_disk": 2, "missing": ["0003.dcm"], "missing_complete": True}
    assert _counts(Group("/m/s", ["0000.dcm", "0001.dcm", "0002.dcm", "0003.dcm"], True, state)) == (
        3,
        2,
        ["/m/s/0003.dcm"],
    )
    assert _counts(Group("/m/s", ["0000.dcm", "0003.dcm"], False, state)) == (1, 0, ["/m/s/0003.dcm"])
    on_disk = state | {"on_disk": 4, "cached": 4, "missing": []}
    assert _counts(Group("/m/s", ["0001.dcm"], False, on_disk)) == (1, 1, [])
    cut = state | {"missing_complete": False}
    assert _counts(Group("/m/s", ["0001.dcm"], False, cut)) == (0, 0, ["/m/s/0001.dcm"])  # unknown: missing


def test_the_expected_total_is_exact_when_all_sizes_are_known_else_estimated() -> None:
    t = Tally(files=4, known_files=4, known_bytes=400)
    assert t.exact() and t.expected_bytes() == 400
    t = Tally(files=4, known_files=1, known_bytes=100)
    assert not t.exact() and t.expected_bytes() == 400  # from the known average
    t.done, t.done_bytes = 2, 600  # files read so far say 300 each
    assert t.expected_bytes() == 1200
    t.done, t.failed, t.done_bytes = 3, 1, 900
    assert t.exact() and t.expected_bytes() == 900  # all done: what was read


def test_plain_lines_say_files_bytes_rate_and_eta() -> None:
    out = io.StringIO()
    p = LineProgress(out, every=0.0)  # a line at every step
    t = Tally(files=2, known_files=0)
    p.listing(3, 2)
    p.tick(None)
    p.start(t)
    t.done, t.done_bytes = 1, 2_000_000
    p.advance(t, 2_000_000)
    t.failed = 1
    p.advance(t, 0)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "prefetch: listing: 3 directories, 2 files so far"
    assert lines[1] == "prefetch: reading 2 files (size not known yet)"
    assert lines[2].startswith("prefetch: 1/2 files, 2.0/~4.0 MB, ") and " MB/s, ETA " in lines[2]
    assert lines[3].startswith("prefetch: 1/2 files, 2.0/2.0 MB, ") and lines[3].endswith(", 1 failed")
    assert "\r" not in out.getvalue()


def test_a_pipe_gets_lines_and_a_terminal_a_bar() -> None:
    assert isinstance(progress_for(io.StringIO()), LineProgress)


def test_ctrl_c_is_recognised_inside_exception_groups() -> None:
    assert _interrupted(KeyboardInterrupt())
    assert _interrupted(BaseExceptionGroup("", [BaseExceptionGroup("", [KeyboardInterrupt()])]))
    assert not _interrupted(ExceptionGroup("", [ValueError()]))
    assert not _interrupted(ValueError())


def test_bad_arguments_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="--jobs 0: use 1 to 64"):
        run_prefetch([str(tmp_path)], jobs=0)
    with pytest.raises(UserError, match="--interval 0"):
        run_prefetch([str(tmp_path)], every=0)
    with pytest.raises(UserError, match="not inside a trolleyfs mount"):
        run_prefetch([str(tmp_path)])
    with pytest.raises(UserError, match="No such file or directory"):
        run_prefetch([str(tmp_path / "nothing")])
