"""QIDO-RS over httpx.MockTransport: paging, empty answers, invalid values,
error pages, and the query string real servers need."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from trolleyfs.config import parse
from trolleyfs.endpoints import UrlEndpoint
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


def study(uid: str, name: str = "DOE^J") -> dict[str, Any]:
    return {
        "0020000D": {"vr": "UI", "Value": [uid]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
        "00080061": {"vr": "CS", "Value": ["CT", "MR"]},
    }


def qido(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[QidoRS, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    server = parse(CFG, "t.toml").servers["pacs"]
    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    assert isinstance(server.search, UrlEndpoint)
    return QidoRS(HttpEndpoint(server, server.search.url, client), page_size=2), seen


async def test_pages_until_a_short_page_and_keeps_wildcards_unencoded():
    uids = [f"1.2.{i}" for i in range(5)]

    def handler(req: httpx.Request) -> httpx.Response:
        off, lim = int(req.url.params["offset"]), int(req.url.params["limit"])
        return httpx.Response(
            200, json=[study(u) for u in uids[off : off + lim]], headers={"content-type": "application/dicom+json"}
        )

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


@pytest.mark.parametrize(("status", "body"), [(204, b""), (200, b""), (200, b"[]")])
async def test_no_results(status, body):
    q, _ = qido(lambda req: httpx.Response(status, content=body, headers={"content-type": "application/dicom+json"}))
    assert await q.find_studies(Query()) == []


@pytest.mark.parametrize(
    ("status", "ctype", "body", "error"),
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
            return httpx.Response(
                200, json=[{"00080018": {"vr": "UI", "Value": ["9.9"]}, "00200013": {"vr": "IS", "Value": [3]}}]
            )
        return httpx.Response(
            200, json=[{"0020000E": {"vr": "UI", "Value": ["2.2"]}, "00200011": {"vr": "IS", "Value": [1]}}]
        )

    q, seen = qido(handler)
    (se,) = await q.find_series("1.1")
    (inst,) = await q.find_instances("1.1", "2.2")
    assert seen[0].url.path == "/dicom-web/studies/1.1/series"
    assert seen[1].url.path == "/dicom-web/studies/1.1/series/2.2/instances"
    assert (se.uid, se.attrs["SeriesNumber"], inst.uid, inst.attrs["InstanceNumber"]) == ("2.2", "1", "9.9", "3")


# --------------------------------------------------------------------------- what real servers get wrong


def answer(rows: list[dict[str, Any]] | bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    body = rows if isinstance(rows, bytes) else json.dumps(rows).encode()
    return httpx.Response(200, content=body, headers={"content-type": "application/dicom+json", **(headers or {})})


async def test_attributes_with_bad_keys_are_left_out_once_and_the_study_kept(caplog):
    row = study("1.1") | {
        "ZZZZ0010": {"vr": "LO", "Value": ["x"]},
        "123456789012": {"vr": "LO", "Value": ["y"]},
        "0x00081030": {"vr": "LO", "Value": ["z"]},
        "1_2": {"vr": "LO", "Value": ["u"]},
        "00081030": {"vr": "LO", "Value": [["nested"]]},
    }
    q, _ = qido(lambda req: answer([row]))
    (got,) = await q.find_studies(Query())
    assert got.uid == "1.1" and got.attrs["PatientName"] == "DOE^J" and "StudyDescription" not in got.attrs
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "5 malformed attributes left out" in warnings[0]


async def test_deeply_nested_json_is_a_one_line_error():
    body = b'[{"0020000D": {"vr": "UI", "Value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}]"
    q, _ = qido(lambda req: answer(body))
    with pytest.raises(ProtocolError, match="nested too deeply") as exc:
        await q.find_studies(Query())
    assert "\n" not in str(exc.value)


async def test_control_characters_and_invalid_utf8_inside_values_keep_the_listing():
    body = json.dumps([study("1.1"), study("1.2")]).encode().replace(b"DOE^J", b"DOE\x01^J\xff", 1)
    q, _ = qido(lambda req: answer(body))
    got = await q.find_studies(Query())
    assert [s.uid for s in got] == ["1.1", "1.2"]
    assert got[0].attrs["PatientName"] == "DOE\x01^J\ufffd" and got[1].attrs["PatientName"] == "DOE^J"


async def test_limit_holds_when_the_server_ignores_limit_and_offset():
    q, seen = qido(lambda req: answer([study(f"1.{i}") for i in range(40)]))
    got = await q.find_studies(Query(limit=7))
    assert [s.uid for s in got] == [f"1.{i}" for i in range(7)] and len(seen) == 1


async def test_limit_counts_distinct_studies():
    """One row per instance (some servers): the limit is of studies."""
    rows = [study(f"1.{i // 10}") for i in range(100)]  # 10 rows per study
    q, _ = qido(lambda req: answer(rows))
    got = await q.find_studies(Query(limit=8))
    assert [s.uid for s in got] == [f"1.{i}" for i in range(8)]


def paged(
    rows: list[dict[str, Any]],
    cap: int | None = None,
    warning: bool = False,
    ignore_offset: bool = False,
    ignore_limit: bool = False,
):
    def handler(req: httpx.Request) -> httpx.Response:
        off = 0 if ignore_offset else int(req.url.params["offset"])
        lim = len(rows) if ignore_limit else int(req.url.params["limit"])
        page = rows[off : off + lim]
        headers = {}
        if cap is not None and len(page) > cap:
            page = page[:cap]
            if warning:
                headers["Warning"] = '299 pacs: "There are more results."'
        return answer(page, headers) if page else httpx.Response(204)

    return handler


async def test_a_silent_cap_is_found_by_one_more_request_and_remembered(caplog):
    caplog.set_level(logging.INFO, logger="trolleyfs.qido")
    rows = [study(f"1.{i}") for i in range(250)]
    q, seen = qido(paged(rows, cap=100))
    q.page_size = 1000
    got = await q.find_studies(Query())
    assert len(got) == 250
    assert [r.url.params["limit"] for r in seen] == ["1000", "1000", "100"]  # the cap learned on the 2nd page
    assert any("at most 100 results" in r.getMessage() for r in caplog.records)
    seen.clear()
    assert len(await q.find_studies(Query())) == 250
    assert [r.url.params["limit"] for r in seen] == ["100", "100", "100"]


async def test_a_short_page_proven_complete_needs_no_probe_again():
    rows = [study(f"1.{i}") for i in range(60)]
    q, seen = qido(paged(rows))
    q.page_size = 1000
    assert len(await q.find_studies(Query())) == 60 and len(seen) == 2  # 60 >= MIN_CAP_PROBE: one more asked
    seen.clear()
    assert len(await q.find_studies(Query())) == 60 and len(seen) == 1  # known complete at that length
    seen.clear()
    q2, seen2 = qido(paged(rows[:10]))
    q2.page_size = 1000
    assert len(await q2.find_studies(Query())) == 10 and len(seen2) == 1  # small answers are never probed


async def test_a_capped_page_with_a_warning_is_followed():
    rows = [study(f"1.{i}") for i in range(5)]
    q, seen = qido(paged(rows, cap=2, warning=True))
    q.page_size = 1000
    assert [s.uid for s in await q.find_studies(Query())] == [f"1.{i}" for i in range(5)]
    assert len(seen) == 3


async def test_ignored_offset_warns_only_when_studies_may_be_missing(caplog):
    rows = [study(f"1.{i}") for i in range(5)]
    q, _ = qido(paged(rows, ignore_offset=True, ignore_limit=True))  # sends everything, every time
    assert len(await q.find_studies(Query())) == 5
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    q, _ = qido(paged(rows, ignore_offset=True))  # pages of 2 (page_size), always the first two
    assert len(await q.find_studies(Query())) == 2
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "ignores the QIDO-RS offset" in warning and "may be incomplete" in warning
