"""The bridge from the HTTP server's threads into trio: each call runs on the
loop with its requester set (the audit's seam) and its deadline, one slow call
holds only its own thread, and our errors become HTTP statuses in one place.
Also the walk of a URL path through the tree: a desktop's probe never lists."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import pytest
import trio
from wsgidav.dav_error import DAVError

from trolleyfs.errors import AccessDenied, NotFound, ProtocolError, Unavailable
from trolleyfs.idle import overall_bound, progress
from trolleyfs.stats import Stats
from trolleyfs.tree.base import ListedDir, Node, StaticDir
from trolleyfs.webdav.bridge import Bridge
from trolleyfs.webdav.requester import REQUESTER, Requester
from trolleyfs.webdav.resources import split_path, walk


def bridge(deadline: float = 30.0) -> tuple[Bridge, Stats]:
    stats = Stats()
    return Bridge(trio.lowlevel.current_trio_token(), stats, deadline), stats


async def test_each_call_runs_on_the_loop_as_its_requester():
    b, _ = bridge()
    alice, bob = Requester("alice", "10.0.0.7"), Requester("bob", "10.0.0.8")

    async def whoami() -> tuple[Requester | None, bool]:
        return REQUESTER.get(), threading.current_thread() is threading.main_thread()

    assert await trio.to_thread.run_sync(b.run, alice, "who", whoami) == (alice, True)
    assert await trio.to_thread.run_sync(b.run, bob, "who", whoami) == (bob, True)
    assert await trio.to_thread.run_sync(b.run, None, "who", whoami) == (None, True)
    assert REQUESTER.get() is None  # set only inside each call's own task


async def test_a_slow_call_holds_only_its_own_thread():
    b, _ = bridge()
    started, release = trio.Event(), trio.Event()
    done: list[str] = []

    async def slow() -> str:
        started.set()
        await release.wait()
        return "slow"

    async def fast() -> str:
        return "fast"

    async def call(fn) -> None:
        done.append(await trio.to_thread.run_sync(b.run, None, "call", fn))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, slow)
        await started.wait()
        for _ in range(5):
            await call(fast)  # answered while the slow one waits
        assert done == ["fast"] * 5
        release.set()
    assert done[-1] == "slow"


@pytest.mark.parametrize(
    ("error", "status", "counted"),
    [
        (NotFound("no such study", server="pacs"), 404, "ENOENT"),
        (AccessDenied("HTTP 401", server="pacs"), 403, "EACCES"),
        (Unavailable("connection refused", server="pacs"), 502, "EIO"),
        (ProtocolError("truncated multipart", server="pacs"), 502, "EIO"),
    ],
)
async def test_our_errors_become_http_statuses(error, status, counted):
    b, stats = bridge()

    async def fail() -> None:
        raise error

    with pytest.raises(DAVError) as exc:
        await trio.to_thread.run_sync(b.run, None, "GET /x", fail)
    assert exc.value.value == status
    assert stats.errors[counted] == 1
    assert "pacs" not in str(exc.value.context_info)  # the client is told what, the log says where


async def test_a_call_past_its_deadline_is_a_gateway_timeout(autojump_clock):
    b, stats = bridge(deadline=30.0)

    async def hang() -> None:
        await trio.sleep_forever()

    with pytest.raises(DAVError) as exc:
        await trio.to_thread.run_sync(b.run, None, "GET /x", hang)
    assert exc.value.value == 504
    assert stats.errors["ETIMEDOUT"] == 1


async def test_a_call_whose_answers_keep_arriving_runs_past_the_idle_deadline(autojump_clock):
    """As a FUSE operation: a big GET or a conversion that makes progress is
    not cut at ``deadline`` (it was: a fixed timeout), only at its overall bound."""
    b, stats = bridge(deadline=30.0)
    start = trio.current_time()

    async def slow_but_moving() -> float:
        for _ in range(10):  # 200 s in all, never 30 s without an answer
            await trio.sleep(20)
            progress()
        return trio.current_time() - start

    assert await trio.to_thread.run_sync(b.run, None, "GET /big", slow_but_moving) >= 200

    async def moving_forever() -> None:
        while True:
            await trio.sleep(20)
            progress()

    with pytest.raises(DAVError) as exc:
        await trio.to_thread.run_sync(b.run, None, "GET /endless", moving_forever)
    assert exc.value.value == 504
    assert trio.current_time() - start >= 200 + overall_bound(30.0)
    assert stats.errors["ETIMEDOUT"] == 1


async def test_a_bug_is_a_500_and_logged(caplog):
    b, _ = bridge()

    async def bug() -> None:
        raise KeyError("oops")

    with pytest.raises(DAVError) as exc:
        await trio.to_thread.run_sync(b.run, None, "GET /x", bug)
    assert exc.value.value == 500
    assert "GET /x: unexpected error" in caplog.text


class Listed(ListedDir):
    """A directory whose listing is counted (each one would be a request)."""

    listings = 0

    def __init__(self, name: str, parent: StaticDir | ListedDir, children: dict[str, str]) -> None:
        super().__init__(name, parent, 0.0, ttl=1000.0)
        self._spec = children

    async def _resolve(self) -> dict[str, Node]:
        Listed.listings += 1
        return {n: Listed(n, self, {}) for n in self._spec}

    async def children(self) -> Mapping[str, Node]:
        return await super().children()


async def test_a_probe_path_is_walked_without_listing():
    root = StaticDir("", None, 0.0)
    folder = Listed("all", root, {"study": "x"})
    root.add([folder])
    Listed.listings = 0
    for probe in (["all", ".DS_Store"], ["all", "study", "._x"], ["all", "study", "desktop.ini"], ["Thumbs.db"]):
        assert await walk(root, probe) is None
    assert Listed.listings == 0
    assert await walk(root, ["all", "study"]) is not None  # a real name lists
    assert Listed.listings == 1
    assert await walk(root, ["all", "study", ".DS_Store"]) is None
    assert await walk(root, ["all", "nothing"]) is None
    assert await walk(root, []) is root


def test_names_that_cannot_be_in_the_tree():
    assert split_path("/a/b c/d.dcm") == ["a", "b c", "d.dcm"]
    assert split_path("/") == []
    for bad in ("/a/../b", "/./a", "/a/\x00b"):
        assert split_path(bad) is None
