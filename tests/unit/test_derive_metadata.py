"""Metadata documents without a server: what a ``/metadata`` answer must be
(the recorded Vitrea answer included) and what is left out of it, the order
of instances, headers built from objects, and the document service over
httpx.MockTransport: one request, cached for its TTL (on trio's MockClock),
built from the objects when the server has no ``/metadata`` or it fails."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
import trio

from trolleyfs.config import parse
from trolleyfs.demo import sampledata
from trolleyfs.derive.metadata import Metadata, header_json, ordered
from trolleyfs.errors import NotFound, ProtocolError
from trolleyfs.model import InstanceRef
from trolleyfs.retrieve.metadata import WadoMetadata, checked
from trolleyfs.transport.http import HttpEndpoint

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded"
CFG = """
[servers.pacs]
search   = { protocol = "qido-rs", url = "http://pacs/dicom-web" }
retrieve = { protocol = "wado-rs", url = "http://pacs/dicom-web" }
retries = 0
timeout = 5
"""


def sample() -> list[bytes]:
    spec = sampledata.StudySpec("DOE^J", "P9", "20240101", "Meta", (sampledata.SeriesSpec("CT", "Ax", 3),))
    return list(sampledata.generate([spec]))


def uid_of(item: dict[str, Any]) -> str:
    return str(item["00080018"]["Value"][0])


def test_the_recorded_vitrea_answer_is_accepted_and_pixel_data_left_out() -> None:
    doc = json.loads((RECORDED / "wado_rs_instance_metadata_vitrea92.json").read_text())
    doc[0]["7FE00010"] = {"vr": "OW", "BulkDataURI": "http://pacs/bulk/7fe00010"}
    items = checked(doc, "pacs", "metadata")
    assert len(items) == len(doc) and "7FE00010" not in items[0] and "00080018" not in items[0]  # as Vitrea sent it
    assert any("InlineBinary" in e or "BulkDataURI" in e for e in items[0].values())  # other binaries stay as sent
    pydicom.Dataset.from_json(items[0], bulk_data_uri_handler=lambda *a: b"")


@pytest.mark.parametrize("doc", [{"00080018": {}}, [["not an object"]], [{"00100010": {"vr": "PN"}}, 3], "[]"])
def test_what_is_not_an_array_of_instances_is_refused(doc: object) -> None:
    with pytest.raises(ProtocolError):
        checked(doc, "pacs", "metadata")


def test_instances_are_ordered_by_series_and_instance_number() -> None:
    def item(series: str, number: str | None, uid: str) -> dict[str, Any]:
        out = {"00080018": {"vr": "UI", "Value": [uid]}, "00200011": {"vr": "IS", "Value": [series]}}
        if number is not None:
            out["00200013"] = {"vr": "IS", "Value": [number]}
        return out

    items = [item("2", "1", "a"), item("1", "10", "b"), item("1", "9", "c"), item("1", None, "d")]
    assert [uid_of(i) for i in ordered(items)] == ["c", "b", "d", "a"]


def test_headers_from_an_object_leave_the_pixels_out() -> None:
    data = sample()[0]
    item = header_json(data)
    assert "7FE00010" not in item and uid_of(item) == pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
    assert pydicom.Dataset.from_json(item).SliceThickness == 2.5


class Objects:
    """The Store for objects-built documents: counts reads."""

    def __init__(self, files: list[bytes]) -> None:
        self.by_uid = {pydicom.dcmread(io.BytesIO(f)).SOPInstanceUID: f for f in files}
        self.reads: list[str] = []

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        assert ref.form == ""  # headers are read from the stored form
        self.reads.append(ref.instance_uid)
        return self.by_uid[ref.instance_uid]


def listing(files: list[bytes]) -> list[InstanceRef]:
    out = []
    for f in files:
        ds = pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True)
        out.append(InstanceRef(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
    return out


def service(
    handler: Callable[[httpx.Request], httpx.Response] | None, objects: Objects
) -> tuple[Metadata, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    sources = {}
    if handler is not None:

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        server = parse(CFG, "t.toml").servers["pacs"]
        client = httpx.AsyncClient(transport=httpx.MockTransport(record))
        sources["pacs"] = WadoMetadata(HttpEndpoint(server, "http://pacs/dicom-web", client))
    return Metadata(sources, objects), seen


async def test_a_series_document_is_one_request_kept_for_its_ttl(autojump_clock: trio.testing.MockClock) -> None:
    files = sample()
    inst = listing(files)
    answer = [header_json(f) | {"7FE00010": {"vr": "OW", "BulkDataURI": "x"}} for f in reversed(files)]
    objects = Objects(files)
    meta, seen = service(lambda req: httpx.Response(200, json=answer), objects)
    called = []

    async def instances() -> list[list[InstanceRef]]:
        called.append(1)
        return [inst]

    study, series = inst[0].study_uid, inst[0].series_uid
    doc = await meta.document("pacs", study, series, instances, ttl=60)
    items = json.loads(doc)
    assert [uid_of(i) for i in items] == [i.instance_uid for i in inst]  # in InstanceNumber order
    assert all("7FE00010" not in i for i in items)
    assert str(seen[0].url).endswith(f"/studies/{study}/series/{series}/metadata")
    assert called == [] and objects.reads == []  # no listing asked, no object read
    assert meta.cached_size(Metadata.key("pacs", study, series)) == len(doc)
    assert await meta.document("pacs", study, series, instances, ttl=60) == doc and len(seen) == 1
    await trio.sleep(61)
    await meta.document("pacs", study, series, instances, ttl=60)
    assert len(seen) == 2


async def test_readers_of_one_document_share_one_request() -> None:
    files = sample()
    answer = [header_json(f) for f in files]
    meta, seen = service(lambda req: httpx.Response(200, json=answer), Objects(files))
    inst = listing(files)
    docs = []

    async def not_needed() -> list[list[InstanceRef]]:
        raise AssertionError("the server has /metadata: no listing needed")

    async def read() -> None:
        docs.append(await meta.document("pacs", inst[0].study_uid, None, not_needed, ttl=60))

    async with trio.open_nursery() as n:
        for _ in range(5):
            n.start_soon(read)
    assert len(seen) == 1 and len(set(docs)) == 1
    assert str(seen[0].url).endswith(f"/studies/{inst[0].study_uid}/metadata")


async def test_without_metadata_the_document_is_built_from_the_objects() -> None:
    files = sample()
    inst = listing(files)
    objects = Objects(files)
    meta, _ = service(None, objects)

    async def instances() -> list[list[InstanceRef]]:
        return [inst]

    doc = json.loads(await meta.document("pacs", inst[0].study_uid, inst[0].series_uid, instances, ttl=60))
    uids = [i.instance_uid for i in inst]
    assert [uid_of(i) for i in doc] == uids and sorted(objects.reads) == sorted(uids)
    assert meta.stats() == {"metadata_from_server": 0, "metadata_from_objects": 1}


async def test_a_failing_metadata_request_falls_back_but_a_missing_series_is_missing() -> None:
    files = sample()
    inst = listing(files)

    async def instances() -> list[list[InstanceRef]]:
        return [inst]

    objects = Objects(files)
    meta, _ = service(lambda req: httpx.Response(500, text="boom"), objects)
    doc = json.loads(await meta.document("pacs", inst[0].study_uid, inst[0].series_uid, instances, ttl=60))
    assert len(doc) == 3 and len(objects.reads) == 3
    meta, _ = service(lambda req: httpx.Response(404, text="no such series"), Objects(files))
    with pytest.raises(NotFound):
        await meta.document("pacs", inst[0].study_uid, inst[0].series_uid, instances, ttl=60)
