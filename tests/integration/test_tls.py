"""TLS through make_client: server verification, ca_bundle, client certificates.

A throw-away CA, server and client certificates are made with the openssl CLI
in a temp dir; the HTTPS server is a TestHTTPServer whose listening socket is
wrapped by ``ssl`` (loopback only)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.certs import make_ca, make_leaf
from tests.servers.base import TestHTTPServer
from tests.servers.login import Routes, VitreaSessions, quick_server, resource_routes
from trolleyfs import config
from trolleyfs.endpoints import Server
from trolleyfs.errors import RemoteError, Unavailable
from trolleyfs.transport.http import HttpEndpoint
from trolleyfs.wiring import make_client

pytestmark = pytest.mark.integration  # runs the openssl CLI


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA that signed everything below
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA nobody used


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    make_ca(d, "ca")
    make_ca(d, "other")
    make_leaf(
        d,
        "server",
        "ca",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    make_leaf(
        d,
        "client",
        "ca",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key", d / "other.pem")


@contextmanager
def https_server(certs: Certs, routes: Routes | None = None, require_client_cert: bool = False) -> Iterator[str]:
    """An HTTPS TestHTTPServer on loopback; yields its https:// URL."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.ca)
    server: TestHTTPServer = quick_server(routes or resource_routes())
    server.httpd.socket = ctx.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    try:
        yield server.url.replace("http://", "https://")
    finally:
        server.stop()


def server_config(url: str, extra: str = "") -> Server:
    text = f"""
[servers.pacs]
search = {{ protocol = "qido-rs", url = "{url}/api" }}
retrieve = {{ protocol = "wado-rs", url = "{url}/api" }}
timeout = 5
retries = 0
{extra}
"""
    return config.parse(text).servers["pacs"]


@asynccontextmanager
async def endpoint(url: str, extra: str = "") -> AsyncIterator[HttpEndpoint]:
    server = server_config(url, extra)
    client = make_client(server)
    try:
        yield HttpEndpoint(server, f"{url}/api", client)
    finally:
        await client.aclose()


async def get(ep: HttpEndpoint) -> str:
    with trio.fail_after(10):  # a TLS failure must be an error, never a hang
        return (await ep.request("GET", f"{ep.url}/x", "GET /x")).text


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    x: BaseException | None = exc
    while x is not None and id(x) not in seen:
        if isinstance(x, kind):
            return True
        seen.add(id(x))
        x = x.__cause__ or x.__context__
    return False


async def test_unknown_ca_is_rejected(certs: Certs) -> None:
    with https_server(certs) as url:
        async with endpoint(url) as ep:
            with pytest.raises(Unavailable) as info:
                await get(ep)
            assert info.value.server == "pacs" and info.value.what == "GET /x"
            assert _caused_by(info.value, ssl.SSLCertVerificationError)


async def test_a_different_ca_bundle_is_rejected(certs: Certs) -> None:
    with https_server(certs) as url:
        async with endpoint(url, f'ca_bundle = "{certs.other_ca}"') as ep:
            with pytest.raises(Unavailable) as info:
                await get(ep)
            assert _caused_by(info.value, ssl.SSLCertVerificationError)


async def test_unknown_ca_error_message_names_the_certificate_problem(certs: Certs) -> None:
    with https_server(certs) as url:
        async with endpoint(url) as ep:
            with pytest.raises(Unavailable, match=r"(?i)certificate.*ca_bundle"):
                await get(ep)


async def test_ca_bundle_makes_it_work(certs: Certs) -> None:
    with https_server(certs) as url:
        async with endpoint(url, f'ca_bundle = "{certs.ca}"') as ep:
            assert await get(ep) == "ok /api/x"


async def test_verify_false_accepts_the_unknown_ca(certs: Certs) -> None:
    with https_server(certs) as url:
        async with endpoint(url, "verify = false") as ep:
            assert await get(ep) == "ok /api/x"


async def test_client_certificate_is_presented(certs: Certs) -> None:
    with https_server(certs, require_client_cert=True) as url:
        extra = f'ca_bundle = "{certs.ca}"\nclient_cert = "{certs.client_cert}"\nclient_key = "{certs.client_key}"'
        async with endpoint(url, extra) as ep:
            assert await get(ep) == "ok /api/x"


async def test_client_certificate_and_key_in_one_file(certs: Certs, tmp_path: Path) -> None:
    both = tmp_path / "client-both.pem"
    both.write_bytes(certs.client_cert.read_bytes() + certs.client_key.read_bytes())
    with https_server(certs, require_client_cert=True) as url:
        async with endpoint(url, f'ca_bundle = "{certs.ca}"\nclient_cert = "{both}"') as ep:
            assert await get(ep) == "ok /api/x"


async def test_server_requiring_a_client_certificate_refuses_without(certs: Certs) -> None:
    with https_server(certs, require_client_cert=True) as url:
        async with endpoint(url, f'ca_bundle = "{certs.ca}"') as ep:
            with pytest.raises(RemoteError) as info:
                await get(ep)
            assert isinstance(info.value, Unavailable)
            assert "certificate" in str(info.value).lower() or "connection" in str(info.value).lower()


async def test_client_certificate_with_verify_false(certs: Certs) -> None:
    with https_server(certs, require_client_cert=True) as url:
        extra = f'verify = false\nclient_cert = "{certs.client_cert}"\nclient_key = "{certs.client_key}"'
        async with endpoint(url, extra) as ep:
            assert await get(ep) == "ok /api/x"


async def test_vitrea_login_goes_over_the_same_tls_settings(certs: Certs) -> None:
    sessions = VitreaSessions(users={"alice": "pw-tls-1234"})
    with https_server(certs, sessions.protect_routes(resource_routes()), require_client_cert=True) as url:
        extra = (
            f'ca_bundle = "{certs.ca}"\nclient_cert = "{certs.client_cert}"\nclient_key = "{certs.client_key}"\n'
            f'auth = {{ type = "vitrea", login_url = "{url}/login", username = "alice", password = "pw-tls-1234" }}'
        )
        async with endpoint(url, extra) as ep:
            assert await get(ep) == "ok /api/x"
    assert sessions.logins == 1
