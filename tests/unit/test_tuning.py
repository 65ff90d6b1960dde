"""The transport libraries' settings trolleyfs changes for speed
(:mod:`trolleyfs.transport.tuning`): applied to the versions installed, and
what h11 parses through the tuned buffer is exactly what was sent."""

from __future__ import annotations

import os

import h11
import pytest

from trolleyfs.transport.tuning import tune_h11


def test_the_h11_tuning_applies_to_the_installed_h11():
    # if a new h11 changes its buffer, the tuning steps aside: this says so
    assert tune_h11() is True


def _client_read(wire: bytes, step: int) -> list[tuple[int, bytes]]:
    """Feed ``wire`` (the server's bytes) to an h11 client ``step`` bytes at a
    time; each response's status and body as h11 hands them on."""
    conn = h11.Connection(h11.CLIENT)
    out: list[tuple[int, bytes]] = []
    body = bytearray()
    status = 0
    requests = 0
    pos = 0

    def ask() -> None:
        nonlocal requests
        conn.send(h11.Request(method="GET", target=f"/{requests}", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        requests += 1

    ask()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = wire[pos : pos + step]
            pos += len(chunk)
            conn.receive_data(chunk)  # b"" at the end: the server closed
            continue
        if isinstance(event, h11.Response):
            status, body = event.status_code, bytearray()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, bytes(body)))
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
                ask()
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return out


@pytest.mark.parametrize("step", [1, 7, 4096, 1 << 20])
def test_bodies_arrive_whole_and_in_order_through_the_tuned_buffer(step):
    tune_h11()
    first, second, third = os.urandom(300_000), os.urandom(70_001), os.urandom(123_457)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (second[:1], second[1:40_000], second[40_000:]))
    wire = (
        # a body of known length, then (pipelined in the same bytes) a chunked one
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(first), first)
        + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%s0\r\n\r\n" % chunked
        # and one that ends when the server closes
        + b"HTTP/1.1 206 Partial\r\nConnection: close\r\n\r\n%s" % third
    )
    assert _client_read(wire, step) == [(200, first), (200, second), (206, third)]
