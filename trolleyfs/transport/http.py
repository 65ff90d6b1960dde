"""HTTP as every HTTP protocol module uses it: one httpx client per server
(its authentication passed in), and :class:`HttpEndpoint`, one per configured
URL, sending requests with deadlines and bounded retries, errors mapped by
:mod:`trolleyfs.transport.http_errors`.

Deadlines bound silence, not progress (:mod:`trolleyfs.idle`): httpx's own
timeouts bound each wait for the network, and the trio deadline of a request
moves on with every chunk of its body that arrives (the client reports each
one), so a large QIDO-RS page, MINT answer or WADO-URI object from a slow
server is read to its end while it keeps coming.

The server's limits (a :class:`~.pace.Pace`, when the client is given one)
are charged by the client itself, so every protocol module is paced without
knowing it: each request it sends (each attempt, redirect and authentication
round) is a request, and each chunk of each body, streamed or not, is bytes,
charged before the next chunk is read."""

from __future__ import annotations

import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from ..endpoints import Server
from ..errors import ConfigError
from ..idle import idle_deadline, overall_bound, progress
from .http_errors import HTTP_FAILURES, raise_for_status, retryable, translate
from .pace import Pace
from .retry import with_retries


def ssl_context(server: Server) -> ssl.SSLContext | bool:
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
            raise ConfigError(
                server.name, f"servers.{server.name}.client_cert", f"cannot use the certificate/key: {exc}"
            ) from None
    return ctx


def build_client(
    server: Server,
    auth: httpx.Auth | None,
    transport: httpx.AsyncBaseTransport | None = None,
    pace: Pace | None = None,
) -> httpx.AsyncClient:
    """The client of one server: its timeouts, connection limit, TLS settings and
    ``auth``; ``transport`` replaces the network (tests); ``pace``: the server's
    limits, charged for every request and every chunk received."""
    hooks: dict[str, list[Callable[..., Any]]] = {"response": [_BodyHook(pace)]}
    limits = httpx.Limits(max_connections=server.max_connections, max_keepalive_connections=server.max_connections)
    verify = ssl_context(server)
    if pace is not None:
        hooks["request"] = [_RequestHook(pace)]
        # a small receive buffer (see Pace.receive_buffer) needs a transport of our own, which httpx
        # does not route through the environment's proxies: with a proxy set, the kernel sizes it
        if transport is None and pace.receive_buffer is not None and not urllib.request.getproxies():
            buffer = [(socket.SOL_SOCKET, socket.SO_RCVBUF, pace.receive_buffer)]
            transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits, socket_options=buffer)
    return httpx.AsyncClient(
        auth=auth,
        transport=transport,
        event_hooks=hooks,
        timeout=httpx.Timeout(server.timeout, connect=min(server.timeout, 10.0)),
        limits=limits,
        verify=verify,
        follow_redirects=True,
        headers={"User-Agent": "trolleyfs"},
    )


class _RequestHook:
    """A request hook: each request sent waits for the server's request rate."""

    def __init__(self, pace: Pace) -> None:
        self._pace = pace

    async def __call__(self, request: httpx.Request) -> None:
        await self._pace.request()


class _BodyHook:
    """A response hook (before the body is read): each chunk of the body, as
    it arrives, is progress for the idle deadlines around the reader, and is
    charged to the server's byte rate (with ``pace``) before the next is read."""

    def __init__(self, pace: Pace | None) -> None:
        self._pace = pace

    async def __call__(self, response: httpx.Response) -> None:
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _ReportingStream(response.stream, self._pace)


class _ReportingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, pace: Pace | None) -> None:
        self._inner = inner
        self._pace = pace

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Reporting(self._inner.__aiter__(), self._pace)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Reporting(AsyncIterator[bytes]):
    def __init__(self, chunks: AsyncIterator[bytes], pace: Pace | None) -> None:
        self._chunks = chunks
        self._pace = pace

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        progress()
        if self._pace is not None:
            await self._pace.received(len(chunk))
        return chunk


class HttpEndpoint:
    """An HTTP endpoint of one server: base URL, the server's shared client,
    its deadline and retry count."""

    def __init__(self, server: Server, url: str, client: httpx.AsyncClient) -> None:
        self.server = server
        self.name = server.name
        self.url = url.rstrip("/")
        self.client = client
        # a request may wait for a connection, then its answer: twice the timeout without progress
        self._idle = server.timeout * 2

    async def _with_retries(
        self, what: str, retries: int, attempt: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        """Run ``attempt`` until it succeeds, retrying what may work later
        (timeouts, resets, 5xx) with jittered backoff; errors come out translated."""
        return await with_retries(
            attempt,
            retries=retries,
            catch=HTTP_FAILURES,
            retryable=retryable,
            translate=lambda exc: translate(exc, self.name, what),
            what=what,
            name=self.name,
        )

    async def request(
        self, method: str, url: str, what: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """A whole-body request with retries, each attempt under an idle
        deadline (the body may take long while it keeps arriving); returns a
        2xx response."""

        async def once() -> httpx.Response:
            with idle_deadline(self._idle, overall_bound(self._idle)):
                resp = await self.client.request(method, url, **kwargs)
            raise_for_status(resp, self.name, what)
            return resp

        return await self._with_retries(what, self.server.retries if idempotent else 0, once)

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
            with idle_deadline(self._idle, overall_bound(self._idle)):
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

        resp = await self._with_retries(what, self.server.retries, once)
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
