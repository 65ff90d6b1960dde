"""Idle deadlines (trolleyfs.idle) on trio's virtual clock: they bound silence,
not progress; they nest; progress reported from another thread or lent by a
beacon moves them; an overall bound ends even a steady stream."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.lowlevel
import trio.testing

from trolleyfs.idle import Beacon, ThreadReporter, idle_deadline, overall_bound, progress

IDLE = 10.0


async def _trickle(gaps: list[float]) -> None:
    for gap in gaps:
        await trio.sleep(gap)
        progress()


async def test_progress_keeps_it_alive_for_many_times_the_deadline(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    with idle_deadline(IDLE) as d:
        await _trickle([IDLE * 0.9] * 20)  # 18 deadlines' worth, never 1 of silence
    assert trio.current_time() - start == pytest.approx(18 * IDLE)
    assert d.reports == 20 and not d.scope.cancelled_caught


async def test_a_silence_longer_than_the_deadline_ends_it_at_last_progress_plus_idle(
    autojump_clock: trio.abc.Clock,
) -> None:
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError), idle_deadline(IDLE) as d:
        await _trickle([IDLE * 0.5] * 3)  # progress at 5, 10, 15
        await trio.sleep(IDLE * 1.01)  # then silence
    assert trio.current_time() - start == pytest.approx(15 + IDLE)
    assert not d.overran


async def test_without_progress_it_is_fail_after(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError), idle_deadline(IDLE):
        await trio.sleep_forever()
    assert trio.current_time() - start == pytest.approx(IDLE)


async def test_the_overall_bound_ends_a_stream_that_never_ends(autojump_clock: trio.abc.Clock) -> None:
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError), idle_deadline(IDLE, overall=100.0) as d:
        while True:
            await _trickle([1.0])
    assert trio.current_time() - start == pytest.approx(100.0)
    assert d.overran
    assert overall_bound(30.0) == 3600.0 and overall_bound(600.0) == 6000.0  # an hour, or ten deadlines


async def test_nested_deadlines_all_move_and_an_inner_one_fires_first(autojump_clock: trio.abc.Clock) -> None:
    with idle_deadline(IDLE * 3) as outer:
        for _ in range(5):
            with pytest.raises(trio.TooSlowError), idle_deadline(IDLE) as inner:
                await _trickle([IDLE * 0.9] * 3)
                await trio.sleep_forever()
            assert inner.reports == 3
        # five inner waits of 37 s each: the outer one lived on their progress
    assert outer.reports == 15 and not outer.scope.cancelled_caught


async def test_progress_after_the_block_changes_nothing(autojump_clock: trio.abc.Clock) -> None:
    with idle_deadline(IDLE) as d:
        pass
    progress()
    d.progress()
    assert d.reports == 0


def burst(report: ThreadReporter) -> None:
    for _ in range(1000):
        report()


async def test_thread_reports_move_the_deadline_and_are_coalesced(mock_clock: trio.testing.MockClock) -> None:
    with idle_deadline(IDLE) as d:
        report = ThreadReporter()
        for _ in range(3):
            mock_clock.jump(IDLE * 0.9)
            # a thousand reports from a worker thread, as pynetdicom makes one per PDU
            await trio.to_thread.run_sync(burst, report)
            await trio.testing.wait_all_tasks_blocked()
        assert 3 <= d.reports < 3 * 1000  # at least one hop per burst, far fewer than calls
        mock_clock.jump(IDLE * 0.9)  # 3.6 deadlines since the start: alive on the threads' progress
        await trio.lowlevel.checkpoint()
    assert not d.scope.cancelled_caught


async def test_a_reporter_outside_any_deadline_reports_nothing() -> None:
    report = ThreadReporter()
    done = threading.Event()

    def work() -> None:
        report()
        done.set()

    await trio.to_thread.run_sync(work)
    assert done.is_set()


async def test_a_beacon_lends_the_workers_progress_to_who_waits(autojump_clock: trio.abc.Clock) -> None:
    beacon = Beacon()
    lock = trio.Lock()
    waited: list[float] = []

    async def worker() -> None:
        async with lock:
            with beacon.reporting():
                await _trickle([IDLE * 0.9] * 10)  # 9 deadlines long

    async def waiter() -> None:
        start = trio.current_time()
        with idle_deadline(IDLE):
            with beacon.listening():
                await lock.acquire()
            lock.release()
        waited.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter)
    assert waited == [pytest.approx(9 * IDLE)]


async def test_without_the_beacon_the_waiter_would_have_timed_out(autojump_clock: trio.abc.Clock) -> None:
    lock = trio.Lock()

    async def worker() -> None:
        async with lock:
            await _trickle([IDLE * 0.9] * 10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.TooSlowError), idle_deadline(IDLE):
            await lock.acquire()
