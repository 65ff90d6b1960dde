"""The rate limiter on trio's virtual clock: a stream of charges from many
tasks stays under the cap in every window (the burst exactly as documented:
rate x W + burst), priorities order the waiters (a user's request arriving
while many prefetch requests wait is served next), costs beyond the burst
are taken in pieces, a hurried waiter moves up, a cancelled one passes the
turn on."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from tests.limits_check import Recording, assert_under_cap, worst_window
from trolleyfs.limits.gcra import Gcra, LocalBucket, capacity_for
from trolleyfs.limits.priority import Priority, Urgency, current, priority
from trolleyfs.limits.queue import RateLimiter

USER, READAHEAD, PREFETCH = Priority.USER, Priority.READAHEAD, Priority.PREFETCH


def limiter(rate: float, burst_s: float) -> tuple[RateLimiter, Recording]:
    recording = Recording(LocalBucket(rate, capacity_for(rate, burst_s)))
    return RateLimiter(recording), recording


def test_the_checker_sees_a_window_over_the_cap() -> None:
    fine = [(0.0, 10.0), (1.0, 10.0), (2.0, 10.0)]
    assert worst_window(fine, rate=10, capacity=10)[2] <= 0
    too_much = [*fine, (2.5, 6.0)]  # 16 units in 0.5 s with a cap of 10 x 0.5 + 10 = 15
    assert worst_window(too_much, rate=10, capacity=10)[2] == 1.0


def test_the_gcra_grants_the_burst_then_the_rate() -> None:
    g = Gcra(rate=100.0, capacity=50.0)
    assert g.attempt(50, now=10.0).granted  # a full bucket: the whole burst at once
    refused = g.attempt(1, now=10.0)
    assert not refused.granted and refused.wait_s == pytest.approx(0.01)
    assert g.attempt(1, now=10.01).granted  # exactly when it said
    assert not g.attempt(2, now=10.02).granted
    assert g.level(now=10.5) == pytest.approx(49.0)
    big = Gcra(rate=100.0, capacity=50.0)
    assert big.attempt(80, now=0.0).granted  # beyond the burst: only when full, then in debt
    assert big.attempt(1, now=0.0).wait_s == pytest.approx(0.31)


async def test_the_burst_is_exactly_burst_s_worth(autojump_clock: trio.abc.Clock) -> None:
    limits, recording = limiter(rate=100.0, burst_s=2.0)  # a burst of 200 units
    waited = await limits.take(200)
    assert trio.current_time() == 0.0 and waited.total == 0.0
    await limits.take(1)
    assert trio.current_time() == pytest.approx(0.01)
    assert recording.refusals == 1


async def test_a_request_is_never_split_even_when_the_burst_is_less_than_one(autojump_clock: trio.abc.Clock) -> None:
    assert capacity_for(0.5, 1.0) == 1.0  # one request every 2 s, 1 s of burst: still one request at a time
    limits, recording = limiter(rate=0.5, burst_s=1.0)
    for _ in range(4):
        await limits.take(1)
    assert [at for at, _ in recording.grants] == pytest.approx([0.0, 2.0, 4.0, 6.0])
    assert_under_cap(recording.grants, 0.5, 1.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_stream_of_charges_stays_under_the_cap_in_every_window(
    autojump_clock: trio.abc.Clock, seed: int
) -> None:
    rate, burst_s = 1000.0, 0.5  # units per second; a burst of 500 units
    limits, recording = limiter(rate, burst_s)
    rng = random.Random(seed)
    total = 0
    done: list[tuple[float, int]] = []

    async def reader(level: Priority, chunks: list[int]) -> None:
        with priority(level):
            for n in chunks:
                await limits.take(n)
                done.append((trio.current_time(), n))
                await trio.sleep(rng.choice([0, 0, 0.001, 0.2]))

    async with trio.open_nursery() as nursery:
        for i in range(6):
            chunks = [rng.choice([1, 64, 300, 499, 500, 501, 1400]) for _ in range(15)]
            total += sum(chunks)
            nursery.start_soon(reader, Priority(i % 3), chunks)
    assert sum(cost for _, cost in recording.grants) == total == sum(n for _, n in done)
    assert max(cost for _, cost in recording.grants) <= 500  # 501 and 1400 went in pieces
    assert_under_cap(recording.grants, rate, 500)
    # and it wastes no time: the last grant comes as soon as the rate allows
    assert trio.current_time() <= (total - 500) / rate + 0.2 + 1e-6


async def test_a_user_arriving_while_many_prefetches_wait_is_served_next(autojump_clock: trio.abc.Clock) -> None:
    limits, recording = limiter(rate=10.0, burst_s=0.1)  # one unit per 0.1 s, burst 1
    await limits.take(1)  # the bucket is empty now
    order: list[str] = []

    async def one(name: str, level: Priority) -> None:
        await limits.take(1, level)
        order.append(name)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, f"prefetch-{i}", PREFETCH)
            await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            nursery.start_soon(one, f"readahead-{i}", READAHEAD)
            await trio.testing.wait_all_tasks_blocked()
        assert limits.waiting == 23 and order == []
        nursery.start_soon(one, "user", USER)
    assert order == ["user", "readahead-0", "readahead-1", "readahead-2"] + [f"prefetch-{i}" for i in range(20)]
    assert_under_cap(recording.grants, 10.0, 1.0)


async def test_a_users_read_is_never_queued_behind_a_whole_prefetch(autojump_clock: trio.abc.Clock) -> None:
    rate = 1000.0
    limits, _ = limiter(rate, burst_s=0.1)  # a burst of 100 units
    finished: dict[str, float] = {}

    async def prefetch() -> None:
        await limits.take(10_000, PREFETCH)  # 10 s worth, taken in 100 pieces
        finished["prefetch"] = trio.current_time()

    async def user() -> None:
        await trio.sleep(3.0)
        started = trio.current_time()
        waited = await limits.take(50, USER)
        finished["user"] = trio.current_time()
        assert finished["user"] - started == waited.total <= (100 + 50) / rate

    async with trio.open_nursery() as nursery:
        nursery.start_soon(prefetch)
        nursery.start_soon(user)
    assert finished["user"] < 3.2 < finished["prefetch"]


async def test_a_hurried_waiter_goes_before_the_others(autojump_clock: trio.abc.Clock) -> None:
    limits, _ = limiter(rate=10.0, burst_s=0.1)
    await limits.take(1)
    order: list[int] = []
    urgencies = [Urgency(PREFETCH) for _ in range(5)]

    async def one(i: int) -> None:
        with priority(urgencies[i]):
            await limits.take(1)
        order.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(one, i)
            await trio.testing.wait_all_tasks_blocked()
        urgencies[3].raise_to(USER)  # a user's read joined fetch 3
        urgencies[3].raise_to(PREFETCH)  # never lowered again
    assert order == [3, 0, 1, 2, 4]
    assert urgencies[3].value == USER


async def test_a_cancelled_waiter_passes_the_turn_on(autojump_clock: trio.abc.Clock) -> None:
    limits, recording = limiter(rate=10.0, burst_s=0.1)
    await limits.take(1)
    served: list[str] = []

    async def one(name: str, level: Priority, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            await limits.take(1, level)
            served.append(name)

    head = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "user", USER, head)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(one, "prefetch", PREFETCH)
        await trio.testing.wait_all_tasks_blocked()
        head.cancel()
    assert served == ["prefetch"] and limits.waiting == 0
    assert recording.grants[-1][0] == pytest.approx(0.1)  # served when the bucket allowed, not later


async def test_the_priority_follows_the_work_into_tasks_and_threads() -> None:
    seen: list[Priority] = []

    async def task() -> None:
        seen.append(current().value)
        seen.append(await trio.to_thread.run_sync(lambda: current().value))

    assert current().value == USER  # unmarked work is a user's
    with priority(READAHEAD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task)
    async with trio.open_nursery() as nursery:
        with priority(PREFETCH):
            nursery.start_soon(task)  # the context of the task that starts it, at that moment
    assert seen == [READAHEAD, READAHEAD, PREFETCH, PREFETCH]
    assert current().value == USER
