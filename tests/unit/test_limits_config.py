"""A server's ``limits`` table: the documented shape parses; each mistake
is one ConfigError naming file, key and problem; what ``trolleyfs check``
will say; one server's limits counting what it took and waited, and why."""

from __future__ import annotations

import datetime as dt
import tomllib
from zoneinfo import ZoneInfo

import pytest
import trio
import trio.testing

from trolleyfs.errors import ConfigError
from trolleyfs.limits.hours import Hours
from trolleyfs.limits.priority import Priority, priority
from trolleyfs.limits.server import Limits, build_limits
from trolleyfs.limits.settings import LimitsConfig, limits_of, parse_limits
from trolleyfs.limits.window import Window
from trolleyfs.tomltable import Table


def server_table(text: str) -> Table:
    data = tomllib.loads(text)
    return Table("pacs.toml", "servers.pacs", data["servers"]["pacs"])


def limits(inline: str) -> LimitsConfig | None:
    return limits_of(server_table(f"[servers.pacs]\nlimits = {{ {inline} }}\n"))


def test_the_documented_example_parses() -> None:
    got = limits('mb_per_s = 50, requests_per_s = 20, background_hours = "19:00-07:00"')
    assert got == LimitsConfig(
        mb_per_s=50.0, requests_per_s=20.0, burst_s=1.0, background_hours=Hours(((19 * 3600, 7 * 3600),), "19:00-07:00")
    )
    assert got.bytes_per_s == 50_000_000
    assert got.describe() == "50 MB/s, 20 requests/s (bursts of 1 s), readahead and prefetch only 19:00-07:00"


def test_a_table_of_its_own_and_no_table() -> None:
    text = '[servers.pacs]\nurl = "x"\n[servers.pacs.limits]\nmb_per_s = 0.5\nburst_s = 2.5\n'
    got = limits_of(server_table(text))
    assert got is not None and got.mb_per_s == 0.5 and got.burst_s == 2.5 and got.requests_per_s is None
    assert got.describe() == "0.5 MB/s (bursts of 2.5 s)"
    assert limits_of(server_table('[servers.pacs]\nurl = "x"\n')) is None
    assert LimitsConfig().describe() == "no limits" and not LimitsConfig().limited


@pytest.mark.parametrize(
    ("inline", "key", "problem"),
    [
        ("mb_per_s = 0", "mb_per_s", "must be more than 0 (leave it out for no limit), not 0"),
        ("mb_per_s = -5", "mb_per_s", "must be more than 0"),
        ("mb_per_s = nan", "mb_per_s", "must be a finite number, not nan"),
        ("mb_per_s = inf", "mb_per_s", "must be a finite number, not inf"),
        ("mb_per_s = 1e9", "mb_per_s", "must be between 0.001 and 100000 MB/s, not 1e+09"),
        ('mb_per_s = "50"', "mb_per_s", "must be a number, not a string"),
        ("mb_per_s = true", "mb_per_s", "must be a number, not a boolean"),
        ("requests_per_s = 0.0001", "requests_per_s", "must be between 0.001 and 100000 requests/s"),
        ("requests_per_s = -inf", "requests_per_s", "must be a finite number"),
        ("burst_s = 0", "burst_s", "must be more than 0"),
        ("burst_s = 7200", "burst_s", "must be between 0.01 and 3600 seconds"),
        ("background_hours = 19", "background_hours", "must be a string, not an integer"),
        ('background_hours = "19:00-7"', "background_hours", "'19:00-7' is not a range of times"),
        ('background_hours = "19:00-19:00"', "background_hours", "is empty"),
        ("mbps = 5", "mbps", "unknown key (expected one of: background_hours, burst_s, mb_per_s, requests_per_s)"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(inline: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        limits(inline)
    message = str(info.value)
    assert message.startswith(f"pacs.toml: servers.pacs.limits.{key}: ") and problem in message
    assert "\n" not in message


def test_limits_must_be_a_table() -> None:
    with pytest.raises(ConfigError, match=r"^pacs.toml: servers.pacs.limits: must be a table, not an integer$"):
        limits_of(server_table("[servers.pacs]\nlimits = 5\n"))


async def test_one_server_counts_what_it_took_and_what_it_waited_and_why(autojump_clock: trio.abc.Clock) -> None:
    config = parse_limits(
        Table("pacs.toml", "limits", {"mb_per_s": 0.001, "requests_per_s": 1, "background_hours": "19:00-07:00"})
    )
    start = dt.datetime(2026, 6, 1, 18, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))

    def window(server: str, hours: Hours) -> Window:
        return Window(server, hours, tz=start.tzinfo, now=lambda: start + dt.timedelta(seconds=trio.current_time()))

    pacs = build_limits("pacs", config, window=window)
    await pacs.request()  # a user's: the bucket's burst of one request
    await pacs.received(1000)  # 1 kB/s: a burst of 1000 bytes
    with priority(Priority.PREFETCH):
        await pacs.request()  # waits for 19:00 (an hour): the request bucket has long refilled
    chunks = []

    async def body():
        for _ in range(3):
            yield b"x" * 500

    async for chunk in pacs.body(body(), Priority.READAHEAD):  # 1500 bytes: 500 over the burst, 0.5 s
        chunks.append(chunk)
    assert len(chunks) == 3
    stats = pacs.stats()
    assert stats["bytes"] == 2500 and stats["requests"] == 2
    waited = stats["waited_s"]
    assert waited == {
        "rate": 0.5,
        "window": 3600.0,
        "priority": 0.0,
        "waits": 2,
        "by_priority": {"user": 0.0, "readahead": 0.5, "prefetch": 3600.0},
    }
    assert stats["limits"] == {
        "mb_per_s": 0.001,
        "requests_per_s": 1.0,
        "burst_s": 1.0,
        "background_hours": "19:00-07:00",
    }
    assert stats["window"] == {
        "background_hours": "19:00-07:00",
        "open": True,
        "opens": None,
        "closes": "2026-06-02T07:00:00+02:00",
    }


async def test_an_unlimited_server_only_counts() -> None:
    everything = Limits()
    pacs = everything.of("pacs")
    with priority(Priority.PREFETCH):
        await pacs.request()
        await pacs.received(10**9)
    assert everything.of("pacs") is pacs
    assert everything.stats()["pacs"] == {
        "limits": {"mb_per_s": None, "requests_per_s": None, "burst_s": 1.0, "background_hours": None},
        "bytes": 10**9,
        "requests": 1,
        "waited_s": {
            "rate": 0.0,
            "window": 0.0,
            "priority": 0.0,
            "waits": 0,
            "by_priority": {"user": 0.0, "readahead": 0.0, "prefetch": 0.0},
        },
    }
