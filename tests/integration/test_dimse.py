"""DICOM-QR listings (C-FIND) and C-GET reads against two real peers: Orthanc's
DICOM port and dcmtk's dcmqrscp, both holding the generated sample data."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass

import pydicom
import pytest
import trio

from tests.mounting import dataset_bytes
from tests.peers import Peer
from tests.servers.dcmqrscp import Dcmqrscp, free_port
from tests.servers.tcpcount import CountingForwarder
from trolleyfs.endpoints import CGetEndpoint, DicomQrEndpoint
from trolleyfs.errors import AccessDenied, NotFound, ProtocolError, Unavailable
from trolleyfs.model import InstanceRef, Query, QueryLevel, SeriesRef
from trolleyfs.retrieve.cget import CGet
from trolleyfs.search.cfind import FIND_CONTEXTS, DicomQR, _find_blocking
from trolleyfs.transport.dimse import Association
from trolleyfs.transport.dimse_data import query_dataset

pytestmark = pytest.mark.integration


@dataclass
class Catalog:
    """What the sample data holds, read from the files themselves."""

    studies: dict[str, pydicom.Dataset]  # study UID -> one of its instances
    series: dict[str, dict[str, pydicom.Dataset]]  # study UID -> series UID -> one instance
    instances: dict[str, dict[str, pydicom.Dataset]]  # series UID -> SOP UID -> instance
    files: dict[str, bytes]  # SOP UID -> Part-10 bytes


@pytest.fixture(scope="module")
def catalog(sample_files) -> Catalog:
    cat = Catalog({}, {}, {}, {})
    for data in sample_files:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        cat.studies.setdefault(ds.StudyInstanceUID, ds)
        cat.series.setdefault(ds.StudyInstanceUID, {}).setdefault(ds.SeriesInstanceUID, ds)
        cat.instances.setdefault(ds.SeriesInstanceUID, {})[ds.SOPInstanceUID] = ds
        cat.files[ds.SOPInstanceUID] = data
    return cat


# --------------------------------------------------------------------------- C-FIND


async def test_study_listing(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    studies = await DicomQR(server, server.search).find_studies(Query())
    assert {s.uid for s in studies} == set(catalog.studies)
    for s in studies:
        ds = catalog.studies[s.uid]
        assert s.attrs["StudyInstanceUID"] == s.uid
        assert s.attrs["PatientName"] == str(ds.PatientName)
        assert s.attrs["PatientID"] == ds.PatientID
        assert s.attrs["StudyDate"] == ds.StudyDate
        assert s.attrs["StudyDescription"] == ds.StudyDescription
        assert s.attrs["AccessionNumber"] == ds.AccessionNumber
        assert s.series is None  # a STUDY-level query does not go deeper
    if peer.kind == "orthanc":  # dcmqrscp's index does not keep these optional keys
        by_uid = {s.uid: s for s in studies}
        for uid, series in catalog.series.items():
            assert by_uid[uid].attrs["NumberOfStudyRelatedSeries"] == str(len(series))
            assert by_uid[uid].attrs["ModalitiesInStudy"] == next(iter(series.values())).Modality


async def test_series_and_instance_listing(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    qr = DicomQR(server, server.search)
    for study_uid, expected_series in catalog.series.items():
        series = await qr.find_series(study_uid)
        assert {s.uid for s in series} == set(expected_series)
        for s in series:
            ds = expected_series[s.uid]
            assert s.study_uid == study_uid
            assert s.attrs["Modality"] == ds.Modality
            assert s.attrs["SeriesNumber"] == str(ds.SeriesNumber)
            if peer.kind == "orthanc":  # dcmqrscp's index has no SeriesDescription
                assert s.attrs["SeriesDescription"] == ds.SeriesDescription
            instances = await qr.find_instances(study_uid, s.uid)
            expected = catalog.instances[s.uid]
            assert {i.uid for i in instances} == set(expected)
            for i in instances:
                assert (i.study_uid, i.series_uid) == (study_uid, s.uid)
                assert i.attrs["InstanceNumber"] == str(expected[i.uid].InstanceNumber)


async def test_wildcard_patient_name(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    qr = DicomQR(server, server.search)
    found = await qr.find_studies(Query(filters={"PatientName": "TEST*"}))
    expected = {uid for uid, ds in catalog.studies.items() if str(ds.PatientName).startswith("TEST")}
    assert {s.uid for s in found} == expected
    assert len(expected) == 4
    found = await qr.find_studies(Query(filters={"PatientName": "OTHER^DAV?"}))
    assert [s.attrs["PatientName"] for s in found] == ["OTHER^DAVE"]
    assert await qr.find_studies(Query(filters={"PatientName": "NOBODY*"})) == []


async def test_study_date_range(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    qr = DicomQR(server, server.search)

    def expect(lo: str, hi: str) -> set[str]:
        return {uid for uid, ds in catalog.studies.items() if lo <= ds.StudyDate <= hi}

    found = await qr.find_studies(Query(min_study_date=dt.date(2021, 1, 1), max_study_date=dt.date(2022, 12, 31)))
    assert {s.uid for s in found} == expect("20210101", "20221231")
    assert sorted(s.attrs["StudyDate"] for s in found) == ["20210304", "20220720"]
    found = await qr.find_studies(Query(min_study_date=dt.date(2023, 1, 1)))
    assert {s.uid for s in found} == expect("20230101", "99991231")
    assert len(found) == 2
    found = await qr.find_studies(Query(max_study_date=dt.date(2019, 9, 11)))
    assert [s.attrs["StudyDate"] for s in found] == ["20190911"]


async def test_limit_and_include_fields(peer: Peer) -> None:
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    qr = DicomQR(server, server.search)
    found = await qr.find_studies(Query(limit=2, include_fields=("PatientBirthDate", "StudyID")))
    assert len(found) == 2
    for s in found:
        assert s.attrs["PatientBirthDate"] == "19700101"
        assert s.attrs["StudyID"] in {"1", "2", "3", "4", "5"}
    # the association is still usable afterwards (the C-CANCEL did not leave it in a bad state)
    assert len(await qr.find_studies(Query())) == 5


async def test_deep_query_fills_series_and_instances(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    studies = await DicomQR(server, server.search).find_studies(
        Query(filters={"PatientID": "P002"}, level=QueryLevel.INSTANCE)
    )
    assert len(studies) == 1
    study = studies[0]
    assert study.series is not None
    assert {s.uid for s in study.series} == set(catalog.series[study.uid])
    for s in study.series:
        assert s.instances is not None
        assert {i.uid for i in s.instances} == set(catalog.instances[s.uid])


# --------------------------------------------------------------------------- C-GET


def _first_series(catalog: Catalog) -> SeriesRef:
    # the largest series: 12 instances
    series_uid = max(catalog.instances, key=lambda uid: len(catalog.instances[uid]))
    ds = next(iter(catalog.instances[series_uid].values()))
    return SeriesRef(ds.StudyInstanceUID, series_uid)


def _assert_same_object(data: bytes, expected: bytes) -> None:
    got, want = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(expected))
    assert got.SOPInstanceUID == want.SOPInstanceUID
    assert got.file_meta.MediaStorageSOPInstanceUID == want.SOPInstanceUID
    assert got.PixelData == want.PixelData
    assert got == want  # every element of the dataset
    # not just equal after decoding: the dataset bytes are the ones stored, untouched
    assert dataset_bytes(data) == dataset_bytes(expected)


async def test_cget_instance(peer: Peer, catalog: Catalog, request) -> None:
    server = peer.server()
    assert isinstance(server.retrieve, CGetEndpoint)
    ref = _first_series(catalog)
    uid = sorted(catalog.instances[ref.series_uid])[3]
    data = await CGet(server, server.retrieve).fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uid))
    _assert_same_object(data, catalog.files[uid])
    if peer.kind == "orthanc":
        stored = request.getfixturevalue("orthanc").instance_file(uid)
        # the dataset is byte for byte Orthanc's copy; the file meta is pynetdicom's (implementation UID etc.)
        assert dataset_bytes(data) == dataset_bytes(stored)


async def test_cget_series(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.retrieve, CGetEndpoint)
    ref = _first_series(catalog)
    got: dict[str, bytes] = {}
    async for uid, data in CGet(server, server.retrieve).fetch_series(ref, list(catalog.instances[ref.series_uid])):
        assert uid not in got
        got[uid] = data
    assert set(got) == set(catalog.instances[ref.series_uid])
    assert len(got) == 12
    for uid, data in got.items():
        _assert_same_object(data, catalog.files[uid])


async def test_cget_series_consumer_stops_early(peer: Peer, catalog: Catalog) -> None:
    """Leaving the iteration early aborts the C-GET; the next one works."""
    server = peer.server()
    assert isinstance(server.retrieve, CGetEndpoint)
    cget = CGet(server, server.retrieve)
    ref = _first_series(catalog)
    agen = cget.fetch_series(ref, [])
    try:
        async for _uid, _data in agen:
            break
    finally:
        await agen.aclose()
    uid = sorted(catalog.instances[ref.series_uid])[0]
    assert await cget.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uid)) == await cget.fetch_instance(
        InstanceRef(ref.study_uid, ref.series_uid, uid)
    )


async def test_cget_unknown(peer: Peer, catalog: Catalog) -> None:
    server = peer.server()
    assert isinstance(server.retrieve, CGetEndpoint)
    cget = CGet(server, server.retrieve)
    ref = _first_series(catalog)
    with pytest.raises(NotFound):
        await cget.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, "1.2.3.4.5.6.7"))
    assert [x async for x in cget.fetch_series(SeriesRef(ref.study_uid, "1.2.3.4.5.6.7"), [])] == []


# --------------------------------------------------------------------------- failures


async def test_cfind_failure_status_is_an_error(peer: Peer) -> None:
    """A failure status from the peer raises; it is never an empty listing."""
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    bogus = query_dataset("NOSUCHLEVEL", {}, ("StudyInstanceUID",))
    async with Association(server, server.search, "bogus search", FIND_CONTEXTS) as a:
        with pytest.raises(ProtocolError, match=r"C-FIND failed: status 0xC"):
            await a.call(_find_blocking, bogus, None, "StudyInstanceUID", server.name, "bogus search")
        # the association survives a failed C-FIND
        good = query_dataset("STUDY", {"PatientID": "P004"}, ("StudyInstanceUID",))
        assert len(await a.call(_find_blocking, good, None, "StudyInstanceUID", server.name, "study search")) == 1


async def test_dcmqrscp_strict_hierarchy_failure(dcmqrscp: Dcmqrscp) -> None:
    """dcmqrscp refuses a SERIES query without the study's UID (0xC000): an error, not nothing."""
    peer = Peer("dcmqrscp", dcmqrscp.host, dcmqrscp.port, dcmqrscp.aet)
    server = peer.server()
    assert isinstance(server.search, DicomQrEndpoint)
    async with Association(server, server.search, "series search", FIND_CONTEXTS) as a:
        with pytest.raises(ProtocolError, match="0xC000"):
            await a.call(
                _find_blocking,
                query_dataset("SERIES", {}, ("SeriesInstanceUID",)),
                None,
                "SeriesInstanceUID",
                server.name,
                "x",
            )


async def test_unknown_called_aet_is_access_denied(dcmqrscp: Dcmqrscp, catalog: Catalog) -> None:
    async with trio.open_nursery() as nursery:
        fwd = await nursery.start(CountingForwarder(dcmqrscp.host, dcmqrscp.port).run)
        peer = Peer("dcmqrscp", "127.0.0.1", fwd.port, dcmqrscp.aet)
        server = peer.server(called_aet="NOT-THERE", retries=2)
        assert isinstance(server.search, DicomQrEndpoint) and isinstance(server.retrieve, CGetEndpoint)
        with pytest.raises(AccessDenied, match="Called AE title not recognised") as info:
            await DicomQR(server, server.search).find_studies(Query())
        assert info.value.server == server.name and info.value.what == "study search"
        ref = _first_series(catalog)
        with pytest.raises(AccessDenied):
            await CGet(server, server.retrieve).fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, "1.2"))
        assert fwd.connections == 2  # one association each: rejections are not retried
        nursery.cancel_scope.cancel()


async def test_connection_refused_is_unavailable(catalog: Catalog) -> None:
    peer = Peer("nobody", "127.0.0.1", free_port(), "ANY-SCP")  # nothing listens there
    server = peer.server(retries=1)
    assert isinstance(server.search, DicomQrEndpoint) and isinstance(server.retrieve, CGetEndpoint)
    with pytest.raises(Unavailable, match="cannot connect"):
        await DicomQR(server, server.search).find_studies(Query())
    with pytest.raises(Unavailable, match="cannot connect"):
        await DicomQR(server, server.search).find_series("1.2.3")
    ref = _first_series(catalog)
    with pytest.raises(Unavailable, match="cannot connect"):
        async for _ in CGet(server, server.retrieve).fetch_series(ref, []):
            pass


async def test_concurrent_reads_share_the_limit(peer: Peer, catalog: Catalog) -> None:
    """More reads than max_connections at once: all succeed, queued on the limiter."""
    server = peer.server()
    assert isinstance(server.retrieve, CGetEndpoint)
    cget = CGet(server, server.retrieve)
    ref = _first_series(catalog)
    uids = sorted(catalog.instances[ref.series_uid])
    got: dict[str, bytes] = {}

    async def one(uid: str) -> None:
        got[uid] = await cget.fetch_instance(InstanceRef(ref.study_uid, ref.series_uid, uid))

    async with trio.open_nursery() as nursery:
        for uid in uids:
            nursery.start_soon(one, uid)
    assert set(got) == set(uids)
    for uid in uids:
        _assert_same_object(got[uid], catalog.files[uid])
