"""The link to Redis steps aside when Redis fails: one warning per outage, no
call while it backs off (5 s, doubling, at most a minute), one try after
each back-off, a line when Redis is back; a call that hangs ends at its
deadline.  On trio's MockClock, moved by hand (the calls run in threads)."""

from __future__ import annotations

import logging
import threading

import pytest
import redis
import trio

from trolleyfs.cluster.link import BACKOFF_FIRST_S, BACKOFF_MAX_S, Link, describe
from trolleyfs.cluster.settings import SharedConfig
from trolleyfs.credentials import Secret

CONFIG = SharedConfig(urls=("redis://127.0.0.1:6379/0",), username="trolleyfs", password=Secret("pw-never-shown"))


class Client:
    """Stands in for redis-py's client: counts calls, fails while told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail: Exception | None = redis.ConnectionError(
            "Error 111 connecting to 127.0.0.1:6379. Connection refused."
        )

    def close(self) -> None:
        pass

    def ping(self) -> bool:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return True


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.name == "trolleyfs.cluster"]


async def test_an_outage_costs_one_warning_and_one_call_per_back_off(mock_clock, caplog) -> None:
    client = Client()
    link = Link(CONFIG, connect=lambda config: client)
    caplog.set_level(logging.DEBUG, logger="trolleyfs.cluster")

    async def ping() -> object:
        return await link.run(lambda c: c.ping(), "no tier")

    for _ in range(10):
        assert await ping() == "no tier"
    assert client.calls == 1 and not link.breaker.up
    (warning,) = records(caplog, logging.WARNING)
    assert "redis://127.0.0.1:6379/0 unavailable (ConnectionError: Error 111" in warning and "5 s" in warning
    tries = []
    backoff = BACKOFF_FIRST_S
    for _ in range(6):  # each back-off ends with one try
        mock_clock.jump(backoff - 0.5)
        await ping()
        before = client.calls
        mock_clock.jump(0.5)
        await ping()
        await ping()
        tries.append(client.calls - before)
        backoff = min(backoff * 2, BACKOFF_MAX_S)
    assert tries == [1] * 6 and client.calls == 7
    assert len(records(caplog, logging.WARNING)) == 1  # still the one warning
    client.fail = None
    mock_clock.jump(BACKOFF_MAX_S)
    assert await ping() is True and link.breaker.up
    assert any("is back" in m for m in records(caplog, logging.INFO))
    client.fail = redis.AuthenticationError("invalid username-password pair or user is disabled.")
    assert await ping() == "no tier"
    assert len(records(caplog, logging.WARNING)) == 2  # a new outage, a new warning
    assert link.breaker.outages == 2 and "AuthenticationError" in link.breaker.last_error
    assert not any("pw-never-shown" in r.getMessage() for r in caplog.records)


async def test_a_call_that_hangs_ends_at_its_deadline(mock_clock, caplog) -> None:
    entered, release = threading.Event(), threading.Event()

    class Hung:
        def get(self, key: str) -> bytes:
            entered.set()
            release.wait(30)
            return b"too late"

    link = Link(CONFIG, connect=lambda config: Hung())
    results = []
    try:
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                results.append(await link.run(lambda c: c.get("k"), None))

            nursery.start_soon(call)
            await trio.to_thread.run_sync(entered.wait, 30)
            mock_clock.jump(link.deadline)
    finally:
        release.set()
    assert results == [None] and not link.breaker.up and link.breaker.last_error == "no answer in time"
    assert link.deadline == CONFIG.timeout * 3


async def test_the_client_is_built_once_in_a_worker_thread(mock_clock) -> None:
    built: list[str] = []

    def connect(config: SharedConfig) -> Client:
        built.append(threading.current_thread().name)
        client = Client()
        client.fail = None
        return client

    link = Link(CONFIG, connect=connect)
    async with trio.open_nursery() as nursery:
        for _ in range(8):
            nursery.start_soon(link.run, lambda c: c.ping(), False)
    assert len(built) == 1 and built[0] != threading.main_thread().name
    await link.aclose()


def test_describe_is_one_line_without_secrets() -> None:
    assert describe(trio.TooSlowError()) == "no answer in time"
    assert describe(redis.ResponseError("OOM command not allowed\nmore")) == "ResponseError: OOM command not allowed"
    assert describe(OSError()) == "OSError"
