"""TCP forwarders on loopback with a gate, to hold a real PACS back for as long
as a test needs, deterministically (no sleeps: the test waits until the gate
reports what it holds, does what it races against the PACS, then opens it).

* :class:`GatedForwarder` holds new connections while shut (nothing is read
  from them, nothing is forwarded), except the next ``let_through`` ones.  Put
  it where the PACS sends its C-MOVE sub-operations (its move destination
  points here) to hold the PACS's C-STOREs back: :attr:`~GatedForwarder.held`
  counts the associations waiting.
* :class:`ReplyGate` forwards everything, but while shut holds the PACS's
  DICOM PDUs after the first of each connection (the A-ASSOCIATE-AC).  Put it
  in front of the PACS's Q/R port for C-MOVE requests: the PACS carries out
  the sub-operations, and its C-MOVE responses wait here;
  :attr:`~ReplyGate.held` counts the PDUs waiting.  A PACS sends a response
  after each sub-operation, so a held PDU means the objects before it arrived.

Each runs in a trio loop of its own in a thread (mounts are subprocesses; the
tests that use them are not async)::

    with gated(GatedForwarder("127.0.0.1", port)) as gate:
        gate.shut(); ...; wait_for(lambda: gate.held >= 1, ...); ...; gate.open()
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import trio

from tests.servers.tcpcount import CountingForwarder


class _Gate(CountingForwarder):
    """A forwarder with a gate the test thread shuts and opens."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._open = trio.Event()
        self._open.set()
        self.held = 0
        self.token: trio.lowlevel.TrioToken | None = None

    async def run(self, task_status: trio.TaskStatus[CountingForwarder] = trio.TASK_STATUS_IGNORED) -> None:
        self.token = trio.lowlevel.current_trio_token()
        await super().run(task_status)

    async def _wait_open(self) -> None:
        if not self._open.is_set():
            self.held += 1
            try:
                await self._open.wait()
            finally:
                self.held -= 1

    def _shut(self) -> None:
        if self._open.is_set():
            self._open = trio.Event()

    # called from the test's thread
    def shut(self) -> None:
        assert self.token is not None
        trio.from_thread.run_sync(self._shut, trio_token=self.token)

    def open(self) -> None:
        assert self.token is not None
        trio.from_thread.run_sync(self._open.set, trio_token=self.token)


class GatedForwarder(_Gate):
    """Holds new connections while shut, but for the next ``let_through``."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self._let_through = 0

    def shut(self, let_through: int = 0) -> None:
        def _shut() -> None:
            self._let_through = let_through
            self._shut()

        assert self.token is not None
        trio.from_thread.run_sync(_shut, trio_token=self.token)

    async def _handle(self, client: trio.abc.Stream) -> None:
        if not self._open.is_set() and self._let_through > 0:
            self._let_through -= 1
        else:
            await self._wait_open()
        await super()._handle(client)


class ReplyGate(_Gate):
    """Holds the peer's PDUs after the first of each connection while shut."""

    async def _handle(self, client: trio.abc.Stream) -> None:
        self.connections += 1
        async with client:
            try:
                upstream = await trio.open_tcp_stream(self.host, self.upstream_port)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:

                async def up() -> None:
                    try:
                        while data := await client.receive_some(65536):
                            await upstream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    nursery.cancel_scope.cancel()

                async def down() -> None:
                    buf, pdus = b"", 0
                    try:
                        while data := await upstream.receive_some(65536):
                            self.bytes_down += len(data)
                            buf += data
                            while len(buf) >= 6 and len(buf) >= 6 + int.from_bytes(buf[2:6], "big"):
                                size = 6 + int.from_bytes(buf[2:6], "big")  # PDU: type, reserved, length
                                pdu, buf = buf[:size], buf[size:]
                                if pdus:
                                    await self._wait_open()
                                pdus += 1
                                await client.send_all(pdu)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(up)
                nursery.start_soon(down)


G = TypeVar("G", bound=_Gate)


@contextmanager
def gated(gate: G) -> Iterator[G]:
    """Run ``gate`` (open) in a thread of its own; stopped at exit."""
    started = threading.Event()
    scope = trio.CancelScope()

    async def main() -> None:
        with scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(gate.run)
                started.set()
        started.set()

    thread = threading.Thread(target=trio.run, args=(main,), name="tcp-gate", daemon=True)
    thread.start()
    try:
        if not started.wait(60) or not gate.port:
            raise AssertionError("the gated TCP forwarder did not start")
        yield gate
    finally:
        if gate.token is not None:
            trio.from_thread.run_sync(scope.cancel, trio_token=gate.token)
        thread.join(60)
