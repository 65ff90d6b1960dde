"""A TCP forwarder on loopback that counts the connections it accepts and the
bytes the peer sends back: put it in front of a real DICOM peer to count
associations (retries included), or in front of an HTTP server to count what
it sent, without knowing anything of trolleyfs's internals.

It also keeps a timeline for rate tests: when each chunk the peer sent was
read (:attr:`CountingForwarder.timeline`, ``(monotonic seconds, bytes)``;
:attr:`CountingForwarder.timeline_up` for what clients sent, as a PACS does
to a C-MOVE destination behind the forwarder),
when each connection was opened (:attr:`CountingForwarder.opened`), and, for
an HTTP peer (``http=True``), when each request was sent on and its request
line (:attr:`CountingForwarder.requests`; the requests of trolleyfs have no
body, so a request is its header block).  ``sndbuf`` sets the send buffer of
the sockets towards the client (the kernel doubles it), so that what the
forwarder has read but the client has not is small.

Runs in the test's own trio loop::

    async with trio.open_nursery() as nursery:
        fwd = await nursery.start(CountingForwarder("127.0.0.1", peer_port).run)
        ... connect to 127.0.0.1:fwd.port ...; fwd.connections ...
        nursery.cancel_scope.cancel()
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import trio


class CountingForwarder:
    def __init__(
        self,
        host: str,
        port: int,
        listen_port: int = 0,
        tls: ssl.SSLContext | None = None,
        *,
        http: bool = False,
        sndbuf: int | None = None,
    ) -> None:
        """``listen_port``: where to listen (0: a free port); ``tls``: a server
        context, to take TLS connections and forward them as plain TCP."""
        self.host, self.upstream_port = host, port
        self.listen_port, self.tls = listen_port, tls
        self.port = 0
        self.connections = 0
        self.bytes_down = 0  # bytes the upstream peer sent to clients
        self.http, self.sndbuf = http, sndbuf
        self.timeline: list[tuple[float, int]] = []  # (when read from the peer, bytes)
        self.timeline_up: list[tuple[float, int]] = []  # (when read from a client, bytes)
        self.opened: list[float] = []  # when each connection was accepted
        self.requests: list[tuple[float, str]] = []  # HTTP: (when sent on, request line)

    async def run(self, task_status: trio.TaskStatus[CountingForwarder] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.listen_port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self)
        if self.tls is None:
            await trio.serve_listeners(self._handle, listeners)
        else:
            tls = [trio.SSLListener(ln, self.tls, https_compatible=True) for ln in listeners]
            await trio.serve_listeners(self._handle, tls)

    async def _handle(self, client: trio.abc.Stream) -> None:
        self.connections += 1
        self.opened.append(time.monotonic())
        if self.sndbuf is not None and isinstance(client, trio.SocketStream):
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
        with contextlib.suppress(trio.BrokenResourceError):  # a TLS client that gave up on the handshake
            await self._forward(client)

    async def _forward(self, client: trio.abc.Stream) -> None:
        pending = bytearray()  # HTTP: a request's header block, until it is complete
        async with client:
            try:
                upstream = await trio.open_tcp_stream(self.host, self.upstream_port)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:

                async def pipe(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
                    try:
                        while data := await src.receive_some(65536):
                            if src is upstream:
                                self.bytes_down += len(data)
                                self.timeline.append((time.monotonic(), len(data)))
                            else:
                                self.timeline_up.append((time.monotonic(), len(data)))
                                if self.http:
                                    self._requests(pending, data)
                            await dst.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):  # also a failed TLS handshake
                        pass
                    nursery.cancel_scope.cancel()  # one side ended: end the other

                nursery.start_soon(pipe, client, upstream)
                nursery.start_soon(pipe, upstream, client)

    def _requests(self, pending: bytearray, data: bytes | bytearray) -> None:
        pending += data
        while (end := pending.find(b"\r\n\r\n")) >= 0:
            line = bytes(pending[: pending.find(b"\r\n")]).decode("latin-1")
            del pending[: end + 4]
            self.requests.append((time.monotonic(), line))


@contextmanager
def forwarding(
    host: str,
    port: int,
    listen_port: int = 0,
    tls: ssl.SSLContext | None = None,
    *,
    http: bool = False,
    sndbuf: int | None = None,
) -> Iterator[CountingForwarder]:
    """A :class:`CountingForwarder` run by a trio loop of its own in a thread,
    for tests that are not async (mounts run as subprocesses); stopped at exit."""
    fwd = CountingForwarder(host, port, listen_port, tls, http=http, sndbuf=sndbuf)
    started = threading.Event()
    token: list[trio.lowlevel.TrioToken] = []
    scope = trio.CancelScope()

    async def main() -> None:
        token.append(trio.lowlevel.current_trio_token())
        with scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(fwd.run)
                started.set()
        started.set()

    thread = threading.Thread(target=trio.run, args=(main,), name="tcp-forwarder", daemon=True)
    thread.start()
    try:
        if not started.wait(60) or not fwd.port:
            raise AssertionError("the TCP forwarder did not start")
        yield fwd
    finally:
        if token:
            trio.from_thread.run_sync(scope.cancel, trio_token=token[0])
        thread.join(60)
