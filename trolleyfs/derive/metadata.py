"""The headers of a series or a study as one DICOM JSON document (PS3.18
F.2): a JSON array with one object per instance, pixel data left out.

Where the server offers WADO-RS ``/metadata`` (the search endpoint is
QIDO-RS, or the retrieve endpoint WADO-RS), the document is that answer: one
request, no pixel data downloaded.  Otherwise it is built from the objects
themselves, in the form their files are read in (read through the Store, so
they are cached for later reads; their headers are parsed in worker
threads).  A de-identified mount offers no ``/metadata`` source (the
composition root gives none): its documents are always built from the
de-identified objects.  Instances are ordered by
SeriesNumber, InstanceNumber and UID.  Documents are cached for the TTL of
the listing they describe, bounded in bytes; one build per document at a time."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import cachetools
import trio
from pydicom import dcmread

from ..dicomjson import PIXEL_TAGS
from ..errors import AccessDenied, NotFound, ProtocolError, RemoteError
from ..model import InstanceRef, MetadataSource

log = logging.getLogger("trolleyfs.metadata")

SOP_INSTANCE_UID = "00080018"
CACHE_BYTES = 64 * 2**20
PARSE_THREADS = 2
Items = list[dict[str, Any]]


class StoredReader(Protocol):
    """Where the objects come from when the server offers no ``/metadata`` (the Store)."""

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes: ...


def _first(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") if isinstance(item.get(tag), dict) else None
    return values[0] if isinstance(values, list) and values else None


def _number(value: Any) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 1 << 31


def ordered(items: Items) -> Items:
    """By SeriesNumber, InstanceNumber, then SOP Instance UID."""
    return sorted(
        items,
        key=lambda i: (
            _number(_first(i, "00200011")),
            _number(_first(i, "00200013")),
            str(_first(i, SOP_INSTANCE_UID)),
        ),
    )


def header_json(data: bytes) -> dict[str, Any]:
    """The DICOM JSON of a Part-10 object's dataset, pixel data left out
    (blocking: run in a worker thread)."""
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    doc: dict[str, Any] = ds.to_json_dict(suppress_invalid_tags=True)
    return {tag: elem for tag, elem in doc.items() if tag.upper() not in PIXEL_TAGS}


Instances = Callable[[], Awaitable[list[list[InstanceRef]]]]  # the instances (in their files' form), series by series


class Metadata:
    """Metadata documents, from each server's ``/metadata`` where it has one
    (``sources``), else from the objects (``reader``)."""

    def __init__(self, sources: Mapping[str, MetadataSource], reader: StoredReader, cache_bytes: int = CACHE_BYTES):
        self._sources = dict(sources)
        self._reader = reader
        self._cache: cachetools.TLRUCache[str, tuple[bytes, float]] = cachetools.TLRUCache(
            maxsize=cache_bytes,
            ttu=lambda _k, v, now: now + v[1],
            timer=trio.current_time,
            getsizeof=lambda v: len(v[0]),
        )
        self._locks: dict[str, trio.Lock] = {}
        self._limiter = trio.CapacityLimiter(PARSE_THREADS)
        self.from_server = self.from_objects = 0

    def offered_by(self, server: str) -> bool:
        """Whether ``server`` answers ``/metadata`` (else documents cost the objects)."""
        return server in self._sources

    @staticmethod
    def key(server: str, study_uid: str, series_uid: str | None) -> str:
        return f"{server}\t{study_uid}\t{series_uid or '*'}"

    def cached_size(self, key: str) -> int | None:
        """The size of a document if it is cached (no request)."""
        hit = self._cache.get(key)
        return None if hit is None else len(hit[0])

    async def document(
        self, server: str, study_uid: str, series_uid: str | None, instances: Instances, ttl: float
    ) -> bytes:
        """The document of a series (or of a whole study, ``series_uid`` None),
        kept ``ttl`` seconds.  ``instances`` lists its instances; it is only
        called when the document has to be built from the objects."""
        key = self.key(server, study_uid, series_uid)
        hit = self._cache.get(key)
        if hit is not None:
            return hit[0]
        lock = self._locks.setdefault(key, trio.Lock())
        try:
            async with lock:
                hit = self._cache.get(key)
                if hit is not None:
                    return hit[0]
                items = await self._items(server, study_uid, series_uid, instances)
                doc = (json.dumps(ordered(items), separators=(",", ":")) + "\n").encode()
                if ttl > 0:
                    self._cache[key] = (doc, ttl)
                return doc
        finally:
            if not lock.statistics().tasks_waiting and not lock.locked():
                self._locks.pop(key, None)

    async def _items(self, server: str, study_uid: str, series_uid: str | None, instances: Instances) -> Items:
        source = self._sources.get(server)
        if source is not None:
            try:
                items = await (source.series(study_uid, series_uid) if series_uid else source.study(study_uid))
            except (NotFound, AccessDenied):
                raise
            except RemoteError as exc:
                log.warning("%s: /metadata failed (%s): building the document from the objects", server, exc)
            else:
                self.from_server += 1
                return items
        self.from_objects += 1
        return await self._from_objects(server, await instances())

    async def _from_objects(self, server: str, series: list[list[InstanceRef]]) -> Items:
        items: Items = []
        for refs in series:
            uids = [r.instance_uid for r in refs]
            for ref in refs:
                data = await self._reader.get(server, ref, uids.copy)
                try:
                    items.append(await trio.to_thread.run_sync(header_json, data, limiter=self._limiter))
                except Exception as exc:  # whatever pydicom makes of a broken object
                    raise ProtocolError(
                        f"cannot read its header: {exc}", server=server, what=f"instance {ref.instance_uid}"
                    ) from None
        return items

    def stats(self) -> dict[str, int]:
        return {"metadata_from_server": self.from_server, "metadata_from_objects": self.from_objects}
