"""One httpx client per server, and the request helpers every HTTP protocol
module uses: deadlines, bounded retries with jittered backoff, and the mapping
of transport errors and status codes onto :mod:`trolleyfs.errors`."""

from __future__ import annotations

import logging
import random
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import trio

from .config import Server
from .errors import AccessDenied, ConfigError, NotFound, ProtocolError, RemoteError, Unavailable

log = logging.getLogger("trolleyfs.http")
T = TypeVar("T")



def _ssl_context(server: Server) -> ssl.SSLContext | bool:
    """``True`` (system CAs), ``False``, or a context for a CA bundle and/or a
    client certificate.  A bad certificate or key is a ConfigError."""
    if not isinstance(server.verify, str) and not server.client_cert:
        return server.verify
    ctx = ssl.create_default_context(cafile=server.verify if isinstance(server.verify, str) else None)
    if server.verify is False:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if server.client_cert:

        def no_prompt() -> str:  # never let OpenSSL ask on the terminal
            raise ConfigError(server.name, f"servers.{server.name}.client_key", "is encrypted: give an unencrypted key")

        try:
            ctx.load_cert_chain(server.client_cert, server.client_key, password=no_prompt)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(server.name, f"servers.{server.name}.client_cert",
                              f"cannot use the certificate/key: {exc}") from None  # fmt: skip
    return ctx


def make_client(server: Server) -> httpx.AsyncClient:
    from .auth import make_auth

    return httpx.AsyncClient(
        auth=make_auth(server),
        timeout=httpx.Timeout(server.timeout, connect=min(server.timeout, 10.0)),
        limits=httpx.Limits(
            max_connections=server.max_connections, max_keepalive_connections=server.max_connections
        ),
        verify=_ssl_context(server),
        follow_redirects=True,
        headers={"User-Agent": "trolleyfs"},
    )


def describe_status(resp: httpx.Response) -> str:
    """``HTTP 500 Server Error: <first words of the body or the HTML title>``."""
    try:
        body = resp.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        body = ""
    if "html" in resp.headers.get("content-type", "") or body.lstrip()[:1] == "<":
        m = re.search(r"<title>(.*?)</title>", body, re.S | re.I)
        body = m.group(1) if m else ""
    text = " ".join(body.split())[:160]
    return f"HTTP {resp.status_code} {resp.reason_phrase}" + (f": {text}" if text else "")


def raise_for_status(resp: httpx.Response, server: str, what: str) -> None:
    """Map a non-2xx answer onto our errors (404 -> NotFound, 401/403 ->
    AccessDenied, 5xx -> Unavailable, anything else -> ProtocolError)."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    msg = describe_status(resp)
    if code == 404:
        raise NotFound(msg, server=server, what=what)
    if code in (401, 403):
        raise AccessDenied(msg, server=server, what=what)
    if code >= 500 or code in (408, 429):
        raise Unavailable(msg, server=server, what=what)
    raise ProtocolError(msg, server=server, what=what)


class TLSUntrusted(Unavailable):
    """The server's certificate is not trusted: retrying cannot help."""


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, ssl.SSLError):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def translate(exc: BaseException, server: str, what: str) -> RemoteError:
    if isinstance(exc, RemoteError):
        return exc
    tls = _tls_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return TLSUntrusted(
            f"TLS: the server certificate is not trusted ({tls.verify_message or tls.reason}): "
            "set ca_bundle to the CA that signed it (or verify = false)", server=server, what=what)  # fmt: skip
    if tls is not None:
        return Unavailable(f"TLS handshake failed: {tls.reason or tls}", server=server, what=what)
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"timed out ({type(exc).__name__})", server=server, what=what)
    if isinstance(exc, httpx.ConnectError):
        return Unavailable(f"cannot connect: {exc}", server=server, what=what)
    if isinstance(exc, (httpx.TransportError, OSError)):
        return Unavailable(f"connection failed: {type(exc).__name__}: {exc}", server=server, what=what)
    if isinstance(exc, trio.TooSlowError):
        return Unavailable("no answer before the deadline", server=server, what=what)
    return ProtocolError(f"{type(exc).__name__}: {exc}", server=server, what=what)


def _retryable(exc: RemoteError) -> bool:
    return isinstance(exc, Unavailable) and not isinstance(exc, TLSUntrusted)


class HttpEndpoint:
    """An HTTP endpoint of one server: base URL, shared client and retry policy."""

    def __init__(self, server: Server, url: str, client: httpx.AsyncClient) -> None:
        self.server = server
        self.name = server.name
        self.url = url.rstrip("/")
        self.client = client

    async def _backoff(self, attempt: int) -> None:
        await trio.sleep(min(2.0, 0.1 * 2**attempt) * (0.5 + random.random()))

    async def _with_retries(self, what: str, attempts: int, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, retrying what may work later
        (timeouts, resets, 5xx) with jittered backoff; errors come out translated."""
        for n in range(attempts):
            try:
                return await attempt()
            except (RemoteError, httpx.HTTPError, OSError, trio.TooSlowError) as exc:
                err = translate(exc, self.name, what)
                if n + 1 < attempts and _retryable(err):
                    log.debug("retrying %s after: %s", what, err)
                    await self._backoff(n)
                    continue
                raise err from None
        raise AssertionError("unreachable")

    async def request(
        self, method: str, url: str, what: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """A whole-body request with deadline and retries; returns a 2xx response."""

        async def once() -> httpx.Response:
            with trio.fail_after(self.server.timeout * 2):
                resp = await self.client.request(method, url, **kwargs)
            raise_for_status(resp, self.name, what)
            return resp

        return await self._with_retries(what, 1 + (self.server.retries if idempotent else 0), once)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        what: str,
        *,
        accept_error: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed request: the status is checked (and retried on 5xx) before
        the body is handed out; the body itself is the caller's to read.  An
        error answer that ``accept_error`` accepts (read whole) is handed out
        too, for protocols whose error bodies say more than the status."""

        async def once() -> httpx.Response:
            with trio.fail_after(self.server.timeout * 2):
                resp = await self.client.send(self.client.build_request(method, url, **kwargs), stream=True)
            if not 200 <= resp.status_code < 300:
                try:
                    with trio.fail_after(self.server.timeout):
                        await resp.aread()
                finally:
                    await resp.aclose()
                if accept_error is None or not accept_error(resp):
                    raise_for_status(resp, self.name, what)
            return resp

        resp = await self._with_retries(what, 1 + self.server.retries, once)
        try:
            yield resp
        finally:
            await resp.aclose()


async def iter_body(resp: httpx.Response, server: str, what: str, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body of a streamed response, with a deadline on each chunk and
    transport errors translated.  However the caller stops (done, error,
    cancelled), the response is closed and httpx's nested generators finished,
    so no connection or half-run generator is left behind."""
    it = resp.aiter_bytes().__aiter__()
    try:
        while True:
            try:
                with trio.fail_after(idle_timeout):
                    chunk = await it.__anext__()
            except StopAsyncIteration:
                return
            except (httpx.HTTPError, OSError, trio.TooSlowError) as exc:
                raise translate(exc, server, what) from None
            yield chunk
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(idle_timeout):
            await resp.aclose()
            try:
                async for _ in it:
                    pass
            except Exception:  # the closed stream raises: that is the point
                pass


def _tune_httpcore() -> None:
    """httpcore reads a response body 64 KiB at a time; each read costs a trip
    through several async generators.  Series bodies are hundreds of MB, so
    read up to 1 MiB at a time (the kernel returns what has arrived)."""
    try:
        from httpcore._async.http11 import AsyncHTTP11Connection
    except ImportError:  # a future httpcore: keep its default
        return
    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < 1 << 20:
        AsyncHTTP11Connection.READ_NUM_BYTES = 1 << 20


_tune_httpcore()
