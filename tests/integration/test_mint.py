"""Mint against the MINT test server (tests/servers/mint.py) serving the sample
data: what it lists must be exactly the sample data, filters must reach the
server as Vitrea expects them, and error pages must become errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import httpx
import pytest

from tests.servers.base import SampleIndex
from tests.servers.mint import MintServer
from trolleyfs.endpoints import Server
from trolleyfs.errors import AccessDenied, NotFound, ProtocolError, Unavailable
from trolleyfs.model import Query, QueryLevel, Study
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.search.mint import Mint
from trolleyfs.transport.http import HttpEndpoint
from trolleyfs.wiring import make_client


@pytest.fixture(scope="module")
def index(sample_files) -> SampleIndex:
    return SampleIndex(sample_files)


@pytest.fixture(scope="module")
def server(index):
    srv = MintServer(index).start()
    try:
        yield srv
    finally:
        srv.stop()


def _config(url: str, retries: int = 0) -> Server:
    return Server("mintpacs", Endpoint("mint", url=url), Endpoint("wado-uri", url=url), timeout=5.0, retries=retries)


def _open(url: str, retries: int = 0) -> tuple[Mint, httpx.AsyncClient]:
    config = _config(url, retries)
    client = make_client(config)
    return Mint(HttpEndpoint(config, url, client)), client


@pytest.fixture
def quirky(server) -> Iterator[MintServer]:
    """The shared server, for a test that turns on quirks or failures: they are
    turned off again afterwards, and its request log starts empty."""
    server.requests.clear()
    try:
        yield server
    finally:
        server.fail_with, server.fail_times = None, None
        server.split_duplicates = server.bad_declaration = False


@pytest.fixture
async def mint(server) -> AsyncIterator[Mint]:
    m, client = _open(server.url)
    try:
        yield m
    finally:
        await m.aclose()
        await client.aclose()


# ------------------------------------------------------------ expected values, from the sample files


def expected_tree(index: SampleIndex) -> dict[str, dict[str, set[str]]]:
    return {
        study: {series: {ds.SOPInstanceUID for ds in dss} for series, dss in index.series(study).items()}
        for study in index.studies()
    }


def tree_of(studies: list[Study]) -> dict[str, dict[str, set[str]]]:
    out: dict[str, dict[str, set[str]]] = {}
    for study in studies:
        assert study.series is not None
        out[study.uid] = {}
        for s in study.series:
            assert s.instances is not None
            assert len({i.uid for i in s.instances}) == len(s.instances)  # no duplicates
            out[study.uid][s.uid] = {i.uid for i in s.instances}
    return out


def last_query(server: MintServer) -> str:
    return server.requests[-1].raw_query


# ------------------------------------------------------------ listings equal the sample data


async def test_studies_equal_sample_data(mint, index):
    studies = await mint.find_studies(Query())
    expected = index.studies()
    assert {s.uid for s in studies} == set(expected)
    assert len(studies) == len(expected)
    for study in studies:
        dss = expected[study.uid]
        first = dss[0]
        assert study.series is None
        assert study.attrs["StudyInstanceUID"] == study.uid
        assert study.attrs["PatientName"] == str(first.PatientName)
        assert study.attrs["PatientID"] == first.PatientID
        assert study.attrs["StudyDate"] == first.StudyDate
        assert study.attrs["StudyDescription"] == first.StudyDescription
        assert study.attrs["AccessionNumber"] == first.AccessionNumber
        assert study.attrs["ModalitiesInStudy"] == first.Modality
        assert study.attrs["NumberOfStudyRelatedInstances"] == str(len(dss))
        assert study.attrs["NumberOfStudyRelatedSeries"] == str(len({d.SeriesInstanceUID for d in dss}))


async def test_series_and_instances_equal_sample_data(mint, index):
    for study_uid in index.studies():
        series = await mint.find_series(study_uid)
        expected = index.series(study_uid)
        assert {s.uid for s in series} == set(expected)
        for s in series:
            dss = expected[s.uid]
            assert s.study_uid == study_uid and s.instances is None
            assert s.attrs["SeriesNumber"] == str(dss[0].SeriesNumber)
            assert s.attrs["Modality"] == dss[0].Modality
            assert s.attrs["SeriesDescription"] == dss[0].SeriesDescription
            assert s.attrs["NumberOfSeriesRelatedInstances"] == str(len(dss))
            instances = await mint.find_instances(study_uid, s.uid)
            by_uid = {ds.SOPInstanceUID: ds for ds in dss}
            assert sorted(i.uid for i in instances) == sorted(by_uid)
            for inst in instances:
                ds = by_uid[inst.uid]
                assert (inst.study_uid, inst.series_uid) == (study_uid, s.uid)
                assert inst.attrs["InstanceNumber"] == str(ds.InstanceNumber)
                assert inst.attrs["SOPClassUID"] == ds.SOPClassUID
                assert inst.attrs["TransferSyntaxUID"] == ds.file_meta.TransferSyntaxUID


async def test_instance_level_search_fills_the_whole_tree(mint, index, server):
    studies = await mint.find_studies(Query(level=QueryLevel.INSTANCE))
    assert tree_of(studies) == expected_tree(index)
    assert "QueryLevel=INSTANCE" in last_query(server)


async def test_series_level_search_fills_series_only(mint, index):
    studies = await mint.find_studies(Query(filters={"PatientID": "P002"}, level=QueryLevel.SERIES))
    (study,) = studies
    assert study.series is not None
    assert {s.uid for s in study.series} == set(index.series(study.uid))
    assert all(s.instances is None for s in study.series)
    assert {s.attrs["SeriesDescription"] for s in study.series} == {"T1 sag", "T2 ax", "FLAIR"}


async def test_study_split_over_several_mint_studies_is_merged(quirky, mint, index):
    quirky.split_duplicates = True
    studies = await mint.find_studies(Query(level=QueryLevel.INSTANCE))
    assert tree_of(studies) == expected_tree(index)
    assert quirky.requests[-1].raw_query.count("QueryLevel=INSTANCE") == 1
    study_uid = next(uid for uid in index.studies() if len(index.series(uid)) == 3)
    assert {s.uid for s in await mint.find_series(study_uid)} == set(index.series(study_uid))
    plain = await mint.find_studies(Query())
    assert sorted(s.uid for s in plain) == sorted(index.studies())


async def test_bad_encoding_declaration_is_survived(quirky, mint):
    quirky.bad_declaration = True
    studies = await mint.find_studies(Query(filters={"PatientName": "TEST^BOB"}))
    assert [s.attrs["PatientID"] for s in studies] == ["P002"]


async def test_requested_empty_type2_attribute_arrives_without_val(mint, server):
    studies = await mint.find_studies(Query(filters={"PatientID": "P004"}, include_fields=("ReferringPhysicianName",)))
    (study,) = studies
    assert study.attrs["ReferringPhysicianName"] == ""
    assert "ReferringPhysicianName" in last_query(server)


# ------------------------------------------------------------ filters


async def test_wildcards_reach_the_server_unencoded(mint, index, server):
    alice = await mint.find_studies(Query(filters={"PatientName": "TEST^A*"}))
    assert sorted(s.attrs["StudyDate"] for s in alice) == ["20210304", "20230115"]
    assert last_query(server).startswith("PatientName=TEST^A*&")
    tests = await mint.find_studies(Query(filters={"PatientName": "TEST*"}))
    assert {s.attrs["PatientID"] for s in tests} == {"P001", "P002", "P003"}
    assert len(tests) == 4
    assert await mint.find_studies(Query(filters={"PatientName": "NOBODY*"})) == []
    one = await mint.find_studies(Query(filters={"PatientName": "?EST^BO?"}))
    assert [s.attrs["PatientID"] for s in one] == ["P002"]


async def test_modality_and_uid_filters(mint, index):
    mr = await mint.find_studies(Query(filters={"ModalitiesInStudy": "MR"}))
    assert {s.attrs["PatientID"] for s in mr} == {"P002", "P004"}
    uid = next(iter(index.studies()))
    (study,) = await mint.find_studies(Query(filters={"StudyInstanceUID": uid}))
    assert study.uid == uid


async def test_date_range(mint, server):
    got = await mint.find_studies(Query(min_study_date=dt.date(2021, 1, 1), max_study_date=dt.date(2022, 12, 31)))
    assert sorted(s.attrs["StudyDate"] for s in got) == ["20210304", "20220720"]
    assert "min_study_date=20210101&max_study_date=20221231" in last_query(server)
    later = await mint.find_studies(Query(min_study_date=dt.date(2023, 1, 15)))
    assert sorted(s.attrs["StudyDate"] for s in later) == ["20230115", "20240202"]
    earlier = await mint.find_studies(Query(max_study_date=dt.date(2019, 9, 11)))
    assert [s.attrs["StudyDate"] for s in earlier] == ["20190911"]


async def test_limit(mint, server, index):
    got = await mint.find_studies(Query(limit=2))
    assert len(got) == 2
    assert "limit=2" in last_query(server)
    assert {s.uid for s in got} < set(index.studies())
    assert len(await mint.find_studies(Query(limit=100))) == len(index.studies())


async def test_filter_and_level_combined(mint, index):
    studies = await mint.find_studies(
        Query(filters={"PatientName": "TEST^A*"}, min_study_date=dt.date(2022, 1, 1), level=QueryLevel.INSTANCE)
    )
    (study,) = studies
    assert study.attrs["StudyDate"] == "20230115"
    assert tree_of(studies) == {study.uid: expected_tree(index)[study.uid]}


# ------------------------------------------------------------ errors


E = TypeVar("E", bound=Exception)


async def _expect(url: str, error: type[E], retries: int = 0) -> E:
    m, client = _open(url, retries)
    try:
        with pytest.raises(error) as info:
            await m.find_studies(Query())
        assert type(info.value) is error
        return info.value
    finally:
        await m.aclose()
        await client.aclose()


async def test_401_page_is_access_denied(quirky):
    quirky.fail_with = 401
    exc = await _expect(quirky.url, AccessDenied)
    assert "401" in str(exc) and exc.server == "mintpacs"


async def test_500_page_is_unavailable_after_retries(quirky):
    quirky.fail_with = 500
    exc = await _expect(quirky.url, Unavailable, retries=1)
    assert "500" in str(exc)
    assert len(quirky.requests) == 2  # retried once


async def test_500_once_is_retried(quirky, index):
    quirky.fail_with, quirky.fail_times = 500, 1
    m, client = _open(quirky.url, retries=1)
    try:
        studies = await m.find_studies(Query())
        assert len(studies) == len(index.studies())
        assert len(quirky.requests) == 2
    finally:
        await m.aclose()
        await client.aclose()


async def test_html_with_200_is_protocol_error(quirky):
    quirky.fail_with = "html"
    exc = await _expect(quirky.url, ProtocolError)
    assert "HTML" in str(exc)


async def test_errors_also_on_series_and_instance_searches(quirky, index):
    quirky.fail_with = 401
    m, client = _open(quirky.url)
    try:
        study_uid = next(iter(index.studies()))
        with pytest.raises(AccessDenied):
            await m.find_series(study_uid)
        with pytest.raises(AccessDenied):
            await m.find_instances(study_uid, next(iter(index.series(study_uid))))
    finally:
        await m.aclose()
        await client.aclose()


async def test_wrong_url_is_not_found(server):
    await _expect(server.root_url + "/not/mint", NotFound)
