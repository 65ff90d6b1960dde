"""RAD-69 reads against the in-repo Vitrea-like server (tests/servers/rad69.py),
which serves the generated sample data."""

from __future__ import annotations

import gc
from contextlib import aclosing

import pytest

from tests.servers.base import SampleIndex
from tests.servers.rad69 import FAULT_REASON, Rad69Server, parse_request
from trolleyfs.endpoints import Server
from trolleyfs.errors import IgnoredError, NotFound, ProtocolError, RemoteError, Unavailable
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.retrieve.rad69 import Rad69
from trolleyfs.transport.http import HttpEndpoint
from trolleyfs.wiring import make_client

pytestmark = pytest.mark.integration

UNKNOWN = "1.2.826.0.1.3680043.10.1087.404"


@pytest.fixture(scope="module")
def index(sample_files) -> SampleIndex:
    return SampleIndex(sample_files)


@pytest.fixture(scope="module")
def all_series(index) -> list[tuple[SeriesRef, list[str]]]:
    out = []
    for study_uid in index.studies():
        for series_uid, dss in index.series(study_uid).items():
            out.append((SeriesRef(study_uid, series_uid), sorted(d.SOPInstanceUID for d in dss)))
    return out


@pytest.fixture(scope="module")
def big_series(all_series: list[tuple[SeriesRef, list[str]]]) -> tuple[SeriesRef, list[str]]:
    return max(all_series, key=lambda s: len(s[1]))


@pytest.fixture(scope="module")
def rad69_server(index):
    # small chunks, so that parts arrive split across many reads
    server = Rad69Server(index, chunk_size=3000).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def srv(rad69_server):
    """The server, reset to good behaviour after each test."""
    rad69_server.requests.clear()
    try:
        yield rad69_server
    finally:
        rad69_server.mode = "ok"
        rad69_server.partial_success = False


def _config(url: str, retries: int = 0) -> Server:
    return Server("vitrea", Endpoint("mint", url=url), Endpoint("rad69", url=url), retries=retries, timeout=10)


@pytest.fixture
async def client(srv):
    async with make_client(_config(srv.url)) as c:
        yield c


@pytest.fixture
def fetcher(srv, client):
    def make(ignore: tuple[str, ...] = (), retries: int = 0) -> Rad69:
        return Rad69(HttpEndpoint(_config(srv.url, retries), srv.url, client), ignore_errors=ignore)

    return make


# --------------------------------------------------------------------------- good answers


async def test_every_sample_instance_is_byte_identical(fetcher, index, srv):
    rad69 = fetcher()
    for uid, ds in index.datasets.items():
        data = await rad69.fetch_instance(InstanceRef(ds.StudyInstanceUID, ds.SeriesInstanceUID, uid))
        assert data == index.files[uid]
    assert len(srv.requests) == len(index.files)


async def test_every_series_in_one_request_each(fetcher, index, srv, all_series):
    rad69 = fetcher()
    for ref, uids in all_series:
        got = {}
        async for uid, data in rad69.fetch_series(ref, uids):
            assert uid not in got
            got[uid] = data
        assert sorted(got) == uids
        assert all(got[u] == index.files[u] for u in uids)
    assert len(srv.requests) == len(all_series)


async def test_request_names_the_objects(fetcher, srv, big_series):
    ref, uids = big_series
    assert len([x async for x in fetcher().fetch_series(ref, uids[:3])]) == 3
    (req,) = srv.requests
    assert req.path == "/rad69" and req.headers["content-type"].startswith("application/soap+xml")
    assert parse_request(req.body).documents == [(ref.study_uid, ref.series_uid, u) for u in uids[:3]]


# --------------------------------------------------------------------------- missing objects


async def test_missing_instance_is_not_found(fetcher, big_series):
    ref, _ = big_series
    with pytest.raises(NotFound) as info:
        await fetcher().fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, UNKNOWN))
    assert "XDSMissingDocument" in str(info.value) and UNKNOWN in str(info.value)
    assert info.value.server == "vitrea"


async def test_missing_instance_ignored(fetcher, big_series):
    ref, _ = big_series
    with pytest.raises(IgnoredError, match="XDSMissingDocument"):
        await fetcher(ignore=("XDSMissingDocument",)).fetch_instance(
            InstanceRef(ref.study_uid, ref.series_uid, UNKNOWN)
        )


async def test_series_with_a_missing_object_yields_the_rest_then_fails(fetcher, index, srv, big_series):
    ref, uids = big_series
    got = {}
    with pytest.raises(NotFound, match=UNKNOWN):
        async for uid, data in fetcher().fetch_series(ref, [*uids, UNKNOWN]):
            got[uid] = data
    assert sorted(got) == uids and all(got[u] == index.files[u] for u in uids)
    assert len(srv.requests) == 2  # Vitrea fails the whole request: the rest is asked for again


async def test_series_with_a_missing_object_ignored(fetcher, index, srv, big_series):
    ref, uids = big_series
    got = {uid: data async for uid, data in fetcher(ignore=("XDSMissingDocument",)).fetch_series(ref, [UNKNOWN, *uids])}
    assert sorted(got) == uids and all(got[u] == index.files[u] for u in uids)
    assert [len(parse_request(r.body).documents) for r in srv.requests] == [len(uids) + 1, len(uids)]


async def test_partial_success_in_one_request(fetcher, index, srv, big_series):
    srv.partial_success = True
    ref, uids = big_series
    got = {}
    with pytest.raises(NotFound, match="XDSMissingDocument"):
        async for uid, data in fetcher().fetch_series(ref, [*uids[:4], UNKNOWN]):
            got[uid] = data
    assert got == {u: index.files[u] for u in uids[:4]}
    assert len(srv.requests) == 1
    srv.requests.clear()
    got = {u: d async for u, d in fetcher(ignore=("XDSMissingDocument",)).fetch_series(ref, [*uids[:4], UNKNOWN])}
    assert got == {u: index.files[u] for u in uids[:4]}
    assert len(srv.requests) == 1


async def test_object_of_another_series_is_missing(fetcher, all_series):
    """The server checks study and series too: a UID asked for under the wrong series is missing."""
    uids_a, ref_b = all_series[0][1], all_series[1][0]
    with pytest.raises(NotFound):
        await fetcher().fetch_instance(InstanceRef(ref_b.study_uid, ref_b.series_uid, uids_a[0]))


# --------------------------------------------------------------------------- misbehaving server


async def test_fault_gives_its_reason(fetcher, srv, big_series):
    srv.mode = "fault"
    ref, uids = big_series
    with pytest.raises(ProtocolError, match=FAULT_REASON.replace("(", r"\(").replace(")", r"\)")):
        await fetcher(retries=2).fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uids[0]))
    with pytest.raises(ProtocolError, match="SOAP fault"):
        async for _ in fetcher().fetch_series(ref, uids):
            pass
    assert len(srv.requests) == 2  # a fault is an answer: not retried


async def test_truncated_instance_is_an_error(fetcher, srv, big_series):
    srv.mode = "truncate"
    ref, uids = big_series
    with pytest.raises(ProtocolError, match="closing boundary"):
        await fetcher().fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uids[0]))


async def test_truncated_series_yields_only_whole_objects(fetcher, index, srv, big_series):
    srv.mode = "truncate"
    ref, uids = big_series
    got = {}
    with pytest.raises(ProtocolError, match="closing boundary"):
        async for uid, data in fetcher().fetch_series(ref, uids):
            got[uid] = data
    assert len(got) == len(uids) - 1  # the server cut the last part
    assert all(got[u] == index.files[u] for u in got)


async def test_cut_connection_yields_only_whole_objects(fetcher, index, srv, big_series):
    srv.mode = "abort"
    ref, uids = big_series
    got = {}
    with pytest.raises(RemoteError) as info:
        async for uid, data in fetcher().fetch_series(ref, uids):
            got[uid] = data
    assert isinstance(info.value, (Unavailable, ProtocolError))
    assert len(got) == len(uids) - 1 and all(got[u] == index.files[u] for u in got)
    with pytest.raises((Unavailable, ProtocolError)):
        await fetcher().fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uids[0]))


async def test_part_that_is_not_dicom(fetcher, srv, big_series):
    srv.mode = "not-dicom"
    ref, uids = big_series
    with pytest.raises(ProtocolError, match="not a DICOM object"):
        await fetcher().fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uids[0]))
    got = []
    with pytest.raises(ProtocolError, match="not a DICOM object"):
        async for uid, _ in fetcher().fetch_series(ref, uids):
            got.append(uid)
    assert len(got) == len(uids) - 1


async def test_html_500_is_unavailable_and_retried(fetcher, srv, big_series):
    srv.mode = "html500"
    ref, uids = big_series
    with pytest.raises(Unavailable, match="500 Internal Server Error"):
        await fetcher(retries=1).fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uids[0]))
    assert len(srv.requests) == 2


async def test_server_refuses_a_request_that_is_not_rad69(client, srv):
    """The test server checks what it is sent, so the tests above mean something."""
    resp = await client.post(srv.url, content=b"<x/>", headers={"content-type": "application/soap+xml"})
    assert resp.status_code == 400 and b"Fault" in resp.content


async def test_consumer_stopping_early_releases_everything(fetcher, index, srv, big_series):
    """A reader that stops after one object: the stream is closed cleanly (no
    abandoned async generators, which trio reports and this suite turns into
    errors), and the next request works."""
    ref, uids = big_series
    rad69 = fetcher()
    async with aclosing(rad69.fetch_series(ref, uids)) as items:
        async for uid, data in items:
            assert data == index.files[uid]
            break
    gc.collect()
    got = {u: d async for u, d in rad69.fetch_series(ref, uids[:2])}
    assert sorted(got) == uids[:2]
