"""RAD-69 envelopes: the request we send, the answers real servers send (the
recorded Vitrea error), faults, and how errors become exceptions."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import httpx
import pydicom
import pytest

from trolleyfs.endpoints import Server
from trolleyfs.errors import IgnoredError, NotFound, ProtocolError, Unavailable
from trolleyfs.model import InstanceRef, SeriesRef
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.retrieve.rad69 import Rad69
from trolleyfs.retrieve.rad69_soap import ACTION, RegistryError, build_request, cid_of, describe_errors, parse_envelope
from trolleyfs.transport.http import HttpEndpoint

RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded" / "rad69_error_missing_document_vitrea.xml"
MISSING = (
    "1.2.40.0.13.1.16930207878723102225780279777977199534.1",
    "1.2.40.0.13.1.58933371510581919046064437805732852473.1",
)
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://www.w3.org/2005/08/addressing",
    "iherad": "urn:ihe:rad:xdsi-b:2009",
    "ihe": "urn:ihe:iti:xds-b:2007",
}

SUCCESS = b"""<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope">
  <env:Header>
    <a:Action xmlns:a="http://www.w3.org/2005/08/addressing"
      env:mustUnderstand="true">urn:ihe:iti:2007:RetrieveDocumentSetResponse</a:Action>
  </env:Header>
  <env:Body>
    <RetrieveDocumentSetResponse xmlns="urn:ihe:iti:xds-b:2007" xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0">
      <rs:RegistryResponse status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>
      <DocumentResponse>
        <RepositoryUniqueId>1.3.6.1.4.1000</RepositoryUniqueId>
        <DocumentUniqueId>1.2.3.4.5.6.7</DocumentUniqueId>
        <HomeCommunityId/>
        <mimeType>application/dicom</mimeType>
        <Document><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include"
          href="cid:e6f6b279-b259-436e-8d9e-73df1d1157d1"/>
        </Document>
      </DocumentResponse>
      <DocumentResponse>
        <DocumentUniqueId> 1.2.3.4.5.6.8 </DocumentUniqueId>
        <Document><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="%s"/></Document>
      </DocumentResponse>
    </RetrieveDocumentSetResponse>
  </env:Body>
</env:Envelope>"""

SECOND_DOCUMENT = b'<Document><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="%s"/></Document>'
SUCCESS = SUCCESS.replace(b"%s", b"cid:1.urn%3Auuid%3AAB12%40apache.org")
SECOND_DOCUMENT = SECOND_DOCUMENT.replace(b"%s", b"cid:1.urn%3Auuid%3AAB12%40apache.org")

FAULT12 = b"""<?xml version="1.0"?>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault>
<env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>XDSRepositoryError</env:Value></env:Subcode></env:Code>
<env:Reason><env:Text xml:lang="en">Archive offline</env:Text></env:Reason>
</env:Fault></env:Body></env:Envelope>"""

FAULT11 = b"""<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault>
<faultcode>soap:Server</faultcode><faultstring>Object reference not set</faultstring>
</soap:Fault></soap:Body></soap:Envelope>"""


# --------------------------------------------------------------------------- the request


def test_request_is_a_soap12_retrieve_imaging_document_set():
    xml = build_request("1.2.3", "1.2.3.4", ["1.2.3.4.5", "1.2.3.4.6"], "https://pacs/rad69")
    assert xml.startswith(b"<?xml")
    root = ET.fromstring(xml)
    assert root.tag == f"{{{NS['s']}}}Envelope"
    action = root.find("s:Header/a:Action", NS)
    assert action is not None and action.text == ACTION and action.get(f"{{{NS['s']}}}mustUnderstand") == "1"
    assert root.findtext("s:Header/a:To", namespaces=NS) == "https://pacs/rad69"
    assert cast(str, root.findtext("s:Header/a:MessageID", namespaces=NS)).startswith("urn:uuid:")
    req = root.find("s:Body/iherad:RetrieveImagingDocumentSetRequest", NS)
    assert req is not None
    study = req.find("iherad:StudyRequest", NS)
    assert study is not None
    series = study.find("iherad:SeriesRequest", NS)
    assert series is not None
    assert study.get("studyInstanceUID") == "1.2.3" and series.get("seriesInstanceUID") == "1.2.3.4"
    docs = series.findall("ihe:DocumentRequest", NS)
    assert [d.findtext("ihe:DocumentUniqueId", namespaces=NS) for d in docs] == ["1.2.3.4.5", "1.2.3.4.6"]
    assert all(d.findtext("ihe:RepositoryUniqueId", namespaces=NS) for d in docs)
    syntaxes = [e.text for e in req.findall("iherad:TransferSyntaxUIDList/iherad:TransferSyntaxUID", NS)]
    assert syntaxes[0] == "1.2.840.10008.1.2.1" and "1.2.840.10008.1.2" in syntaxes


def test_request_escapes_what_it_quotes():
    odd = 'a"b<c>&d'
    root = ET.fromstring(build_request(odd, odd, [odd], "http://x/?a=1&b=2"))
    assert cast(ET.Element, root.find(".//iherad:StudyRequest", NS)).get("studyInstanceUID") == odd
    assert root.findtext(".//ihe:DocumentUniqueId", namespaces=NS) == odd
    assert root.findtext(".//a:To", namespaces=NS) == "http://x/?a=1&b=2"


def test_each_request_has_its_own_message_id():
    a, b = (ET.fromstring(build_request("1", "2", ["3"], "u")) for _ in range(2))
    assert a.findtext(".//a:MessageID", namespaces=NS) != b.findtext(".//a:MessageID", namespaces=NS)


# --------------------------------------------------------------------------- answers


def test_recorded_vitrea_error_is_read():
    env = parse_envelope(RECORDED.read_bytes())
    assert env.fault is None and env.status == "Failure"
    assert env.documents == {} and env.inline == {}
    assert [e.code for e in env.errors] == ["XDSMissingDocument"] * 2
    assert tuple(e.location for e in env.errors) == MISSING
    assert env.errors[0].context == "Unable to locate SOP from MINT."
    assert not any(e.is_warning for e in env.errors)


def test_recorded_error_becomes_not_found_naming_code_and_objects():
    cls, msg = describe_errors(parse_envelope(RECORDED.read_bytes()).errors)
    assert cls is NotFound
    assert "XDSMissingDocument" in msg and all(uid in msg for uid in MISSING)
    assert "Unable to locate SOP from MINT." in msg


def test_success_envelope_maps_content_ids_to_uids():
    env = parse_envelope(SUCCESS)
    assert env.status == "Success" and env.errors == [] and env.fault is None
    assert env.documents == {
        "e6f6b279-b259-436e-8d9e-73df1d1157d1": "1.2.3.4.5.6.7",
        "1.urn:uuid:AB12@apache.org": "1.2.3.4.5.6.8",  # cid: URLs are %-encoded (RFC 2392)
    }


def test_inline_base64_documents_are_decoded():
    payload = b"\x00\x01DICM" * 10
    b64 = base64.encodebytes(payload).decode()  # with line breaks, as SOAP stacks write it
    xml = SUCCESS.replace(SECOND_DOCUMENT, f"<Document>{b64}</Document>".encode())
    assert xml != SUCCESS
    env = parse_envelope(xml)
    assert env.inline == {"1.2.3.4.5.6.8": payload}
    assert list(env.documents.values()) == ["1.2.3.4.5.6.7"]


def test_document_that_is_neither_include_nor_base64_is_refused():
    xml = SUCCESS.replace(SECOND_DOCUMENT, b"<Document>not base64 at all!</Document>")
    assert xml != SUCCESS
    with pytest.raises(ValueError, match="neither"):
        parse_envelope(xml)


@pytest.mark.parametrize(
    ("xml", "expect"),
    [
        (FAULT12, "env:Receiver / XDSRepositoryError: Archive offline"),
        (FAULT11, "soap:Server: Object reference not set"),
    ],
)
def test_faults_are_read(xml, expect):
    env = parse_envelope(xml)
    assert env.fault == expect


@pytest.mark.parametrize(
    "data",
    [
        b"<html><head><title>Error</title></head></html>",
        b"not xml at all",
        b"",
        b'<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"/>',
    ],
)
def test_non_envelopes_are_refused(data):
    with pytest.raises(ValueError, match=r"not a SOAP envelope|not XML|without a Body"):
        parse_envelope(data)


@pytest.mark.parametrize(
    ("href", "cid"),
    [
        ("cid:abc", "abc"),
        ("CID:abc", "abc"),
        ("cid:a%40b.org", "a@b.org"),
        (" cid:<abc> ", "abc"),
        ("abc", "abc"),
    ],
)
def test_cid_of(href, cid):
    assert cid_of(href) == cid


def test_error_kinds():
    busy = RegistryError("XDSRepositoryBusy", location="1.2")
    assert describe_errors([busy])[0] is Unavailable
    assert describe_errors([RegistryError("XDSUnknownRepositoryId")])[0] is ProtocolError
    urn = RegistryError(
        "urn:ihe:rad:XDSMissingDocument", severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"
    )
    assert urn.short_code == "XDSMissingDocument" and urn.is_warning
    assert describe_errors([urn])[0] is NotFound


def test_error_message_lists_few_objects_and_other_codes():
    errors = [RegistryError("XDSMissingDocument", location=f"1.2.{i}") for i in range(8)]
    errors.append(RegistryError("XDSRepositoryError", "disk on fire", "1.3"))
    cls, msg = describe_errors(errors)
    assert cls is NotFound
    assert "1.2.0" in msg and "1.2.4" in msg and "1.2.5" not in msg and "3 more" in msg
    assert "XDSRepositoryError" in msg


# --------------------------------------------------------------------------- the fetcher on recorded answers


def _fetcher(handler, ignore: tuple[str, ...] = (), retries: int = 2) -> tuple[Rad69, httpx.AsyncClient]:
    url = "http://pacs.invalid/rad69"
    server = Server("pacs", Endpoint("mint", url=url), Endpoint("rad69", url=url), retries=retries, timeout=5)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return Rad69(HttpEndpoint(server, url, client), ignore_errors=ignore), client


def _recorded(calls: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(
            200, content=RECORDED.read_bytes(), headers={"content-type": "application/soap+xml; charset=utf-8"}
        )

    return handler


async def test_recorded_error_for_an_instance_is_not_found():
    calls: list[httpx.Request] = []
    rad69, client = _fetcher(_recorded(calls))
    async with client:
        with pytest.raises(NotFound) as info:
            await rad69.fetch_instance(InstanceRef("1.2", "1.2.3", MISSING[0]))
    assert info.value.server == "pacs" and MISSING[0] in info.value.what
    assert "XDSMissingDocument" in str(info.value) and MISSING[1] in str(info.value)
    assert len(calls) == 1
    assert calls[0].method == "POST" and calls[0].headers["content-type"].startswith("application/soap+xml")
    assert MISSING[0].encode() in calls[0].content


async def test_recorded_error_ignored_for_an_instance():
    rad69, client = _fetcher(_recorded([]), ignore=("XDSMissingDocument",))
    async with client:
        with pytest.raises(IgnoredError, match="XDSMissingDocument"):
            await rad69.fetch_instance(InstanceRef("1.2", "1.2.3", MISSING[0]))


async def test_recorded_error_ignored_for_a_series_yields_nothing():
    calls: list[httpx.Request] = []
    rad69, client = _fetcher(_recorded(calls), ignore=("XDSMissingDocument",))
    async with client:
        got = [x async for x in rad69.fetch_series(SeriesRef("1.2", "1.2.3"), list(MISSING))]
    assert got == [] and len(calls) == 1  # every object named as missing: nothing to ask for again


async def test_recorded_error_for_a_series_is_raised():
    rad69, client = _fetcher(_recorded([]), ignore=("XDSSomethingElse",))
    async with client:
        with pytest.raises(NotFound, match="XDSMissingDocument"):
            async for _ in rad69.fetch_series(SeriesRef("1.2", "1.2.3"), list(MISSING)):
                pass


async def test_fault_with_status_500_gives_its_reason_and_is_not_retried():
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500, content=FAULT12, headers={"content-type": "application/soap+xml"})

    rad69, client = _fetcher(handler)
    async with client:
        with pytest.raises(ProtocolError, match=r"SOAP fault: .*Archive offline"):
            await rad69.fetch_instance(InstanceRef("1.2", "1.2.3", "1.2.3.4"))
    assert len(calls) == 1


async def test_html_page_with_status_200_is_a_protocol_error():
    def handler(request: httpx.Request) -> httpx.Response:
        page = b"<html><head><title>Please log in</title></head><body>...</body></html>"
        return httpx.Response(200, content=page, headers={"content-type": "text/html"})

    rad69, client = _fetcher(handler)
    async with client:
        with pytest.raises(ProtocolError, match="Please log in"):
            await rad69.fetch_instance(InstanceRef("1.2", "1.2.3", "1.2.3.4"))


async def test_empty_series_sends_nothing():
    calls: list[httpx.Request] = []
    rad69, client = _fetcher(_recorded(calls))
    async with client:
        assert [x async for x in rad69.fetch_series(SeriesRef("1.2", "1.2.3"), [])] == []
    assert calls == []


# --------------------------------------------------------------------------- multipart answers with quirks


@pytest.fixture(scope="module")
def series_of_two(sample_files) -> tuple[SeriesRef, list[tuple[str, bytes]]]:
    """A series and two of its objects (UID, bytes)."""
    by_series: dict[SeriesRef, list[tuple[str, bytes]]] = {}
    for f in sample_files:
        ds = pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True)
        by_series.setdefault(SeriesRef(ds.StudyInstanceUID, ds.SeriesInstanceUID), []).append((ds.SOPInstanceUID, f))
    sref, objects = next((k, v) for k, v in by_series.items() if len(v) >= 2)
    return sref, objects[:2]


@pytest.fixture(scope="module")
def two_objects(series_of_two: tuple[SeriesRef, list[tuple[str, bytes]]]) -> list[tuple[str, bytes]]:
    return series_of_two[1]


@pytest.fixture(scope="module")
def sref(series_of_two: tuple[SeriesRef, list[tuple[str, bytes]]]) -> SeriesRef:
    return series_of_two[0]


def _mtom(envelope: bytes, parts: list[tuple[str, bytes, str]], start: str = "root") -> httpx.Response:
    """A multipart/related answer: the envelope, then (Content-ID, bytes, transfer encoding) parts."""
    b = "MIMEBoundary_1234"
    body = f'--{b}\r\nContent-Type: application/xop+xml; type="application/soap+xml"\r\nContent-ID: <root>\r\n\r\n'
    out = body.encode() + envelope
    for cid, data, cte in parts:
        out += f"\r\n--{b}\r\nContent-Type: application/dicom\r\nContent-Transfer-Encoding: {cte}\r\n".encode()
        out += f"Content-ID: <{cid}>\r\n\r\n".encode() + data
    out += f"\r\n--{b}--\r\n".encode()
    ctype = f'multipart/related; type="application/xop+xml"; boundary="{b}"; start="<{start}>"'
    return httpx.Response(200, content=out, headers={"content-type": ctype})


async def _series(
    answer: httpx.Response, uids: list[str], sref: SeriesRef
) -> tuple[dict[str, bytes], Exception | None]:
    rad69, client = _fetcher(lambda request: answer)
    got: dict[str, bytes] = {}
    async with client:
        try:
            async for uid, data in rad69.fetch_series(sref, uids):
                got[uid] = data
        except ProtocolError as exc:
            return got, exc
    return got, None


async def test_base64_part_and_unreferenced_content_id(two_objects, sref):
    from tests.servers.rad69 import success_envelope

    (u1, f1), (u2, f2) = two_objects
    env = success_envelope([(u1, "a@x"), (u2, "b@x")], [])
    answer = _mtom(env, [("a@x", base64.encodebytes(f1), "base64"), ("other-id", f2, "binary")])
    got, err = await _series(answer, [u1, u2], sref)
    assert err is None and got == {u1: f1, u2: f2}


async def test_unreferenced_part_with_an_unrequested_object(two_objects, sref):
    from tests.servers.rad69 import success_envelope

    (u1, f1), (_u2, f2) = two_objects
    answer = _mtom(success_envelope([(u1, "a@x")], []), [("a@x", f1, "binary"), ("zzz", f2, "binary")])
    got, err = await _series(answer, [u1], sref)
    assert got == {u1: f1} and err is not None and "unrequested" in str(err)


async def test_part_under_another_objects_content_id(two_objects, sref):
    """The envelope maps the part to one UID, the part holds another object."""
    from tests.servers.rad69 import success_envelope

    (u1, _f1), (u2, f2) = two_objects
    answer = _mtom(success_envelope([(u1, "a@x")], []), [("a@x", f2, "binary")])
    got, err = await _series(answer, [u1, u2], sref)
    assert got == {} and err is not None and f"sent instance {u2} instead" in str(err)


async def test_announced_object_missing_from_the_body(two_objects, sref):
    from tests.servers.rad69 import success_envelope

    (u1, f1), (u2, _) = two_objects
    answer = _mtom(success_envelope([(u1, "a@x"), (u2, "b@x")], []), [("a@x", f1, "binary")])
    got, err = await _series(answer, [u1, u2], sref)
    assert got == {u1: f1} and err is not None and "did not hold" in str(err) and u2 in str(err)


async def test_root_part_must_come_first(two_objects, sref):
    from tests.servers.rad69 import success_envelope

    (u1, f1), _ = two_objects
    answer = _mtom(success_envelope([(u1, "a@x")], []), [("a@x", f1, "binary")], start="elsewhere")
    got, err = await _series(answer, [u1], sref)
    assert got == {} and err is not None and "root part" in str(err)


async def test_warnings_do_not_fail(two_objects, sref):
    from tests.servers.rad69 import success_envelope

    (u1, f1), _ = two_objects
    env = success_envelope([(u1, "a@x")], ["1.2.3"]).replace(b"ErrorSeverityType:Error", b"ErrorSeverityType:Warning")
    assert b"Warning" in env
    got, err = await _series(_mtom(env, [("a@x", f1, "binary")]), [u1], sref)
    assert err is None and got == {u1: f1}


async def test_object_sent_twice_is_yielded_once(two_objects, sref):
    from tests.servers.rad69 import success_envelope

    (u1, f1), _ = two_objects
    answer = _mtom(success_envelope([(u1, "a@x")], []), [("a@x", f1, "binary"), ("a@x", f1, "binary")])
    rad69, client = _fetcher(lambda request: answer)
    async with client:
        got = [uid async for uid, _ in rad69.fetch_series(sref, [u1])]
    assert got == [u1]
