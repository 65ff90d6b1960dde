"""The protocol registry: every protocol name the config accepts is wired to
its searcher or fetcher, with the endpoint's settings; unknown names give the
config's error."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from tests.servers.dcmqrscp import free_port
from trolleyfs import protocols
from trolleyfs.config import ConfigError, parse
from trolleyfs.endpoints import (
    AeEndpoint,
    CMoveEndpoint,
    QidoEndpoint,
    Rad69Endpoint,
    Server,
    UrlEndpoint,
    WadoRsEndpoint,
)
from trolleyfs.retrieve.cget import CGet
from trolleyfs.retrieve.rad69 import Rad69
from trolleyfs.search.cfind import DicomQR
from trolleyfs.search.qido import QidoRS
from trolleyfs.transport.dimse import limiter_for
from trolleyfs.wiring import make_client, open_remotes

EXPECTED = {
    "qido-rs": "QidoRS",
    "mint": "Mint",
    "dicom-qr": "DicomQR",
    "wado-rs": "WadoRS",
    "wado-uri": "WadoURI",
    "rad69": "Rad69",
    "c-get": "CGet",
    "c-move": "CMove",
}


def _table(protocol: str) -> str:
    cls = protocols.PROTOCOLS[protocol].endpoint
    if issubclass(cls, CMoveEndpoint):  # its receiver listens while the remotes are open
        return (
            f'{{ protocol = "{protocol}", host = "127.0.0.1", port = 11112, called_aet = "PACS", '
            f'store_host = "127.0.0.1", store_port = {free_port()} }}'
        )
    if issubclass(cls, AeEndpoint):
        return f'{{ protocol = "{protocol}", host = "127.0.0.1", port = 11112, called_aet = "PACS" }}'
    assert issubclass(cls, UrlEndpoint)
    return f'{{ protocol = "{protocol}", url = "http://127.0.0.1:9/{protocol}" }}'


def _config(search: str, retrieve: str) -> str:
    return f"[servers.pacs]\nsearch = {_table(search)}\nretrieve = {_table(retrieve)}\nmax_connections = 3\n"


def test_the_names_the_config_accepts() -> None:
    assert protocols.names("search") == ["dicom-qr", "mint", "qido-rs"]
    assert protocols.names("retrieve") == ["c-get", "c-move", "rad69", "wado-rs", "wado-uri"]


@pytest.mark.parametrize("search", protocols.names("search"))
@pytest.mark.parametrize("retrieve", protocols.names("retrieve"))
async def test_every_protocol_is_wired(search: str, retrieve: str) -> None:
    config = parse(_config(search, retrieve), "p.toml")
    server = config.servers["pacs"]
    assert (server.search.protocol, server.retrieve.protocol) == (search, retrieve)
    async with AsyncExitStack() as stack:
        remote = (await open_remotes(config, stack))["pacs"]
        assert type(remote.searcher).__name__ == EXPECTED[search]
        assert type(remote.fetcher).__name__ == EXPECTED[retrieve]
        assert remote.searcher.name == remote.fetcher.name == "pacs"
        assert remote.server is server


def test_endpoint_settings_reach_the_protocol_classes() -> None:
    url = "http://127.0.0.1:9/x"
    text = (
        f'[servers.pacs]\nsearch = {{ protocol = "qido-rs", url = "{url}", page_size = 7 }}\n'
        f'retrieve = {{ protocol = "rad69", url = "{url}", ignore_errors = ["XDSMissingDocument"] }}\n'
    )
    server = parse(text).servers["pacs"]
    assert server.search == QidoEndpoint(url, page_size=7)
    assert server.retrieve == Rad69Endpoint(url, ignore_errors=("XDSMissingDocument",))


async def test_settings_are_passed_on() -> None:
    url = "http://127.0.0.1:9/x"
    server = Server("pacs", QidoEndpoint(url, page_size=7), Rad69Endpoint(url, ignore_errors=("XDSX",)))
    async with make_client(server) as client:
        searcher, fetcher = protocols.build_searcher(server, client), protocols.build_fetcher(server, client)
        assert isinstance(searcher, QidoRS) and isinstance(fetcher, Rad69)
        assert searcher.page_size == 7
        assert fetcher.ignore_errors == frozenset({"XDSX"})


async def test_dimse_searcher_and_fetcher_share_one_association_limit() -> None:
    config = parse(_config("dicom-qr", "c-get"))
    async with AsyncExitStack() as stack:
        remote = (await open_remotes(config, stack))["pacs"]
        assert isinstance(remote.searcher, DicomQR) and isinstance(remote.fetcher, CGet)
        searcher_server, fetcher_server = remote.searcher.server, remote.fetcher.server
        assert limiter_for(searcher_server) is limiter_for(fetcher_server)
        assert limiter_for(searcher_server).total_tokens == 3


@pytest.mark.parametrize(
    ("role", "given", "expected"),
    [
        ("search", "qido", "dicom-qr, mint, qido-rs"),
        ("search", "wado-rs", "dicom-qr, mint, qido-rs"),  # a retrieve protocol cannot search
        ("retrieve", "mint", "c-get, c-move, rad69, wado-rs, wado-uri"),
    ],
)
def test_unknown_protocols_give_the_config_error(role: str, given: str, expected: str) -> None:
    url = "http://127.0.0.1:9/x"
    tables = {
        "search": f'{{ protocol = "qido-rs", url = "{url}" }}',
        "retrieve": f'{{ protocol = "wado-rs", url = "{url}" }}',
    }
    tables[role] = f'{{ protocol = "{given}", url = "{url}" }}'
    with pytest.raises(ConfigError) as info:
        parse(f"[servers.pacs]\nsearch = {tables['search']}\nretrieve = {tables['retrieve']}\n", "p.toml")
    assert str(info.value) == (
        f"p.toml: servers.pacs.{role}.protocol: unknown {role} protocol {given!r} (expected one of: {expected})"
    )


def test_building_by_name() -> None:
    assert protocols.endpoint("wado-rs", url="http://h/x") == WadoRsEndpoint("http://h/x")
    with pytest.raises(ValueError, match="unknown protocol 'ftp'"):
        protocols.endpoint("ftp", url="ftp://h")
    wrong_role = Server("pacs", WadoRsEndpoint("http://h/x"), WadoRsEndpoint("http://h/x"))
    with pytest.raises(ValueError, match="unknown search protocol wado-rs"):
        protocols.build_searcher(wrong_role, None)  # type: ignore[arg-type]
