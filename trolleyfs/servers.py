"""The wiring: for each configured server, its HTTP client (with its
authentication) and the searcher and fetcher the protocol registry builds."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx

from .auth import make_auth
from .config import Config
from .endpoints import Server
from .model import Fetcher, Searcher
from .protocols import build_fetcher, build_searcher
from .retrieve.storescp import Receivers
from .transport.http import build_client


@dataclass
class Remote:
    """One configured server and the searcher and fetcher built for it."""

    server: Server
    searcher: Searcher
    fetcher: Fetcher
    client: httpx.AsyncClient  # the server's HTTP client (for views that ask it more)


def make_client(server: Server) -> httpx.AsyncClient:
    """The HTTP client of ``server``, authenticating as its config says."""
    return build_client(server, make_auth(server))


async def open_remotes(config: Config, stack: AsyncExitStack) -> dict[str, Remote]:
    """One Remote per server; everything opened is closed by ``stack``.  The
    storage receivers of C-MOVE servers are listening when this returns (a
    port that cannot be had is a UserError here, before anything is mounted)."""
    remotes = {}
    receivers = Receivers()
    stack.push_async_callback(receivers.aclose)
    for name, server in config.servers.items():
        client = make_client(server)
        stack.push_async_callback(client.aclose)
        searcher = build_searcher(server, client)
        stack.push_async_callback(searcher.aclose)
        fetcher = build_fetcher(server, client, receivers)
        stack.push_async_callback(fetcher.aclose)
        remotes[name] = Remote(server, searcher, fetcher, client)
    await receivers.start()
    return remotes
