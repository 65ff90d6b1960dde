"""A TCP forwarder on loopback that counts the connections it accepts and the
bytes the peer sends back: put it in front of a real DICOM peer to count
associations (retries included), or in front of an HTTP server to count what
it sent, without knowing anything of trolleyfs's internals.

Runs in the test's own trio loop::

    async with trio.open_nursery() as nursery:
        fwd = await nursery.start(CountingForwarder("127.0.0.1", peer_port).run)
        ... connect to 127.0.0.1:fwd.port ...; fwd.connections ...
        nursery.cancel_scope.cancel()
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import trio


class CountingForwarder:
    def __init__(self, host: str, port: int, listen_port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        """``listen_port``: where to listen (0: a free port); ``tls``: a server
        context, to take TLS connections and forward them as plain TCP."""
        self.host, self.upstream_port = host, port
        self.listen_port, self.tls = listen_port, tls
        self.port = 0
        self.connections = 0
        self.bytes_down = 0  # bytes the upstream peer sent to clients

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
        with contextlib.suppress(trio.BrokenResourceError):  # a TLS client that gave up on the handshake
            await self._forward(client)

    async def _forward(self, client: trio.abc.Stream) -> None:
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
                            await dst.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):  # also a failed TLS handshake
                        pass
                    nursery.cancel_scope.cancel()  # one side ended: end the other

                nursery.start_soon(pipe, client, upstream)
                nursery.start_soon(pipe, upstream, client)


@contextmanager
def forwarding(
    host: str, port: int, listen_port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[CountingForwarder]:
    """A :class:`CountingForwarder` run by a trio loop of its own in a thread,
    for tests that are not async (mounts run as subprocesses); stopped at exit."""
    fwd = CountingForwarder(host, port, listen_port, tls)
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
