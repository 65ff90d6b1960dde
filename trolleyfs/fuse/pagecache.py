"""Readahead data into the kernel's page cache: every file that shows a
prefetched instance gets its bytes stored, so that reading it costs no FUSE
request at all.

The kernel locks the pages it stores into; a reader of the same file may hold
one while it waits for this very process to answer its read.  So the store
runs in a worker thread (one at a time), never on the loop that answers;
what arrives while it runs is stored by its next hand-off, in one go.

A file opened while its bytes are on their way into the page cache (a cold
``cp -r`` reads right behind the series as it streams) waits for them
(:meth:`PagePusher.settled`): its reads are then answered by the kernel, and
the loop, which would otherwise copy every byte into a read's answer, goes on
with the stream while the worker thread stores the pages on another core."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pyfuse3
import trio


class PagePusher:
    def __init__(
        self,
        inodes_of: Callable[[str], list[int]],
        nursery: trio.Nursery,
        notify_store: Callable[[int, int, bytes], None] = pyfuse3.notify_store,
    ) -> None:
        """``inodes_of`` gives the inodes of the files showing an instance."""
        self._inodes_of = inodes_of
        self._nursery = nursery
        self._notify_store = notify_store
        self._pending: list[tuple[list[int], bytes]] = []  # what the next hand-off stores
        self._running = False
        self._unsettled: dict[int, tuple[int, trio.Event]] = {}  # inode -> (pushes not yet stored, done)

    def push(self, uid: str, data: bytes) -> None:
        """Readahead data for ``uid`` arrived (the Store's ``on_readahead``)."""
        inodes = self._inodes_of(uid)
        if not inodes:
            return
        self._pending.append((inodes, data))
        for ino in inodes:
            entry = self._unsettled.get(ino)
            self._unsettled[ino] = (1, trio.Event()) if entry is None else (entry[0] + 1, entry[1])
        if not self._running:
            self._running = True
            self._nursery.start_soon(self._push)

    async def _push(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await trio.to_thread.run_sync(self._store_pages, batch)
                finally:
                    self._settle(batch)
        finally:
            self._running = False
            if self._pending:  # cancelled with pushes queued (unmount): nobody waits for them
                self._settle(self._pending)
                self._pending = []

    def _settle(self, batch: list[tuple[list[int], bytes]]) -> None:
        for inodes, _ in batch:
            for ino in inodes:
                count, done = self._unsettled[ino]
                if count > 1:
                    self._unsettled[ino] = (count - 1, done)
                else:
                    del self._unsettled[ino]
                    done.set()

    async def settled(self, ino: int) -> None:
        """Return once no push into ``ino``'s pages is queued or running."""
        entry = self._unsettled.get(ino)
        if entry is not None:
            await entry[1].wait()

    def _store_pages(self, batch: list[tuple[list[int], bytes]]) -> None:
        for inodes, data in batch:
            for ino in inodes:
                with contextlib.suppress(OSError):  # the kernel dropped the inode, or cannot: it asks when read
                    self._notify_store(ino, 0, data)
