"""Background hours: ranges across midnight and several ranges, when the
window opens next (daylight saving included), and waiting for it on trio's
virtual clock with a wall clock that follows it.  A user's read never
waits; a hurried prefetch stops waiting; background work that must not wait
is refused with the opening time."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from trolleyfs.limits.hours import DAY_S, Hours
from trolleyfs.limits.priority import Priority, Urgency, priority
from trolleyfs.limits.window import MIN_SLEEP_S, OutsideHours, Window

AMS = ZoneInfo("Europe/Amsterdam")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def virtual_wall(start: dt.datetime):
    """A wall clock that starts at ``start`` and moves with trio's clock."""
    return lambda: start + dt.timedelta(seconds=trio.current_time())


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("19:00-07:00", ["19:00", "23:59:59", "00:00", "06:59:59"], ["07:00", "12:00", "18:59:59"]),
        ("12:00-13:00,19:00-07:00", ["12:00", "12:59", "19:30", "03:00"], ["13:00", "08:00", "18:00", "07:00"]),
        ("00:00-24:00", ["00:00", "12:00", "23:59:59"], []),
        ("22:00-24:00, 00:00-01:00", ["22:00", "23:59", "00:30"], ["01:00", "21:59"]),
        ("9:30-10:00", ["09:30", "09:59:59"], ["10:00", "09:29"]),
    ],
)
def test_ranges_across_midnight_and_several(text: str, inside: list[str], outside: list[str]) -> None:
    hours = Hours.parse(text)
    assert [t for t in inside if not hours.contains(dt.time.fromisoformat(t))] == []
    assert [t for t in outside if hours.contains(dt.time.fromisoformat(t))] == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a list of ranges"),
        ("19:00", "is not a range of times"),
        ("19-07", "is not a range of times"),
        ("25:00-07:00", "is not a time of day"),
        ("19:60-07:00", "is not a time of day"),
        ("24:00-07:00", "is not a time of day"),
        ("19:00-19:00", "is empty"),
        ("12:00-13:00,", "is not a list of ranges"),
        ("noon-midnight", "is not a range of times"),
    ],
)
def test_bad_hours_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Hours.parse(text)


@pytest.mark.parametrize(
    ("text", "now", "opens"),
    [
        ("19:00-07:00", "2026-06-01T08:00", "2026-06-01T19:00"),
        ("19:00-07:00", "2026-06-01T07:00", "2026-06-01T19:00"),
        ("19:00-07:00", "2026-06-01T23:00", "2026-06-01T23:00"),  # open now
        ("12:00-13:00,19:00-07:00", "2026-06-01T08:00", "2026-06-01T12:00"),
        ("12:00-13:00,19:00-07:00", "2026-06-01T13:00", "2026-06-01T19:00"),
        ("01:00-02:00", "2026-06-01T03:00", "2026-06-02T01:00"),  # tomorrow
        ("01:00-02:00", "2026-12-31T23:30", "2027-01-01T01:00"),  # next year
    ],
)
def test_when_the_hours_open_next(text: str, now: str, opens: str) -> None:
    assert Hours.parse(text).next_open(at(now)) == at(opens)


def test_when_open_hours_close() -> None:
    hours = Hours.parse("12:00-13:00,19:00-07:00")
    assert hours.next_close(at("2026-06-01T23:10")) == at("2026-06-02T07:00")
    assert hours.next_close(at("2026-06-01T12:59:30")) == at("2026-06-01T13:00")
    assert hours.next_close(at("2026-06-01T08:00")) is None  # closed
    assert Hours.parse("00:00-24:00").next_close(at("2026-06-01T08:00")) is None  # never


@pytest.mark.parametrize(
    ("text", "now_local", "hours_until"),
    [
        ("04:00-05:00", "2026-03-29T00:30", 2.5),  # 02:00 CET -> 03:00 CEST: an hour fewer
        ("03:00-04:00", "2026-10-25T00:30", 3.5),  # 03:00 CEST -> 02:00 CET: an hour more
        ("19:00-07:00", "2026-03-29T08:00", 11.0),  # after the change: as any day
    ],
)
def test_the_opening_counts_daylight_saving(text: str, now_local: str, hours_until: float) -> None:
    now = at(now_local).replace(tzinfo=AMS)
    window = Window("pacs", Hours.parse(text), tz=AMS, now=lambda: now)
    opens = window.next_open()
    assert opens is not None and opens.timestamp() - now.timestamp() == hours_until * 3600


async def test_prefetch_waits_for_the_window_and_a_users_read_does_not(autojump_clock: trio.abc.Clock) -> None:
    start = at("2026-06-01T08:00").replace(tzinfo=AMS)
    window = Window("pacs", Hours.parse("19:00-07:00"), tz=AMS, now=virtual_wall(start))
    assert not window.is_open()
    assert await window.wait_open(Priority.USER) == 0.0 and trio.current_time() == 0.0
    with priority(Priority.PREFETCH), trio.fail_after(DAY_S):  # a wrong window would wait for ever
        waited = await window.wait_open()
    assert 11 * 3600 <= waited <= 11 * 3600 + MIN_SLEEP_S  # until 19:00, looking at the wall clock on the way
    assert window.is_open() and window.next_open() is None
    assert await window.wait_open(Priority.READAHEAD) == 0.0  # open: nobody waits


async def test_waiting_across_midnight_and_between_ranges(autojump_clock: trio.abc.Clock) -> None:
    start = at("2026-06-01T23:00").replace(tzinfo=AMS)
    wall = virtual_wall(start)
    window = Window("pacs", Hours.parse("01:00-02:00,12:00-13:00"), tz=AMS, now=wall)
    opened = []
    for _ in range(3):
        with trio.fail_after(DAY_S):
            await window.wait_open(Priority.READAHEAD)
        opened.append(wall().strftime("%d %H:%M"))
        await trio.sleep(3600)  # the hour is over
    assert opened == ["02 01:00", "02 12:00", "03 01:00"]


async def test_a_hurried_prefetch_stops_waiting(autojump_clock: trio.abc.Clock) -> None:
    start = at("2026-06-01T08:00").replace(tzinfo=AMS)
    window = Window("pacs", Hours.parse("19:00-07:00"), tz=AMS, now=virtual_wall(start))
    urgency = Urgency(Priority.PREFETCH)
    waited: list[float] = []

    async def prefetch() -> None:
        waited.append(await window.wait_open(urgency))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(prefetch)
        await trio.sleep(3600.5)
        urgency.raise_to(Priority.USER)  # a user opened the file this prefetch is fetching
    assert waited == [3600.5]


def test_work_that_must_not_wait_is_refused_with_the_opening_time() -> None:
    now = at("2026-06-01T08:00").replace(tzinfo=AMS)
    window = Window("pacs", Hours.parse("19:00-07:00"), tz=AMS, now=lambda: now)
    window.admit(Priority.USER)  # a user's read always runs
    with pytest.raises(OutsideHours) as info:
        window.admit(Priority.READAHEAD)
    assert info.value.opens == at("2026-06-01T19:00").replace(tzinfo=AMS)
    assert str(info.value) == "pacs: outside the background hours (19:00-07:00); they open at 2026-06-01T19:00+02:00"
    assert window.describe() == {
        "background_hours": "19:00-07:00",
        "open": False,
        "opens": "2026-06-01T19:00:00+02:00",
        "closes": None,
    }


def test_the_default_clocks_are_the_systems() -> None:
    window = Window("pacs", Hours.parse("00:00-24:00"))
    local = window.local()
    assert local.utcoffset() == dt.datetime.now().astimezone().utcoffset()
    assert window.is_open() and window.next_open() is None
