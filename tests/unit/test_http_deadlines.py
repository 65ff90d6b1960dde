"""HTTP deadlines bound silence, not progress (on trio's virtual clock, through
the real client with httpx's transport seam): a body that keeps arriving is
read whole however long it takes; a body that stops is given up on one
deadline after its last chunk; each chunk is progress for the deadlines
around the request too (the FUSE operation's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from trolleyfs.endpoints import Server
from trolleyfs.errors import Unavailable
from trolleyfs.idle import idle_deadline
from trolleyfs.protocols import endpoint as Endpoint
from trolleyfs.transport.http import HttpEndpoint, build_client

TIMEOUT = 5.0
IDLE = 2 * TIMEOUT  # a request's deadline: a connection, then its answer


class Trickle(httpx.AsyncByteStream):
    """A body of ``chunks`` chunks, one every ``gap`` seconds; then, with
    ``stall``, nothing more for ever."""

    def __init__(self, chunks: int, gap: float, stall: bool = False) -> None:
        self.chunks, self.gap, self.stall = chunks, gap, stall
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            await trio.sleep(self.gap)
            self.sent += 1
            yield b"x" * 1000
        if self.stall:
            await trio.sleep_forever()


def _endpoint(body: Trickle) -> HttpEndpoint:
    url = "http://pacs.example/dicom-web"
    server = Server("pacs", Endpoint("qido-rs", url=url), Endpoint("wado-rs", url=url), timeout=TIMEOUT, retries=0)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=body))
    return HttpEndpoint(server, url, build_client(server, None, transport=transport))


async def test_a_body_longer_than_the_deadline_is_read_whole_while_it_keeps_coming(
    autojump_clock: trio.abc.Clock,
) -> None:
    body = Trickle(chunks=50, gap=IDLE * 0.9)  # 45 deadlines long, never one silent
    ep = _endpoint(body)
    start = trio.current_time()
    with idle_deadline(IDLE) as outer:  # as the FUSE operation's
        resp = await ep.request("GET", f"{ep.url}/studies", "study search")
    assert len(resp.content) == 50_000 and body.sent == 50
    assert trio.current_time() - start == pytest.approx(50 * IDLE * 0.9)
    assert outer.reports >= 50  # every chunk reached the outer deadline too
    await ep.client.aclose()


async def test_a_body_that_stops_is_given_up_one_deadline_after_its_last_chunk(
    autojump_clock: trio.abc.Clock,
) -> None:
    body = Trickle(chunks=5, gap=IDLE * 0.9, stall=True)
    ep = _endpoint(body)
    start = trio.current_time()
    with pytest.raises(Unavailable, match="no answer before the deadline"):
        await ep.request("GET", f"{ep.url}/studies", "study search")
    assert trio.current_time() - start == pytest.approx(5 * IDLE * 0.9 + IDLE)
    await ep.client.aclose()


async def test_a_streamed_body_reports_each_chunk_to_the_deadlines_around_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    body = Trickle(chunks=20, gap=IDLE * 0.9)
    ep = _endpoint(body)
    got = 0
    with idle_deadline(IDLE) as outer:
        async with ep.stream("GET", f"{ep.url}/studies/1/series/2", "series") as resp:
            async for chunk in resp.aiter_bytes():
                got += len(chunk)
    assert got == 20_000 and outer.reports >= 20
    await ep.client.aclose()
