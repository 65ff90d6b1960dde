"""Asking a server for another transfer syntax, over httpx.MockTransport: what
each protocol sends (WADO-RS Accept, WADO-URI ``transferSyntax``, RAD-69's
list with the target first), that such a request is tried once (a failure
is answered from the stored form instead), and that C-GET cannot ask."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import httpx
import pytest

from trolleyfs.config import parse
from trolleyfs.errors import Unavailable
from trolleyfs.model import InstanceRef
from trolleyfs.protocols import build_asking_fetcher
from trolleyfs.retrieve.rad69_soap import TRANSFER_SYNTAXES, build_request, syntaxes_preferring

J2K = "1.2.840.10008.1.2.4.90"
REF = InstanceRef("1.2", "1.2.3", "1.2.3.4")


def fetcher(retrieve: str, handler: Callable[[httpx.Request], httpx.Response]):
    cfg = parse(f"""
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "http://pacs/dicom-web" }}
retrieve = {retrieve}
retries = 3
timeout = 5
""")
    seen: list[httpx.Request] = []

    def record(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record))
    return build_asking_fetcher(cfg.servers["pacs"], client, J2K), seen


async def test_wado_rs_names_the_syntax_in_accept_and_asks_once() -> None:
    f, seen = fetcher(
        '{ protocol = "wado-rs", url = "http://pacs/dicom-web" }',
        lambda req: httpx.Response(500, text="Cannot transcode image"),
    )
    assert f is not None
    with pytest.raises(Unavailable):
        await f.fetch_instance(REF)
    assert len(seen) == 1  # retries = 3 in the config: not for a transcoding request
    assert seen[0].headers["accept"] == f'multipart/related; type="application/dicom"; transfer-syntax={J2K}'


async def test_wado_uri_adds_transfer_syntax() -> None:
    f, seen = fetcher(
        '{ protocol = "wado-uri", url = "http://pacs/wado" }', lambda req: httpx.Response(503, text="busy")
    )
    assert f is not None
    with pytest.raises(Unavailable):
        await f.fetch_instance(REF)
    assert len(seen) == 1 and str(seen[0].url).endswith(f"&contentType=application/dicom&transferSyntax={J2K}")


def test_rad69_names_the_target_first_then_the_usual_list() -> None:
    wanted = syntaxes_preferring(J2K)
    assert wanted[0] == J2K and sorted(wanted) == sorted(TRANSFER_SYNTAXES) and len(set(wanted)) == len(wanted)
    root = ET.fromstring(build_request("1", "2", ["3"], "u", wanted))
    named = [e.text for e in root.iter() if e.tag.endswith("TransferSyntaxUID")]
    assert named == list(wanted)
    assert syntaxes_preferring("1.2.840.10008.1.2.4.50")[0] == "1.2.840.10008.1.2.4.50"


def test_c_get_cannot_ask() -> None:
    f, _ = fetcher('{ protocol = "c-get", host = "127.0.0.1", port = 104 }', lambda req: httpx.Response(500))
    assert f is None


async def test_the_rad69_request_sent_names_the_target_first() -> None:
    f, seen = fetcher('{ protocol = "rad69", url = "http://pacs/rad69" }', lambda req: httpx.Response(503))
    assert f is not None
    with pytest.raises(Unavailable):
        await f.fetch_instance(REF)
    assert len(seen) == 1
    named = [e.text for e in ET.fromstring(seen[0].content).iter() if e.tag.endswith("TransferSyntaxUID")]
    assert named == list(syntaxes_preferring(J2K))
