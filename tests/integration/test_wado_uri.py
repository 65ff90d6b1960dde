"""WADO-URI reads against a real Orthanc (and, for answers Orthanc never gives,
a small in-repo server)."""

from __future__ import annotations

import pytest
import trio

from tests.servers.base import Request, Response, SampleIndex, TestHTTPServer
from trolleyfs.endpoints import Server
from trolleyfs.errors import NotFound, ProtocolError, Unavailable
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.retrieve.wado_uri import WadoURI
from trolleyfs.transport.http import HttpEndpoint
from trolleyfs.wiring import make_client

pytestmark = pytest.mark.integration


def _server(url: str, **kw: object) -> Server:
    return Server(
        name="pacs",
        search=Endpoint("qido-rs", url=url),
        retrieve=Endpoint("wado-uri", url=url),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def index(sample_files) -> SampleIndex:
    return SampleIndex(sample_files)


@pytest.fixture(scope="module")
def a_series(index) -> tuple[SeriesRef, list[str]]:
    """The sample series with the most instances."""
    best: tuple[SeriesRef, list[str]] | None = None
    for study_uid in index.studies():
        for series_uid, dss in index.series(study_uid).items():
            if best is None or len(dss) > len(best[1]):
                best = SeriesRef(study_uid, series_uid), sorted(d.SOPInstanceUID for d in dss)
    assert best is not None
    return best


@pytest.fixture
async def wado(orthanc):
    server = _server(orthanc.wado_uri, max_connections=3, retries=2, timeout=20)  # retries as a user has them
    async with make_client(server) as client:
        yield WadoURI(HttpEndpoint(server, orthanc.wado_uri, client))


async def test_every_instance_of_a_series_is_byte_identical(wado, orthanc, a_series):
    ref, uids = a_series
    for uid in uids:
        data = await wado.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uid))
        assert data == await trio.to_thread.run_sync(orthanc.instance_file, uid)


async def test_series_fetch_yields_every_instance(wado, orthanc, a_series):
    ref, uids = a_series
    got = {uid: data async for uid, data in wado.fetch_series(ref, uids)}
    assert sorted(got) == uids
    for uid in uids:
        assert got[uid] == await trio.to_thread.run_sync(orthanc.instance_file, uid)


async def test_unknown_uid_is_not_found(wado, a_series):
    ref, _ = a_series
    with pytest.raises(NotFound) as info:
        await wado.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, "1.2.3.4.5.404"))
    assert info.value.server == "pacs" and "1.2.3.4.5.404" in info.value.what


async def test_series_fetch_skips_instances_that_are_gone(wado, a_series):
    ref, uids = a_series
    got = [uid async for uid, _ in wado.fetch_series(ref, [*uids[:2], "1.2.3.4.5.404"])]
    assert sorted(got) == uids[:2]


async def test_series_fetch_of_nothing_sends_nothing(wado, a_series):
    ref, _ = a_series
    assert [x async for x in wado.fetch_series(ref, [])] == []


# --------------------------------------------------------------------------- answers Orthanc never gives


@pytest.fixture
def fake(index):
    """A WADO-URI server that answers per objectUID: the sample object, an HTML
    page with status 200, a non-DICOM octet-stream, or a 500 page."""

    def handle(req: Request) -> Response:
        uid = req.arg("objectUID") or ""
        if uid == "html":
            return Response(200, b"<html><head><title>Login required</title></head></html>", content_type="text/html")
        if uid == "garbage":
            return Response(200, b"\x00" * 300, content_type="application/dicom")
        if uid == "boom":
            return Response(500, b"<html><title>Internal error</title></html>", content_type="text/html")
        if uid == "wrong":
            return Response(200, next(iter(index.files.values())), content_type="application/dicom")
        if uid in index.files:
            return Response(200, index.files[uid], content_type="application/dicom")
        return Response(404, b"not found")

    server = TestHTTPServer({("GET", "/wado"): handle}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def fake_wado(fake):
    url = fake.url + "/wado"
    server = _server(url, max_connections=2, retries=0, timeout=10)
    async with make_client(server) as client:
        yield WadoURI(HttpEndpoint(server, url, client))


async def test_query_string_keeps_the_slash_unencoded(fake_wado, fake, index, a_series):
    ref, uids = a_series
    assert await fake_wado.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uids[0])) == index.files[uids[0]]
    req = fake.requests[-1]
    assert "contentType=application/dicom" in req.raw_query
    assert dict(req.query) == {
        "requestType": "WADO",
        "studyUID": ref.study_uid,
        "seriesUID": ref.series_uid,
        "objectUID": uids[0],
        "contentType": "application/dicom",
    }


@pytest.mark.parametrize(
    ("uid", "error", "text"),
    [
        ("html", ProtocolError, "Login required"),
        ("garbage", ProtocolError, "not a DICOM object"),
        ("boom", Unavailable, "Internal error"),
    ],
)
async def test_bad_answers_raise(fake_wado, uid, error, text):
    with pytest.raises(error) as info:
        await fake_wado.fetch_instance(InstanceRef("1.2", "1.2.3", uid))
    assert text in str(info.value)


async def test_wrong_object_is_refused(fake_wado):
    with pytest.raises(ProtocolError, match="instead"):
        await fake_wado.fetch_instance(InstanceRef("1.2", "1.2.3", "wrong"))


async def test_series_fetch_raises_the_first_failure_itself(fake_wado, a_series):
    """Not an ExceptionGroup: the nursery inside is an implementation detail."""
    ref, uids = a_series
    with pytest.raises(Unavailable):
        async for _ in fake_wado.fetch_series(ref, [*uids, "boom"]):
            pass


def test_instance_url_keeps_configured_parameters():
    from trolleyfs.retrieve.wado_uri import instance_url

    ref = InstanceRef("1.2", "1.2.3", "1.2.3.4")
    assert instance_url("http://h/wado", ref) == (
        "http://h/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4&contentType=application/dicom"
    )
    assert instance_url("http://h/wado?site=a", ref).startswith("http://h/wado?site=a&requestType=WADO&")
