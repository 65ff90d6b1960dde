"""QIDO-RS over httpx.MockTransport: paging, empty answers, invalid values,
error pages, and the query string real servers need."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from trolleyfs.config import parse
from trolleyfs.errors import AccessDenied, NotFound, ProtocolError, Unavailable
from trolleyfs.model import Query
from trolleyfs.search.qido import QidoRS
from trolleyfs.transport.http import HttpEndpoint

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded"
CFG = """
[servers.pacs]
search   = { protocol = "qido-rs", url = "http://pacs/dicom-web", page_size = 2 }
retrieve = { protocol = "wado-rs", url = "http://pacs/dicom-web" }
retries = 1
timeout = 5
"""


def study(uid: str, name: str = "DOE^J") -> dict:
    return {"0020000D": {"vr": "UI", "Value": [uid]}, "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
            "00080061": {"vr": "CS", "Value": ["CT", "MR"]}}  # fmt: skip


def qido(handler) -> tuple[QidoRS, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    server = parse(CFG, "t.toml").servers["pacs"]
    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return QidoRS(HttpEndpoint(server, server.search.url, client), page_size=2), seen


async def test_pages_until_a_short_page_and_keeps_wildcards_unencoded():
    uids = [f"1.2.{i}" for i in range(5)]

    def handler(req: httpx.Request) -> httpx.Response:
        off, lim = int(req.url.params["offset"]), int(req.url.params["limit"])
        return httpx.Response(200, json=[study(u) for u in uids[off : off + lim]],
                              headers={"content-type": "application/dicom+json"})  # fmt: skip

    q, seen = qido(handler)
    got = await q.find_studies(Query(filters={"PatientName": "DOE^J*"}, include_fields=("PatientBirthDate",)))
    assert [s.uid for s in got] == uids
    assert len(seen) == 3
    raw = seen[0].url.query.decode()
    assert "PatientName=DOE^J*" in raw and "includefield=PatientBirthDate" in raw
    assert got[0].attrs["PatientName"] == "DOE^J" and got[0].attrs["ModalitiesInStudy"] == "CT\\MR"


async def test_date_range_and_limit():
    import datetime as dt

    def handler(req: httpx.Request) -> httpx.Response:
        assert req.url.params["StudyDate"] == "20200101-20201231"
        return httpx.Response(200, json=[study("1.1"), study("1.2")], headers={"content-type": "application/json"})

    q, seen = qido(handler)
    got = await q.find_studies(Query(min_study_date=dt.date(2020, 1, 1), max_study_date=dt.date(2020, 12, 31), limit=1))
    assert len(seen) == 1 and seen[0].url.params["limit"] == "1"
    assert len(got) <= 2


@pytest.mark.parametrize("status, body", [(204, b""), (200, b""), (200, b"[]")])
async def test_no_results(status, body):
    q, _ = qido(lambda req: httpx.Response(status, content=body, headers={"content-type": "application/dicom+json"}))
    assert await q.find_studies(Query()) == []


@pytest.mark.parametrize(
    "status, ctype, body, error",
    [
        (200, "text/html", b"<html><title>Login</title></html>", ProtocolError),
        (200, "application/json", b"{not json", ProtocolError),
        (200, "application/json", b'{"a": 1}', ProtocolError),
        (401, "text/html", b"<html><title>Error 401</title></html>", AccessDenied),
        (403, "text/plain", b"no", AccessDenied),
        (404, "text/plain", b"no", NotFound),
        (500, "text/html", (RECORDED / "mint_error_500_jetty.html").read_bytes(), Unavailable),
    ],
)
async def test_errors_are_errors_not_empty_folders(status, ctype, body, error):
    q, seen = qido(lambda req: httpx.Response(status, content=body, headers={"content-type": ctype}))
    with pytest.raises(error) as exc:
        await q.find_studies(Query())
    assert "pacs" in str(exc.value) and "study search" in str(exc.value)
    assert len(seen) == (2 if status == 500 else 1)  # 5xx retried (retries = 1), the rest not


async def test_recorded_vitrea_answer_with_invalid_values_lists():
    body = (RECORDED / "qido_rs_study_level_vitrea.json").read_bytes()
    q, _ = qido(lambda req: httpx.Response(200, content=body, headers={"content-type": "application/dicom+json"}))
    q.page_size = 1000
    got = await q.find_studies(Query())
    assert len(got) == len({s.uid for s in got}) == len({o["0020000D"]["Value"][0] for o in json.loads(body)})
    assert all(s.uid for s in got)


async def test_series_and_instances_paths():
    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if path.endswith("/instances"):
            return httpx.Response(200, json=[{"00080018": {"vr": "UI", "Value": ["9.9"]},
                                              "00200013": {"vr": "IS", "Value": [3]}}])  # fmt: skip
        return httpx.Response(200, json=[{"0020000E": {"vr": "UI", "Value": ["2.2"]},
                                          "00200011": {"vr": "IS", "Value": [1]}}])  # fmt: skip

    q, seen = qido(handler)
    (se,) = await q.find_series("1.1")
    (inst,) = await q.find_instances("1.1", "2.2")
    assert seen[0].url.path == "/dicom-web/studies/1.1/series"
    assert seen[1].url.path == "/dicom-web/studies/1.1/series/2.2/instances"
    assert (se.uid, se.attrs["SeriesNumber"], inst.uid, inst.attrs["InstanceNumber"]) == ("2.2", "1", "9.9", "3")
