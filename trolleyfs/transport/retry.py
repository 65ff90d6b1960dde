"""Trying again what may work later: bounded retries with jittered
exponential backoff, for a call (:func:`with_retries`) or a stream of items
(:func:`retry_stream`, retried only while nothing was handed out yet).

What counts as retryable, and how a raw exception becomes one of ours, is the
caller's to say: each transport keeps its own error mapping."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

import trio

log = logging.getLogger("trolleyfs.retry")
T = TypeVar("T")

FIRST_DELAY = 0.1  # seconds before the first retry (before jitter) ...
MAX_DELAY = 2.0  # ... doubling each time up to this


def backoff_delay(failures: int, jitter: float) -> float:
    """Seconds to wait after ``failures`` failed attempts (0-based: the first
    failure is 0), with ``jitter`` in [0, 1) spreading it over 0.5x .. 1.5x."""
    return min(MAX_DELAY, FIRST_DELAY * 2.0 ** min(failures, 32)) * (0.5 + jitter)


def _same(exc: Exception) -> Exception:
    return exc


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    retries: int,
    catch: tuple[type[Exception], ...],
    retryable: Callable[[Exception], bool] = lambda _: True,
    translate: Callable[[Exception], Exception] = _same,
    what: str = "",
    name: str = "",
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``attempt`` up to ``1 + retries`` times.

    An exception of a ``catch`` type is ``translate``\\ d; if the result is
    ``retryable`` and tries are left, the attempt runs again after a backoff,
    else the (translated) error is raised.  Other exceptions pass untouched."""
    for n in range(retries + 1):
        try:
            return await attempt()
        except catch as exc:
            err = translate(exc)
            if n < retries and retryable(err):
                log.debug("%s: retrying %s after: %s", name, what, err)
                await trio.sleep(backoff_delay(n, jitter()))
                continue
            if err is exc:
                raise
            raise err from None
    raise AssertionError("unreachable")


async def retry_stream(
    open_stream: Callable[[], AsyncGenerator[T, None]],
    *,
    retries: int,
    catch: tuple[type[Exception], ...],
    what: str = "",
    name: str = "",
    jitter: Callable[[], float] = random.random,
) -> AsyncGenerator[T, None]:
    """The items of ``open_stream()``.  A ``catch`` error before the first item
    opens a fresh stream after a backoff (``retries`` times at most); after an
    item was handed out it is raised, since the consumer already has part."""
    for n in range(retries + 1):
        yielded = 0
        try:
            async with aclosing(open_stream()) as stream:  # closed now, also when we are
                async for item in stream:
                    yielded += 1
                    yield item
            return
        except catch as exc:
            if yielded or n >= retries:
                raise
            log.debug("%s: retrying %s after: %s", name, what, exc)
        await trio.sleep(backoff_delay(n, jitter()))
