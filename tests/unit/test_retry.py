"""The one retry helper: how many attempts, what is retried, how long it
waits (on trio's virtual clock), and the transports that use it."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import httpx
import pytest
import trio

from trolleyfs.endpoints import DicomQrEndpoint, Server, WadoRsEndpoint
from trolleyfs.errors import NotFound, ProtocolError, RemoteError, Unavailable
from trolleyfs.transport.dimse import with_dimse_retries
from trolleyfs.transport.http import HttpEndpoint
from trolleyfs.transport.retry import MAX_DELAY, backoff_delay, retry_stream, with_retries


class Attempts:
    """An attempt that fails with the given errors in turn, then answers; records when it ran."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(trio.current_time())
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


def unavailable() -> Unavailable:
    return Unavailable("try later", server="pacs", what="x")


def test_backoff_grows_and_is_bounded() -> None:
    lows = [backoff_delay(n, 0.0) for n in range(40)]
    highs = [backoff_delay(n, 0.999999) for n in range(40)]
    assert lows[:3] == pytest.approx([0.05, 0.1, 0.2])
    assert lows == sorted(lows)
    assert max(highs) <= 1.5 * MAX_DELAY and min(lows) >= 0.05
    assert backoff_delay(10_000, 0.5) == MAX_DELAY  # no overflow however many failures


async def test_counts_attempts_and_gives_up_after_the_retries(autojump_clock: trio.abc.Clock) -> None:
    attempt = Attempts(*(unavailable() for _ in range(10)))
    last = attempt.errors[3]
    with pytest.raises(Unavailable) as info:
        await with_retries(attempt, retries=3, catch=(Unavailable,))
    assert len(attempt.times) == 4
    assert info.value is last  # the last error, untouched


async def test_succeeds_once_the_error_passes(autojump_clock: trio.abc.Clock) -> None:
    attempt = Attempts(unavailable(), unavailable())
    assert await with_retries(attempt, retries=2, catch=(Unavailable,)) == "answer"
    assert len(attempt.times) == 3


@pytest.mark.parametrize("error", [ProtocolError("bad"), NotFound("gone"), ValueError("a bug")])
async def test_retries_only_what_is_retryable(error: Exception, autojump_clock: trio.abc.Clock) -> None:
    attempt = Attempts(error)
    with pytest.raises(type(error)):
        await with_retries(attempt, retries=5, catch=(RemoteError,), retryable=lambda exc: isinstance(exc, Unavailable))
    assert len(attempt.times) == 1


async def test_no_retries_means_one_attempt(autojump_clock: trio.abc.Clock) -> None:
    attempt = Attempts(unavailable())
    with pytest.raises(Unavailable):
        await with_retries(attempt, retries=0, catch=(Unavailable,))
    assert len(attempt.times) == 1


async def test_errors_come_out_translated(autojump_clock: trio.abc.Clock) -> None:
    attempt = Attempts(OSError("reset"), OSError("reset"), ConnectionRefusedError("refused"))
    with pytest.raises(Unavailable, match="refused") as info:
        await with_retries(attempt, retries=2, catch=(OSError,), translate=lambda exc: Unavailable(str(exc)))
    assert len(attempt.times) == 3
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.5), (0.999999, 1.5)])
async def test_waits_between_attempts_are_bounded(jitter: float, factor: float, autojump_clock: trio.abc.Clock) -> None:
    attempt = Attempts(*(unavailable() for _ in range(8)))
    with pytest.raises(Unavailable):
        await with_retries(attempt, retries=7, catch=(Unavailable,), jitter=lambda: jitter)
    gaps = [b - a for a, b in zip(attempt.times, attempt.times[1:], strict=False)]
    assert gaps == pytest.approx([factor * min(MAX_DELAY, 0.1 * 2**n) for n in range(7)])
    assert max(gaps) <= 1.5 * MAX_DELAY


# --------------------------------------------------------------------------- streams


class Streams:
    """Streams that fail after yielding ``good[i]`` items, one per call, then a whole one."""

    def __init__(self, *good: int) -> None:
        self.good = list(good)
        self.opened = 0

    async def open(self) -> AsyncGenerator[int, None]:
        self.opened += 1
        fail_after = self.good.pop(0) if self.good else None
        for i in range(3):
            if fail_after is not None and i == fail_after:
                raise unavailable()
            yield i


async def test_a_stream_is_retried_while_nothing_was_handed_out(autojump_clock: trio.abc.Clock) -> None:
    streams = Streams(0, 0)
    got = [x async for x in retry_stream(streams.open, retries=2, catch=(Unavailable,))]
    assert got == [0, 1, 2] and streams.opened == 3


async def test_a_stream_is_not_retried_after_an_item(autojump_clock: trio.abc.Clock) -> None:
    streams = Streams(2)
    got: list[int] = []
    with pytest.raises(Unavailable):
        async for x in retry_stream(streams.open, retries=5, catch=(Unavailable,)):
            got.append(x)
    assert got == [0, 1] and streams.opened == 1


async def test_a_stream_gives_up_after_the_retries(autojump_clock: trio.abc.Clock) -> None:
    streams = Streams(0, 0, 0, 0)
    with pytest.raises(Unavailable):
        async for _ in retry_stream(streams.open, retries=2, catch=(Unavailable,)):
            pass
    assert streams.opened == 3


# --------------------------------------------------------------------------- the transports use it


def _server(retries: int) -> Server:
    url = "http://pacs.test/dicom-web"
    return Server("pacs", WadoRsEndpoint(url), WadoRsEndpoint(url), retries=retries, timeout=5)


@pytest.mark.parametrize(("status", "expected", "requests"), [(503, Unavailable, 3), (404, NotFound, 1)])
async def test_http_requests_are_retried_by_status(
    status: int, expected: type[Exception], requests: int, autojump_clock: trio.abc.Clock
) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(status, text="no")

    server = _server(retries=2)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        ep = HttpEndpoint(server, server.search.where(), client)
        with pytest.raises(expected):
            await ep.request("GET", f"{ep.url}/studies", "study search")
        seen_before = len(seen)
        with pytest.raises(expected):
            await ep.request("POST", f"{ep.url}/studies", "a post", idempotent=False)
    assert seen_before == requests
    assert len(seen) - seen_before == 1  # never repeated when not idempotent


async def test_dimse_retries_only_unavailable(autojump_clock: trio.abc.Clock) -> None:
    ep = DicomQrEndpoint("127.0.0.1", 104)
    server = Server("qr", ep, ep, retries=3)
    busy = Attempts(*(unavailable() for _ in range(9)))
    with pytest.raises(Unavailable):
        await with_dimse_retries(server, busy, "study search")
    refused = Attempts(ProtocolError("no"))
    with pytest.raises(ProtocolError):
        await with_dimse_retries(server, refused, "study search")
    assert (len(busy.times), len(refused.times)) == (4, 1)
