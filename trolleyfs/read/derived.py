"""The cache of derived objects: what is made of a series rather than fetched
(the files dcm2niix makes of it, its preview), kept as a *form of the series*
beside the instances, so that a second read costs nothing and a remount with
a disk cache costs nothing either.

A derived object is a :class:`Bundle`: named files (possibly none) and, when
nothing was made, the maker's one-line message.  :class:`DerivedCache` keeps
bundles

- in memory, in an LRU of its own bounded in bytes (so a large volume does
  not push out the instances the readahead budget counts on), and
- on disk, in the mount's disk cache itself (through the Store's cache
  layer: the same directory, the same ``disk_mb`` bound and LRU, written by
  the same background writer, which the Store drains at unmount), under keys
  that begin with ``derived:``: an instance's key is its UID (digits and
  dots) or ``<uid>@<form>``, so the two can never name the same file.

The caller makes the key (what the bundle depends on: the kind of view and
its engine's form, the series, the form its objects are read in, which
objects) and the bundle (``make``).  One make per key at a time (single
flight): it runs as a task of its own in the mount's nursery, so a reader
that gives up (its deadline, an interrupted ``cp``) does not waste the work
for the next; readers wait for it with their deadlines hearing its progress
(:class:`~trolleyfs.idle.Beacon`).  A bundle that is not ``final`` (a
timeout: another try may do better) is handed to the readers waiting then and
kept nowhere; a failure to read the series (the PACS) fails those reads and
is kept nowhere either."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import cachetools
import trio

from ..errors import ProtocolError, TrolleyError
from ..idle import Beacon

log = logging.getLogger("trolleyfs.views")

KEY_PREFIX = "derived:"
MAGIC = b"trolleyfs-derived-1\n"
MANIFESTS_KEPT = 100_000  # sizes of bundles made or read, by key (small: names and numbers)
TICK_S = 1.0  # while a make is busy with local work, its readers hear so this often


@dataclass(frozen=True)
class Bundle:
    """Files made of a series, sorted by name; ``message`` says (in one line)
    why none were made; ``final`` is False when another try may give another
    answer (then it is not kept)."""

    files: tuple[tuple[str, bytes], ...] = ()
    message: str | None = None
    final: bool = True

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.files)

    def file(self, name: str) -> bytes | None:
        return next((data for n, data in self.files if n == name), None)

    def manifest(self) -> tuple[tuple[str, int], ...]:
        return tuple((n, len(d)) for n, d in self.files)


def encode(bundle: Bundle) -> bytes:
    """A bundle as one blob: a magic line, a JSON line (names, sizes, message), the files' bytes."""
    head = {"files": [[n, len(d)] for n, d in bundle.files], "message": bundle.message}
    return b"".join([MAGIC, json.dumps(head, separators=(",", ":")).encode(), b"\n", *(d for _, d in bundle.files)])


def decode(blob: bytes) -> Bundle:
    """The bundle of a blob :func:`encode` made; ValueError for anything else."""
    if not blob.startswith(MAGIC):
        raise ValueError("not a derived-object blob")
    end = blob.find(b"\n", len(MAGIC))
    if end < 0:
        raise ValueError("a derived-object blob without its header line")
    head = json.loads(blob[len(MAGIC) : end])
    files, pos = [], end + 1
    for name, size in head["files"]:
        if not isinstance(name, str) or not isinstance(size, int) or size < 0:
            raise ValueError("a derived-object blob with a bad file entry")
        files.append((name, blob[pos : pos + size]))
        pos += size
    if pos != len(blob):
        raise ValueError(f"a derived-object blob of {len(blob)} bytes whose header says {pos}")
    message = head.get("message")
    return Bundle(tuple(files), message if isinstance(message, str) else None)


def label(key: str) -> str:
    """A key in messages: its view and a digest (its parts may name a series
    a de-identified mount must not show)."""
    view = key[len(KEY_PREFIX) :].split("\t", 1)[0]
    return f"the {view} view {hashlib.sha256(key.encode()).hexdigest()[:12]}"


class DiskSide(Protocol):
    """The disk cache as the Store's cache layer offers it (:class:`~.caches.Caches`)."""

    async def from_disk(self, uid: str) -> bytes | None: ...

    async def to_disk(self, uid: str, data: bytes) -> None: ...


Busy = Callable[[], AbstractContextManager[None]]
Make = Callable[[Busy], Awaitable[Bundle]]


class _Flight:
    __slots__ = ("beacon", "bundle", "done", "error")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.beacon = Beacon()
        self.bundle: Bundle | None = None
        self.error: BaseException | None = None

    def finish(self, bundle: Bundle | None = None, error: BaseException | None = None) -> None:
        if not self.done.is_set():
            self.bundle, self.error = bundle, error
            self.done.set()


class DerivedCache:
    """Bundles by key: memory, then a make in flight, then the disk cache, then
    a new make (see the module's docstring).  ``nursery``: where makes run."""

    def __init__(self, memory_bytes: int, disk: DiskSide | None, nursery: trio.Nursery) -> None:
        self.max_bytes = max(0, memory_bytes)
        self._disk = disk
        self._nursery = nursery
        self._memory: cachetools.LRUCache[str, Bundle] = cachetools.LRUCache(
            maxsize=max(1, self.max_bytes), getsizeof=lambda b: max(1, b.size)
        )
        self._manifests: cachetools.LRUCache[str, tuple[tuple[str, int], ...]] = cachetools.LRUCache(MANIFESTS_KEPT)
        self._flights: dict[str, _Flight] = {}
        self.memory_hits = self.disk_hits = self.made = self.not_kept = 0

    @staticmethod
    def key(*parts: str) -> str:
        """A key from the parts a bundle depends on (none may hold a tab)."""
        if any("\t" in p for p in parts):
            raise ValueError(f"a key part holds a tab: {parts!r}")
        return KEY_PREFIX + "\t".join(parts)

    def manifest(self, key: str) -> tuple[tuple[str, int], ...] | None:
        """The names and sizes of the bundle under ``key`` if known without
        reading or making it (nothing counted)."""
        return self._manifests.get(key)

    async def get(self, key: str, make: Make) -> Bundle:
        """The bundle under ``key``, made by ``make(busy)`` when no cache holds
        it; ``with busy():`` around bounded local work keeps the readers'
        deadlines from running out while it goes on."""
        if not key.startswith(KEY_PREFIX):
            raise ValueError(f"not a derived-object key: {key!r}")
        hit = self._memory.get(key)
        if hit is not None:
            self.memory_hits += 1
            return hit
        flight = self._flights.get(key)
        if flight is None:
            flight = self._flights[key] = _Flight()
            self._nursery.start_soon(self._run, key, make, flight)
        with flight.beacon.listening():  # its progress is this read's progress
            await flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.bundle is not None
        return flight.bundle

    def _keep(self, key: str, bundle: Bundle) -> None:
        self._manifests[key] = bundle.manifest()
        if max(1, bundle.size) <= self.max_bytes:
            self._memory[key] = bundle

    async def _from_disk(self, key: str) -> Bundle | None:
        if self._disk is None:
            return None
        blob = await self._disk.from_disk(key)
        if blob is None:
            return None
        try:
            return decode(blob)
        except (ValueError, TypeError, KeyError) as exc:  # passed its checksum, yet not ours: made anew
            log.warning("disk cache: %s is not a derived object (%s): made anew", label(key), exc)
            return None

    @contextmanager
    def _busy(self, flight: _Flight) -> Iterator[None]:
        """Progress for ``flight``'s readers every :data:`TICK_S` while the block runs."""
        scope = trio.CancelScope()

        async def tick() -> None:
            with scope:
                while True:
                    await trio.sleep(TICK_S)
                    flight.beacon.progress()

        self._nursery.start_soon(tick)
        try:
            yield
        finally:
            scope.cancel()

    async def _run(self, key: str, make: Make, flight: _Flight) -> None:
        try:
            with flight.beacon.reporting():
                bundle = await self._from_disk(key)
                if bundle is not None:
                    self.disk_hits += 1
                    self._keep(key, bundle)
                    flight.finish(bundle)
                    return
                bundle = await make(lambda: self._busy(flight))
            self.made += 1
            if not bundle.final:
                self.not_kept += 1
                flight.finish(bundle)
                return
            self._keep(key, bundle)
            flight.finish(bundle)
            if self._disk is not None:
                await self._disk.to_disk(key, encode(bundle))
        except TrolleyError as exc:  # reading the series failed: those reads fail, nothing kept
            flight.finish(error=exc)
        except Exception as exc:  # a bug: fail the reads, keep the mount
            log.exception("making %s", label(key))
            flight.finish(error=ProtocolError(f"cannot make {label(key)}: {type(exc).__name__}: {exc}"))
        finally:
            flight.finish(error=ProtocolError("the mount is stopping"))
            if self._flights.get(key) is flight:
                del self._flights[key]

    def stats(self) -> dict[str, object]:
        return {
            "bytes": int(self._memory.currsize),
            "limit": self.max_bytes,
            "bundles": len(self._memory),
            "memory_hits": self.memory_hits,
            "disk_hits": self.disk_hits,
            "made": self.made,
            "not_kept": self.not_kept,
            "in_flight": len(self._flights),
        }
