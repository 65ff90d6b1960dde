"""Helpers of the audit tests."""

from __future__ import annotations

from collections.abc import Callable

import trio

WAIT_S = 120.0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (set by a writer thread: nothing to wait on) until it holds."""
    with trio.move_on_after(WAIT_S):
        while not condition():  # noqa: ASYNC110 - a counter another thread moves
            await trio.sleep(0.01)
        return
    raise AssertionError(f"waited {WAIT_S:.0f} s for {what}")
