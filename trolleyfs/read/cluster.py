"""The shared tier in the read path, between the local caches and the PACS
(memory -> local disk -> shared -> PACS).

* One instance (:meth:`ClusterReads.instance`): from the tier if it is there;
  else fetched once in the cluster (an instance lease; a node whose series
  lease covers it is waited for too) and published as it arrives.
* A series readahead (:meth:`ClusterReads.series`): what the tier holds is
  taken from it; for the rest this node takes the series lease and streams
  it from the PACS (each object published as it arrives, and announced in the
  series' list of news), or, when another node holds that lease, follows
  the news and hands each object on as soon as it is in the tier.  When the
  holder finishes or dies with objects still missing, this node takes over.

An object from the tier is served only whole and checked (see
:mod:`trolleyfs.cluster.tier`), and only if it is the instance asked for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from ..cluster.once import POLL_S, Cluster, fetch_once
from ..model import InstanceRef, SeriesRef, form_key
from ..part10 import Expected, identity_of, identity_problem
from .placement import AS_LISTED, Placement

TIER_READERS = 4  # objects read from the tier at once by one series readahead

Deliver = Callable[[str, bytes], Awaitable[None]]


def _is_instance(uid: str, sref: SeriesRef, placement: Placement) -> Callable[[bytes], bool]:
    """Whether an object from the tier is instance ``uid`` of ``sref`` (its file
    meta and dataset agree, and name that instance, series and study, as
    ``placement`` expects them in the series' form)."""
    expected = placement.expected(InstanceRef(sref.study_uid, sref.series_uid, uid, sref.form))
    expected = Expected(expected.instance, expected.series, expected.study)  # the patient is checked by the Store

    def check(data: bytes) -> bool:
        try:
            ident = identity_of(data)
        except ValueError:
            return False
        return identity_problem(ident, expected) is None

    return check


class ClusterReads:
    def __init__(self, cluster: Cluster, placement: Placement = AS_LISTED) -> None:
        """``placement``: what objects of each form must say they are, and the
        UIDs that name them in the tier (a de-identified form is named by its
        new UIDs, so the tier's keys hold no original UID)."""
        self._cluster = cluster
        self._tier = cluster.tier
        self._leases = cluster.leases
        self._placement = placement

    def _name(self, uid: str, form: str) -> str:
        return form_key(self._placement.outside_uid(uid, form), form)

    def _object(self, server: str, uid: str, form: str) -> str:
        """An object's name in the tier: an instance as stored and converted
        (a transfer syntax, its ``form``) are two objects."""
        return self._tier.key("o", f"{server}/{self._name(uid, form)}")

    def _series_lease(self, server: str, sref: SeriesRef) -> str:
        return f"s:{server}/{self._name(sref.series_uid, sref.form)}"

    async def instance(
        self, server: str, ref: InstanceRef, fetch: Callable[[], Awaitable[bytes]], arrived: Callable[[bytes], None]
    ) -> tuple[bytes, bool]:
        """The object of ``ref``, and whether it came from the PACS (``fetch``,
        under this node's lease; ``arrived`` sees it before it is published)."""
        uid = ref.instance_uid
        data, left = await fetch_once(
            self._cluster,
            self._object(server, uid, ref.form),
            f"i:{server}/{self._name(uid, ref.form)}",
            fetch,
            self._tier.ttl,
            arrived=arrived,
            accept=_is_instance(uid, ref.series, self._placement),
            also_wait_for=[self._series_lease(server, ref.series)],
        )
        self._count(hit=left is not None)
        return data, left is None

    def _news(self, server: str, sref: SeriesRef) -> str:
        """The list of objects published by the series' lease holder (same slot as the lease)."""
        return self._tier.key("n", self._series_lease(server, sref))

    async def publish(self, server: str, sref: SeriesRef, uid: str, data: bytes) -> None:
        """An object of a series fetched from the PACS: into the tier for the
        other nodes, and into the series' news for those following it."""
        key = self._object(server, uid, sref.form)
        if await self._tier.put(key, data, self._tier.ttl):
            await self._tier.announce(self._news(server, sref), key)

    async def series(
        self,
        server: str,
        sref: SeriesRef,
        uids: list[str],
        deliver: Deliver,
        fetch: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        """Bring the objects ``uids`` of a series: ``deliver(uid, data)`` each one
        the tier has or gets; ``fetch(rest)`` the rest from the PACS, under the
        series lease (``fetch`` publishes what it gets)."""
        name = self._series_lease(server, sref)
        remaining = await self._take_present(server, uids, deliver, sref)
        while remaining:
            lease = await self._leases.take(name)
            if lease is not None:
                async with self._leases.holding(lease):
                    # what appeared while the lease was free, then the rest
                    remaining = await self._take_present(server, remaining, deliver, sref)
                    if remaining:
                        self._tier.counters.misses += len(remaining)
                        await fetch(remaining)
                return
            self._tier.counters.leases_waited += 1
            remaining = await self._follow(server, sref, name, remaining, deliver)

    async def _follow(self, server: str, sref: SeriesRef, lease: str, uids: list[str], deliver: Deliver) -> list[str]:
        """Another node streams the series: hand on each object it announces,
        until all are here, the lease is gone, or Redis is unavailable."""
        form = sref.form
        by_key = {self._object(server, u, form): u for u in uids}
        waiting = set(uids)
        failed: list[str] = []  # announced but unreadable: left for a last look
        news, lease_key, seen = self._news(server, sref), self._leases.key(lease), 0
        while waiting or failed:  # (with only failed ones left: until the lease is gone)
            got = await self._tier.news(news, seen, lease_key)
            if got is None:
                break
            names, held = got
            seen += len(names)
            fresh = list(dict.fromkeys(by_key[n] for n in names if by_key.get(n) in waiting))
            if fresh:
                waiting.difference_update(fresh)
                failed += await self._take(server, fresh, deliver, sref)
            elif not held:
                return await self._take_present(server, [*failed, *waiting], deliver, sref)  # the holder is gone
            else:
                await trio.sleep(POLL_S)
        return [*failed, *[u for u in uids if u in waiting]]

    async def _take_present(self, server: str, uids: list[str], deliver: Deliver, sref: SeriesRef) -> list[str]:
        """Deliver what the tier holds of ``uids``; the UIDs it did not give."""
        found = await self._tier.exist([self._object(server, u, sref.form) for u in uids])
        if not found:
            return uids
        present = [u for u, there in zip(uids, found, strict=True) if there]
        absent = [u for u, there in zip(uids, found, strict=True) if not there]
        return absent + await self._take(server, present, deliver, sref)

    async def _take(self, server: str, uids: list[str], deliver: Deliver, sref: SeriesRef) -> list[str]:
        """Read ``uids`` from the tier (a few at a time) and deliver them; the
        UIDs that could not be read (gone, corrupt, Redis unavailable)."""
        failed: list[str] = []
        todo = iter(uids)
        stopped: list[Exception] = []  # what ``deliver`` raised (the readahead budget gave up): raised as it is

        async def reader(cancel: trio.CancelScope) -> None:
            for uid in todo:
                got = await self._tier.get(
                    self._object(server, uid, sref.form), _is_instance(uid, sref, self._placement)
                )
                if got is None:
                    failed.append(uid)
                    continue
                self._count(hit=True)
                try:
                    await deliver(uid, got[0])
                except Exception as exc:
                    stopped.append(exc)
                    cancel.cancel()
                    return

        async with trio.open_nursery() as nursery:
            for _ in range(min(TIER_READERS, len(uids))):
                nursery.start_soon(reader, nursery.cancel_scope)
        if stopped:
            raise stopped[0]
        return failed

    def stats(self) -> dict[str, object]:
        return self._tier.stats()

    def _count(self, hit: bool) -> None:
        if hit:
            self._tier.counters.hits += 1
        else:
            self._tier.counters.misses += 1
