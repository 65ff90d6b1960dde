"""Builds the searcher and fetcher of each configured server.

Protocol modules are imported only when a server uses them."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

from .config import Config, Endpoint, Server
from .http import HttpEndpoint, make_client
from .model import Fetcher, Searcher


@dataclass
class Remote:
    server: Server
    searcher: Searcher
    fetcher: Fetcher


def _http(server: Server, ep: Endpoint, client) -> HttpEndpoint:  # type: ignore[no-untyped-def]
    assert ep.url is not None
    return HttpEndpoint(server, ep.url, client)


def make_searcher(server: Server, client) -> Searcher:  # type: ignore[no-untyped-def]
    ep = server.search
    if ep.protocol == "qido-rs":
        from .search.qido import QidoRS

        return QidoRS(_http(server, ep, client), page_size=ep.page_size)
    if ep.protocol == "mint":
        from .search.mint import Mint

        return Mint(_http(server, ep, client))
    if ep.protocol == "dicom-qr":
        from .search.dimse import DicomQR

        return DicomQR(server, ep)
    raise ValueError(f"unknown search protocol {ep.protocol}")


def make_fetcher(server: Server, client) -> Fetcher:  # type: ignore[no-untyped-def]
    ep = server.retrieve
    if ep.protocol == "wado-rs":
        from .retrieve.wado_rs import WadoRS

        return WadoRS(_http(server, ep, client))
    if ep.protocol == "wado-uri":
        from .retrieve.wado_uri import WadoURI

        return WadoURI(_http(server, ep, client))
    if ep.protocol == "rad69":
        from .retrieve.rad69 import Rad69

        return Rad69(_http(server, ep, client), ignore_errors=ep.ignore_errors)
    if ep.protocol == "c-get":
        from .retrieve.cget import CGet

        return CGet(server, ep)
    raise ValueError(f"unknown retrieve protocol {ep.protocol}")


async def open_remotes(config: Config, stack: AsyncExitStack) -> dict[str, Remote]:
    """One Remote per server; everything opened is closed by ``stack``."""
    remotes = {}
    for name, server in config.servers.items():
        client = make_client(server)
        stack.push_async_callback(client.aclose)
        searcher = make_searcher(server, client)
        stack.push_async_callback(searcher.aclose)
        fetcher = make_fetcher(server, client)
        stack.push_async_callback(fetcher.aclose)
        remotes[name] = Remote(server, searcher, fetcher)
    return remotes
