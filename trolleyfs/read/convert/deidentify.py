"""De-identification as a form of an object (issue 19): a converting fetcher
under the Store, like another transfer syntax.

:class:`DeidentifyingFetcher` gets the original of an object from the
fetcher below it (the protocol's fetcher, or the transcoding one for a
folder with a ``transfer_syntax``: convert, then de-identify), checks that it
is the instance asked for, and hands back only the de-identified bytes
(:meth:`trolleyfs.deid.Deidentifier.part10`, in worker threads).  The
original never passes through the Store's caches nor the shared tier: those
hold the de-identified form alone, under ``<uid>@<form>``.

- :func:`deid_form` names the form: the Deidentifier's form (``deid-<hex>``,
  from the key, the options and the rules), after the transfer syntax it is
  converted to first (``<syntax>+deid-<hex>``).
- :class:`DeidPlacement` is the Store's placement policy for those forms: an
  object must name the new UIDs and the pseudonymous Patient ID of the
  instance the tree placed, and the shared tier names it by its new UIDs.
- :class:`ExcludedInstances` remembers the instances left out (their pixels
  may identify): a series stream skips them, a read of one fails at once
  (ENOENT), and the tree leaves them out of its next listing.
- :class:`CachedOriginals` (``keep_originals = true``) gets the originals
  through the Store instead, so that the node's caches and the tier keep them
  too."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing, suppress
from dataclasses import replace
from functools import lru_cache

import cachetools
import trio

from ...deid import Deidentifier, DeidError, Excluded
from ...errors import ProtocolError, TrolleyError
from ...model import Fetcher, InstanceRef, QueryLevel, SeriesRef
from ...part10 import Expected, identity_of, identity_problem
from ..placement import AS_LISTED, Placement
from .transcode import CONVERT_THREADS

log = logging.getLogger("trolleyfs.deidentify")

FORM_SEPARATOR = "+"
EXCLUDED_REMEMBERED = 100_000  # instances known to be left out
PATIENTS_REMEMBERED = 4096  # patient pseudonyms kept for the placement check of every read
ORIGINALS_AT_ONCE = 4  # originals read through the Store at once for one series (keep_originals)


def deid_form(deid: str, syntax: str = "") -> str:
    """The form of objects de-identified by the Deidentifier of form ``deid``,
    after conversion to ``syntax`` ("": as stored)."""
    return f"{syntax}{FORM_SEPARATOR}{deid}" if syntax else deid


def inner_form(form: str) -> str:
    """The form the original of a de-identified ``form`` is fetched in."""
    syntax, sep, _ = form.rpartition(FORM_SEPARATOR)
    return syntax if sep else ""


def is_deid_form(form: str, deid: str) -> bool:
    """Whether ``form`` is a form of the Deidentifier of form ``deid``."""
    return form == deid or form.endswith(FORM_SEPARATOR + deid)


class ExcludedInstances:
    """The instances (by original SOP Instance UID) found to be left out of
    the mount, newest kept; :attr:`generation` counts additions, so a listing
    knows when to filter its files again."""

    def __init__(self, size: int = EXCLUDED_REMEMBERED) -> None:
        self._uids: cachetools.LRUCache[str, bool] = cachetools.LRUCache(size)
        self.generation = 0

    def add(self, uid: str) -> None:
        if uid not in self._uids:
            self._uids[uid] = True
            self.generation += 1

    def __contains__(self, uid: object) -> bool:
        return uid in self._uids

    def __len__(self) -> int:
        return len(self._uids)


class DeidPlacement:
    """The placement policy of a mount with de-identified forms: for those, an
    object must name the new UIDs of the instance, series and study of its
    ref and the pseudonym of the Patient ID its study was listed under, and
    the shared tier names it by its new UIDs; other forms keep theirs."""

    def __init__(self, deid: Deidentifier, other: Placement = AS_LISTED) -> None:
        self._deid = deid
        self._other = other
        self._patient = lru_cache(maxsize=PATIENTS_REMEMBERED)(self._pseudonym)  # every read is checked

    def _pseudonym(self, patient_id: str, study_uid: str) -> str | None:
        row = {"PatientID": patient_id, "StudyInstanceUID": study_uid}
        return self._deid.attrs(QueryLevel.STUDY, row).get("PatientID")

    def expected(self, ref: InstanceRef) -> Expected:
        if not is_deid_form(ref.form, self._deid.form):
            return self._other.expected(ref)
        d = self._deid
        patient = self._patient(ref.patient_id, ref.study_uid) if ref.patient_id and ref.patient_id.strip() else None
        return Expected(d.uid(ref.instance_uid), d.uid(ref.series_uid), d.uid(ref.study_uid), patient)

    def outside_uid(self, uid: str, form: str) -> str:
        if is_deid_form(form, self._deid.form):
            return self._deid.uid(uid)
        return self._other.outside_uid(uid, form)


def _original_problem(data: bytes, ref: InstanceRef) -> str | None:
    """Why the original ``data`` is not the instance ``ref`` names, or None."""
    try:
        ident = identity_of(data)
    except ValueError as exc:
        return f"its identity cannot be read: {exc}"
    return identity_problem(ident, Expected.of_instance(ref))


class DeidentifyingFetcher:
    """A Fetcher of objects in one de-identified form, whatever the ref's form
    says: each original comes from ``originals`` (in ``inner_form(form)``) and
    is checked and de-identified here."""

    def __init__(
        self,
        originals: Fetcher,
        deid: Deidentifier,
        form: str,
        excluded: ExcludedInstances,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.name = originals.name
        self._originals = originals
        self._deid = deid
        self.form = form
        self._inner = inner_form(form)
        self._excluded = excluded
        self._limiter = limiter or trio.CapacityLimiter(CONVERT_THREADS)
        self.deidentified = 0  # objects de-identified
        self.left_out = 0  # objects found to be left out (burned-in annotation, ...)
        self.failed = 0  # objects that could not be de-identified
        self.refused = 0  # originals that were not the instance asked for

    async def aclose(self) -> None:
        pass  # the fetcher below belongs to whoever built it

    def _left_out(self, uid: str) -> Excluded:
        return Excluded(f"{self.name}: instance {uid}: left out of the de-identified mount")

    async def _convert(self, uid: str, data: bytes) -> bytes:
        """The de-identified object; Excluded (remembered) or DeidError (logged)."""
        try:
            out = await trio.to_thread.run_sync(self._deid.part10, data, limiter=self._limiter)
        except Excluded as exc:
            self.left_out += 1
            self._excluded.add(uid)
            log.info("%s: instance %s: %s", self.name, uid, exc)
            raise self._left_out(uid) from None
        except DeidError as exc:
            self.failed += 1
            log.warning("%s: instance %s: %s", self.name, uid, exc)
            raise DeidError(f"{self.name}: instance {uid}: {exc}") from None
        self.deidentified += 1
        return out

    def _refuse(self, ref: InstanceRef, problem: str) -> ProtocolError:
        self.refused += 1
        return ProtocolError(f"object refused: {problem}", server=self.name, what=f"instance {ref.instance_uid}")

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        if ref.instance_uid in self._excluded:
            raise self._left_out(ref.instance_uid)
        data = await self._originals.fetch_instance(replace(ref, form=self._inner))
        problem = _original_problem(data, ref)
        if problem is not None:
            raise self._refuse(ref, problem)
        return await self._convert(ref.instance_uid, data)

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        wanted = [u for u in instance_uids if u not in self._excluded]
        asked = set(wanted)
        async with aclosing(_gen(self._originals.fetch_series(replace(ref, form=self._inner), wanted))) as objects:
            async for uid, data in objects:
                if uid not in asked:
                    continue
                one = InstanceRef(ref.study_uid, ref.series_uid, uid)
                problem = _original_problem(data, one)
                if problem is not None:  # left out of the series: its reader asks for it alone, and is refused
                    log.warning("%s: series %s: %s", self.name, ref.series_uid, self._refuse(one, problem))
                    continue
                try:
                    converted = await self._convert(uid, data)
                except (Excluded, DeidError):
                    continue  # remembered or logged; its reader asks for it alone (and fails)
                yield uid, converted

    def stats(self) -> dict[str, int]:
        return {
            "deidentified": self.deidentified,
            "deid_left_out": self.left_out,
            "deid_failed": self.failed,
            "deid_refused": self.refused,
        }


class DeidForms:
    """The de-identified forms of one mount, built by the composition root:
    one :class:`DeidentifyingFetcher` per server and form (they share the
    worker threads and what they found to leave out), the Store's placement
    policy for them, and their counters.  With ``keep_originals`` the
    originals are read through the Store (:meth:`bind` it once built)."""

    def __init__(self, deid: Deidentifier, keep_originals: bool = False) -> None:
        self.deid = deid
        self.keep_originals = keep_originals
        self.excluded = ExcludedInstances()
        self.placement = DeidPlacement(deid)
        self._store = StoreReader()
        self._limiter = trio.CapacityLimiter(CONVERT_THREADS)
        self._fetchers: list[DeidentifyingFetcher] = []

    def fetcher(self, server: str, originals: Fetcher, syntax: str = "") -> tuple[str, DeidentifyingFetcher]:
        """The form and the fetcher of ``server``'s objects de-identified after
        conversion to ``syntax``; ``originals`` fetches them in ``syntax``."""
        form = deid_form(self.deid.form, syntax)
        source = CachedOriginals(server, self._store) if self.keep_originals else originals
        fetcher = DeidentifyingFetcher(source, self.deid, form, self.excluded, self._limiter)
        self._fetchers.append(fetcher)
        return form, fetcher

    def bind(self, get: Callable[[str, InstanceRef], Awaitable[bytes]]) -> None:
        """The Store's read (for ``keep_originals``)."""
        self._store.get = get

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self._fetchers:
            for k, v in f.stats().items():
                out[k] = out.get(k, 0) + v
        return out


class StoreReader:
    """The Store, once built (it is built after the fetchers it reads through)."""

    def __init__(self) -> None:
        self.get: Callable[[str, InstanceRef], Awaitable[bytes]] | None = None


class CachedOriginals:
    """``keep_originals = true``: one server's originals read through the
    Store (its memory and disk caches and the shared tier), as a Fetcher for
    :class:`DeidentifyingFetcher`.  A series is read object by object,
    :data:`ORIGINALS_AT_ONCE` at a time."""

    def __init__(self, name: str, store: StoreReader) -> None:
        self.name = name
        self._store = store

    async def aclose(self) -> None:
        pass

    async def fetch_instance(self, ref: InstanceRef) -> bytes:
        get = self._store.get
        if get is None:
            raise ProtocolError("the store is not ready", server=self.name, what=f"instance {ref.instance_uid}")
        return await get(self.name, ref)

    async def fetch_series(self, ref: SeriesRef, instance_uids: list[str]) -> AsyncGenerator[tuple[str, bytes], None]:
        for at in range(0, len(instance_uids), ORIGINALS_AT_ONCE):
            got: dict[str, bytes] = {}

            async def one(uid: str, got: dict[str, bytes] = got) -> None:
                with suppress(TrolleyError):  # not delivered: its reader asks for it alone
                    got[uid] = await self.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uid, ref.form))

            async with trio.open_nursery() as nursery:
                for uid in instance_uids[at : at + ORIGINALS_AT_ONCE]:
                    nursery.start_soon(one, uid)
            for uid, data in got.items():
                yield uid, data


async def _gen(stream: AsyncIterator[tuple[str, bytes]]) -> AsyncGenerator[tuple[str, bytes], None]:
    """A fetcher's series stream as an async generator (closable by ``aclosing``)."""
    try:
        async for item in stream:
            yield item
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
