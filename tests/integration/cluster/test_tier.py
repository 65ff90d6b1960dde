"""The tier's pieces against a real Redis, in one process: two "nodes" are two
tiers with their own connections.  Single flight across nodes, a dead lease
holder, a Redis that is not there, a Cluster keeping an object on one shard,
and a shared listing kept only for what is left of its TTL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from tests.fakes.reading import FakeFetcher
from tests.fakes.tree import FakeSearcher, child, names_of
from tests.mounting import by_sop_uid
from tests.servers.redisserver import free_port_pair
from trolleyfs.cluster.once import Cluster, fetch_once
from trolleyfs.cluster.settings import SharedConfig
from trolleyfs.cluster.setup import build_cluster
from trolleyfs.config import CacheConfig, Config, Folder
from trolleyfs.demo import sampledata
from trolleyfs.errors import Unavailable
from trolleyfs.listings.cluster import FORMAT_HEAD, ClusterListings
from trolleyfs.listings.identity import short_name
from trolleyfs.listings.ttls import ListingTTLs
from trolleyfs.model import InstanceRef, Study
from trolleyfs.read.cluster import ClusterReads
from trolleyfs.read.store import Around, Store
from trolleyfs.stats import Stats
from trolleyfs.tree.inodes import UidIndex
from trolleyfs.tree.tree import Tree
from trolleyfs.wiring import build_tree, listing_ttls, read_settings

pytestmark = pytest.mark.integration


@asynccontextmanager
async def node(config: SharedConfig, lease_s: float = 10.0) -> AsyncIterator[Cluster]:
    """One node's view of the tier (its own connections)."""
    shared = build_cluster(config)
    if lease_s != 10.0:
        shared = Cluster(shared.tier, type(shared.leases)(shared.tier, lease_s=lease_s, renew_s=lease_s / 3))
    try:
        yield shared
    finally:
        await shared.tier.link.aclose()


@pytest.fixture
def single(redis_single) -> SharedConfig:
    with redis_single.admin() as admin:
        admin.flushall()
    return SharedConfig(urls=(redis_single.url,), chunk_kb=16)


async def test_two_nodes_asking_at_once_fetch_once(single) -> None:
    fetched: list[str] = []
    value = b"x" * 100_000

    async def slow_fetch() -> bytes:
        fetched.append("!")
        await trio.sleep(1.0)  # the other node asks meanwhile
        return value

    results: list[tuple[bytes, float | None]] = []
    async with node(single) as a, node(single) as b:
        key = a.tier.key("o", "pacs/1.2.3")

        async def ask(n: Cluster) -> None:
            results.append(await fetch_once(n, key, "i:pacs/1.2.3", slow_fetch, 60))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, a)
            nursery.start_soon(ask, b)
        assert fetched == ["!"]
        assert sorted(r[1] is None for r in results) == [False, True]  # one fetched it, one read it
        assert all(r[0] == value for r in results)
        assert a.tier.counters.leases_waited + b.tier.counters.leases_waited == 1


async def test_a_lease_whose_holder_died_expires_and_the_next_node_fetches(single) -> None:
    async with node(single, lease_s=1.0) as dead, node(single, lease_s=1.0) as b:
        assert await dead.leases.take("i:pacs/9.9") is not None  # then never renewed nor released: it died
        key = b.tier.key("o", "pacs/9.9")

        async def fetch() -> bytes:
            return b"late"

        with trio.fail_after(30):
            data, left = await fetch_once(b, key, "i:pacs/9.9", fetch, 60)
        assert (data, left) == (b"late", None)
        assert b.tier.counters.leases_waited == 1 and b.tier.counters.leases_taken == 1


async def test_a_redis_that_is_not_there_costs_one_warning_and_nothing_else(caplog, mock_clock) -> None:
    # the clock stands still: the reads below all fall within the first back-off
    config = SharedConfig(urls=(f"redis://127.0.0.1:{free_port_pair()}/0",), timeout=0.5)
    calls = 0

    async def fetch() -> bytes:
        nonlocal calls
        calls += 1
        return b"from the pacs"

    async with node(config) as n:
        with caplog.at_level(logging.WARNING, logger="trolleyfs.cluster"):
            for i in range(20):
                key = n.tier.key("o", f"pacs/{i}")
                assert await fetch_once(n, key, f"i:pacs/{i}", fetch, 60) == (b"from the pacs", None)
        assert calls == 20
        assert n.tier.link.calls == 1  # then it backed off: no call for the other 19 reads
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()


async def test_a_cluster_keeps_all_keys_of_an_object_on_one_slot(redis_cluster) -> None:
    redis_cluster.flush()
    config = SharedConfig(urls=tuple(redis_cluster.urls), cluster=True, chunk_kb=16)
    async with node(config) as n:
        keys = [n.tier.key("o", f"pacs/1.2.{i}") for i in range(8)]
        for k in keys:
            assert await n.tier.put(k, bytes(range(256)) * 300, 60)  # 5 chunks each
    admin = redis_cluster.admin()
    try:
        slots_used = set()
        for k in keys:
            own = list(admin.scan_iter(match=k + "*", count=1000))
            assert len(own) == 6  # the meta record and five chunks
            slots = {admin.keyslot(c) for c in own}
            assert len(slots) == 1
            slots_used |= slots
        nodes = {admin.get_node_from_key(k).name for k in keys}
        assert len(slots_used) > 1 and len(nodes) > 1  # objects spread over the shards
    finally:
        admin.close()


def shared_tree(n: Cluster, pacs: FakeSearcher, folder_ttl: float) -> Tree:
    cache = CacheConfig(folder_ttl=folder_ttl)
    config = Config(
        "test.toml",
        {},
        (Folder("all", "pacs", {"PatientName": "DOE*"}),),
        {"study": "{PatientName} {StudyDescription}", "series": "{SeriesNumber:03}", "instance": "{InstanceNumber:04}"},
        cache,
    )
    listings = ClusterListings(n, listing_ttls(cache))
    return build_tree(config, {"pacs": pacs}, _NoReader(), Stats(), UidIndex(), cluster=listings)


class _NoReader:
    async def get(self, *args: object) -> bytes:
        raise AssertionError("nothing is read here")

    def size_of(self, uid: str) -> int | None:
        return None

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        return False, False

    def stats(self) -> dict[str, object]:
        return {}


async def test_a_shared_listing_is_kept_only_for_what_is_left_of_its_ttl(redis_single, single, mock_clock) -> None:
    pacs_a, pacs_b = FakeSearcher({"1.1": {"1.1.1": 1}}), FakeSearcher({"1.1": {"1.1.1": 1}})
    async with node(single) as a, node(single) as b:
        tree_a, tree_b = shared_tree(a, pacs_a, 60), shared_tree(b, pacs_b, 60)
        assert await names_of(await child(tree_a.root, "all")) == ["DOE JANE study 0"]
        (key,) = [k for k in redis_single.admin().scan_iter(match="trolleyfs:l:*") if k.endswith(b"}")]
        redis_single.admin().pexpire(key, 15_000)  # as if node a had listed it 45 s ago
        folder_b = await child(tree_b.root, "all")
        assert await names_of(folder_b) == ["DOE JANE study 0"]
        assert pacs_a.calls == {"studies": 1} and pacs_b.calls == {}
        assert b.tier.counters.listing_hits == 1
        mock_clock.jump(13)
        await names_of(folder_b)
        assert b.tier.counters.listing_hits == 1  # still fresh here
        mock_clock.jump(3)  # 16 s: past what was left of the 60 s
        await names_of(folder_b)
        assert b.tier.counters.listing_hits == 2  # asked again (Redis still has it: its clock did not jump)
        assert pacs_b.calls == {}


async def test_an_error_while_holding_a_lease_comes_out_as_itself_and_frees_the_lease(single) -> None:
    async with node(single) as a:
        lease = await a.leases.take("s:pacs/1.2")
        assert lease is not None and lease.token is not None
        with pytest.raises(Unavailable, match="pacs: down") as raised:
            async with a.leases.holding(lease):
                raise Unavailable("down", server="pacs")
        assert type(raised.value) is Unavailable  # not wrapped in an exception group
        assert await a.leases.take("s:pacs/1.2") is not None  # released on the way out


async def test_a_lease_holder_that_reads_nothing_still_streams_the_whole_series_to_the_tier(single) -> None:
    # 40 objects of about 1.2 MB: more than the readahead budget of a 64 MB memory cache (32 MiB)
    spec = sampledata.StudySpec(
        "SPILL^X", "S001", "20240101", "Spill", (sampledata.SeriesSpec("CT", "Big", 40, 768, 768),)
    )
    objects = by_sop_uid(list(sampledata.generate([spec])))
    names = sorted(objects)
    first = InstanceRef(sampledata.uid("study", "S001", 0), sampledata.uid("series", "S001", 0, 0), names[0])
    fetcher = FakeFetcher(objects)
    async with node(single) as n, trio.open_nursery() as nursery:
        settings = read_settings(CacheConfig(memory_mb=64))
        store = Store(settings, {"pacs": fetcher}, Stats(), nursery, Around(cluster=ClusterReads(n)))
        assert await store.get("pacs", first, lambda: names) == objects[names[0]]
        # nobody reads on here; other nodes may be following the stream: it must not pause
        with trio.fail_after(120):  # only bounds a broken run
            while n.tier.counters.objects_written < len(names):  # noqa: ASYNC110 - a counter, no event to wait on
                await trio.sleep(0.05)
        assert fetcher.single_calls == [names[0]] and len(fetcher.series_calls) == 1
        assert store.stats()["prefetch"]["unread_bytes"] <= 32 * 2**20 + 2 * 2**20  # type: ignore[index]
        # what it had no room for is read back from the tier when asked for
        for uid in names[1:]:
            assert await store.get("pacs", InstanceRef(first.study_uid, first.series_uid, uid)) == objects[uid]
        assert fetcher.single_calls == [names[0]] and n.tier.counters.hits >= 1
        nursery.cancel_scope.cancel()


async def test_a_listing_stored_in_the_old_format_is_asked_again_and_replaced(redis_single, single) -> None:
    """Format 1 (each item a dataclass dump) is no longer read: the search is
    asked of the PACS once and the value replaced by format 2."""
    searched: list[int] = []

    async def search() -> list[Study]:
        searched.append(1)
        return [Study("1.1", {"PatientName": "DOE^JANE"})]

    async with node(single) as a:
        listings = ClusterListings(a, ListingTTLs(60, 60, 60))
        name = f"pacs/studies/{short_name('the search')}"
        old = b'{"v":1,"items":[{"uid":"1.1","attrs":{"PatientName":"OLD^FORM"},"series":null}]}'
        await a.tier.put(a.tier.key("l", name), old, 60)
        got, age = await listings.studies("pacs", "the search", search)
        assert got == [Study("1.1", {"PatientName": "DOE^JANE"})] and age == 0.0 and searched == [1]
        again, _ = await listings.studies("pacs", "the search", search)
        assert again == got and searched == [1]  # the replacement is read now
        stored = await a.tier.get(a.tier.key("l", name), lambda raw: True)
        assert stored is not None and stored[0].startswith(FORMAT_HEAD)
