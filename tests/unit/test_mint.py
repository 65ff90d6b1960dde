"""MINT: parsing the recorded Vitrea answers, the request a query becomes, and
the mapping of HTML/garbage answers onto errors (httpx.MockTransport serving
the recorded bodies)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import pytest
import trio

from trolleyfs.endpoints import Server, UrlEndpoint
from trolleyfs.errors import AccessDenied, ProtocolError, Unavailable
from trolleyfs.model import Query, QueryLevel
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.search.mint import Mint, MintParseError, build_params, fields_for, parse_response, tag_keyword
from trolleyfs.transport.http import HttpEndpoint

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "recorded"
STUDY_UID = "1.2.340.114850.2.857.2.793263.2.125336546.1"
# in mint_instance_level_vitrea.xml
STUDY2 = "1.2.840.114350.2.357.2.798268.2.179547197.1"
SERIES2A = "1.2.40.0.13.1.163465030149720932479900457417358837660"
SERIES2B = "1.3.12.2.1107.5.2.41.169813.2022020609132715200707115.0.0.0"


def recorded(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


# ------------------------------------------------------------ recorded answers


def test_instance_level_recording_counts():
    studies = parse_response(recorded("mint_instance_level_vitrea.xml"), QueryLevel.INSTANCE)
    assert len(studies) == 1
    study = studies[0]
    # the study attrs come after the 7 <series> in the file
    assert study.uid == "1.2.840.114350.2.357.2.798268.2.179547197.1"
    assert study.attrs == {"StudyInstanceUID": study.uid}
    assert study.series is not None and len(study.series) == 7
    instances = [i for s in study.series for i in s.instances or []]
    assert len(instances) == 154
    assert len({i.uid for i in instances}) == 154
    assert all(s.attrs["SeriesInstanceUID"] == s.uid and s.study_uid == study.uid for s in study.series)
    assert study.series[0].instances is not None
    first = study.series[0].instances[0]
    assert first.uid == "1.2.40.0.13.1.298894418449568752050683650986986208309"
    assert first.attrs["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert first.study_uid == study.uid and first.series_uid == study.series[0].uid
    assert {i.attrs["TransferSyntaxUID"] for i in instances} <= {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70"}


def test_instance_level_recording_parsed_shallower_leaves_levels_unfilled():
    studies = parse_response(recorded("mint_instance_level_vitrea.xml"), QueryLevel.SERIES)
    assert studies[0].series is not None and len(studies[0].series) == 7
    assert all(s.instances is None for s in studies[0].series)
    assert parse_response(recorded("mint_instance_level_vitrea.xml"), QueryLevel.STUDY)[0].series is None


def test_study_level_recording_survives_bad_encoding_and_merges_duplicates():
    body = recorded("mint_study_level_vitrea.xml")
    assert b"encoding='UTF-3'" in body
    studies = parse_response(body, QueryLevel.STUDY)
    assert len(studies) == 1  # one StudyInstanceUID under three studyUUIDs
    assert studies[0].uid == STUDY_UID
    assert studies[0].attrs == {"PatientID": "1892052", "PatientName": "TEST^K.J.M.", "StudyInstanceUID": STUDY_UID}
    assert studies[0].series is None


def test_series_level_recording_merges_series_of_duplicates():
    studies = parse_response(recorded("mint_series_level_vitrea.xml"), QueryLevel.SERIES)
    assert len(studies) == 1
    series = studies[0].series
    assert series is not None
    assert [s.uid for s in series] == [
        "1.2.40.0.13.1.31997853020103855051756062351916846110",
        "1.2.840.113619.2.239.1783.1568025913.0.105",
        "1.2.840.113619.2.239.1783.1568025913.0.76",  # `<attr  tag=` (two spaces) in the file
        "1.2.40.0.13.1.202066129828111990737107018349786560571",
        "1.2.840.113663.1500.1.460388269.2.1.20201105.84519.348",
    ]
    assert all(s.instances is None for s in series)
    assert studies[0].attrs["PatientName"] == "BEELDENZORG^W^I L"


def test_small_instance_level_recording():
    studies = parse_response(recorded("mint_instance_level_small_vitrea.xml"), QueryLevel.INSTANCE)
    assert len(studies) == 1
    study = studies[0]
    assert study.attrs["NumberOfStudyRelatedInstances"] == "200"
    assert study.attrs["PatientBirthDate"] == "1900"  # invalid DA kept as sent
    assert [len(s.instances or []) for s in study.series or []] == [1, 13]


def test_missing_val_sequences_multivalues_and_unknown_tags():
    body = b"""<?xml version="1.0"?><studySearchResults xmlns="http://medical.nema.org/mint">
    <study studyUUID="x"><series><attr tag="0020000e" vr="UI" val="1.2.3 " /></series>
      <attr tag="00080090" vr="PN" />
      <attr tag="00081032" vr="SQ"><item><attr tag="00100010" vr="PN" val="INNER^NAME"/></item></attr>
      <attr tag="00080061" vr="CS" val="CT\\MR" />
      <attr tag="00091001" vr="LO" val="private " />
      <attr tag="zz" vr="LO" val="bad tag" />
      <attr tag="0020000d" vr="UI" val="1.2 " />
      <attr tag="0020000d" vr="UI" val="9.9" />
    </study></studySearchResults>"""
    (study,) = parse_response(body, QueryLevel.SERIES)
    assert study.uid == "1.2"  # padding stripped, first occurrence kept
    assert study.attrs["ReferringPhysicianName"] == ""
    assert study.attrs["ProcedureCodeSequence"] == ""
    assert "PatientName" not in study.attrs  # sequence items do not leak into the study
    assert study.attrs["ModalitiesInStudy"] == "CT\\MR"
    assert study.attrs["00091001"] == "private"
    assert study.series is not None and study.series[0].uid == "1.2.3"


def test_study_without_uid_is_skipped_and_empty_result_is_empty():
    body = (
        b'<studySearchResults xmlns="http://medical.nema.org/mint">'
        b'<study><attr tag="00100010" vr="PN" val="A"/></study></studySearchResults>'
    )
    assert parse_response(body, QueryLevel.STUDY) == []
    assert parse_response(b"<studySearchResults xmlns='http://medical.nema.org/mint'/>", QueryLevel.STUDY) == []


@pytest.mark.parametrize(
    "body",
    [
        recorded("mint_401_jetty.html"),
        recorded("mint_error_500_jetty.html"),
        b"",
        b"<studySearchResults><study>",  # truncated
        b'{"studies": []}',
        b"<?xml version='1.0'?><other/>",
        # entity expansion: refused before anything is expanded
        b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<studySearchResults>&b;</studySearchResults>",
        # external entity: never fetched
        b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<studySearchResults>&x;</studySearchResults>",
    ],
)
def test_not_mint_xml_is_a_parse_error(body):
    with pytest.raises(MintParseError):
        parse_response(body, QueryLevel.STUDY)


def test_tag_keyword():
    assert tag_keyword("0020000d") == "StudyInstanceUID"
    assert tag_keyword("0020000D") == "StudyInstanceUID"
    assert tag_keyword("00020010") == "TransferSyntaxUID"
    assert tag_keyword("00091001") == "00091001"
    assert tag_keyword("nothex") == ""


# ------------------------------------------------------------ requests


def test_params_as_dicomtrolley_sends_them():
    q = Query(
        filters={"PatientName": "B*", "ModalitiesInStudy": "CT"},
        min_study_date=dt.date(2020, 3, 1),
        max_study_date=dt.date(2020, 3, 5),
        include_fields=("InstitutionName",),
        level=QueryLevel.SERIES,
        limit=10,
    )
    params = build_params(q)
    assert params[:5] == [
        ("PatientName", "B*"),
        ("ModalitiesInStudy", "CT"),
        ("min_study_date", "20200301"),
        ("max_study_date", "20200305"),
        ("QueryLevel", "SERIES"),
    ]
    fields = dict(params)["IncludeFields"].split(",")
    assert {"StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "InstitutionName"} <= set(fields)
    assert "SOPInstanceUID" not in fields
    assert params[-1] == ("limit", "10")


def test_open_date_ranges_send_both_ends():
    lo = dict(build_params(Query(min_study_date=dt.date(2021, 1, 2))))
    assert (lo["min_study_date"], lo["max_study_date"]) == ("20210102", "99991231")
    hi = dict(build_params(Query(max_study_date=dt.date(2021, 1, 2))))
    assert (hi["min_study_date"], hi["max_study_date"]) == ("19000101", "20210102")
    assert "min_study_date" not in dict(build_params(Query()))
    assert "limit" not in dict(build_params(Query()))


def test_fields_per_level():
    assert "SeriesInstanceUID" not in fields_for(QueryLevel.STUDY)
    assert "SOPInstanceUID" in fields_for(QueryLevel.INSTANCE)
    assert fields_for(QueryLevel.STUDY, ("PatientID", "X")).count("PatientID") == 1


# ------------------------------------------------------------ the searcher over HTTP


def _mint(handler) -> tuple[Mint, httpx.AsyncClient]:
    server = Server(
        "vitrea",
        Endpoint("mint", url="http://pacs.test/mint"),
        Endpoint("wado-uri", url="http://pacs.test/wado"),
        timeout=5,
        retries=0,
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    assert isinstance(server.search, UrlEndpoint)
    return Mint(HttpEndpoint(server, server.search.url or "", client)), client


async def _run(handler, call):
    mint, client = _mint(handler)
    try:
        return await call(mint)
    finally:
        await mint.aclose()
        await client.aclose()


async def test_request_url_keeps_wildcards_and_carets():
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(
            200, content=recorded("mint_study_level_vitrea.xml"), headers={"Content-Type": "application/xml"}
        )

    studies = await _run(handler, lambda m: m.find_studies(Query(filters={"PatientName": "TEST^K*"})))
    assert [s.uid for s in studies] == [STUDY_UID]
    (url,) = seen
    assert url.path == "/mint/studies"
    raw = url.query.decode()
    assert raw.startswith("PatientName=TEST^K*&QueryLevel=STUDY&IncludeFields=StudyInstanceUID,")
    assert "%2A" not in raw and "%5E" not in raw


async def test_find_series_and_instances_use_study_uid_and_levels():
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        name = "mint_series_level_vitrea.xml" if params["QueryLevel"] == "SERIES" else "mint_instance_level_vitrea.xml"
        return httpx.Response(200, content=recorded(name), headers={"Content-Type": "text/xml;charset=UTF-8"})

    series = await _run(handler, lambda m: m.find_series(STUDY_UID))
    assert len(series) == 5 and all(s.study_uid == STUDY_UID for s in series)
    assert seen[0]["StudyInstanceUID"] == STUDY_UID and seen[0]["QueryLevel"] == "SERIES"

    study_uid = "1.2.840.114350.2.357.2.798268.2.179547197.1"
    series_uid = "1.2.40.0.13.1.163465030149720932479900457417358837660"
    instances = await _run(handler, lambda m: m.find_instances(study_uid, series_uid))
    assert len(instances) == 7 and all(i.series_uid == series_uid for i in instances)
    assert seen[1]["StudyInstanceUID"] == study_uid and seen[1]["QueryLevel"] == "INSTANCE"
    assert "SeriesInstanceUID" not in seen[1]  # not a MINT query key: filtered here
    assert await _run(handler, lambda m: m.find_instances(study_uid, "1.2.3.unknown")) == []


async def test_find_instances_serves_sibling_series_from_one_request():
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            200, content=recorded("mint_instance_level_vitrea.xml"), headers={"Content-Type": "application/xml"}
        )

    async def two_series(m: Mint):
        return await m.find_instances(STUDY2, SERIES2A), await m.find_instances(STUDY2, SERIES2B)

    a, b = await _run(handler, two_series)
    assert calls == 1
    assert len(a) == 7 and len(b) > 0 and not {i.uid for i in a} & {i.uid for i in b}

    async def concurrently(m: Mint):
        got: dict[str, int] = {}

        async def one(series_uid: str) -> None:
            got[series_uid] = len(await m.find_instances(STUDY2, series_uid))

        async with trio.open_nursery() as nursery:
            for series_uid in (SERIES2A, SERIES2B, SERIES2A):
                nursery.start_soon(one, series_uid)
        assert not m._instance_locks  # dropped when nobody waits
        return got

    calls = 0
    got = await _run(handler, concurrently)
    assert calls == 1  # the others waited for the first search
    assert got[SERIES2A] == 7 and got[SERIES2B] == len(b)


@pytest.mark.parametrize(
    ("status", "name", "ctype", "error"),
    [
        (401, "mint_401_jetty.html", "text/html;charset=iso-8859-1", AccessDenied),
        (500, "mint_error_500_jetty.html", "text/html;charset=iso-8859-1", Unavailable),
        (200, "mint_401_jetty.html", "text/html;charset=iso-8859-1", ProtocolError),
        (200, "mint_401_jetty.html", "application/xml", ProtocolError),  # HTML behind an XML label
        (200, "mint_error_500_jetty.html", "", ProtocolError),
        (200, "qido_rs_study_level_vitrea.json", "application/json", ProtocolError),
    ],
)
async def test_error_pages_are_errors_not_empty_listings(status, name, ctype, error):
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": ctype} if ctype else {}
        return httpx.Response(status, content=recorded(name), headers=headers)

    with pytest.raises(error) as info:
        await _run(handler, lambda m: m.find_studies(Query()))
    assert info.value.server == "vitrea" and info.value.what == "MINT study search"
    assert type(info.value) is error


@pytest.mark.parametrize("body", [b"", b"<studySearchResults><study>", b"<?xml version='1.0'?><result/>"])
async def test_unparseable_xml_is_protocol_error(body):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": "application/xml"})

    with pytest.raises(ProtocolError, match="MINT"):
        await _run(handler, lambda m: m.find_series("1.2.3"))


async def test_limit_is_enforced_client_side_too():
    body = (
        b"<studySearchResults xmlns='http://medical.nema.org/mint'>"
        + b"".join(b"<study><attr tag='0020000d' vr='UI' val='1.%d'/></study>" % i for i in range(5))
        + b"</studySearchResults>"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["limit"] == "3"
        return httpx.Response(200, content=body, headers={"Content-Type": "application/xml"})

    studies = await _run(handler, lambda m: m.find_studies(Query(limit=3)))
    assert [s.uid for s in studies] == ["1.0", "1.1", "1.2"]


def test_characters_xml_forbids_are_replaced_and_the_values_kept(caplog):
    """Java servers write control characters found in DICOM values as they are
    (raw, or as character references): one bad value, not a broken document."""
    body = (RECORDED / "mint_study_level_vitrea.xml").read_bytes().decode("utf-8", "replace")
    body = body.replace('vr="LO" val="', 'vr="LO" val="\x0b', 1).replace('vr="PN" val="', 'vr="PN" val="&#x1;', 1)
    clean = parse_response((RECORDED / "mint_study_level_vitrea.xml").read_bytes(), QueryLevel.STUDY)
    got = parse_response(body.encode("utf-8"), QueryLevel.STUDY)
    assert [s.uid for s in got] == [s.uid for s in clean]
    changed = [
        (a, b)
        for s, c in zip(got, clean, strict=True)
        for a, b in zip(s.attrs.values(), c.attrs.values(), strict=True)
        if a != b
    ]
    assert sorted(a for a, _ in changed) == sorted(["\ufffd" + b for _, b in changed])
    assert len(changed) == 2
    assert len([r for r in caplog.records if "XML 1.0 forbids" in r.getMessage()]) == 1
