"""``trolleyfs prefetch`` and the background hours, without a mount: the
mount's windows read from its stats.json, one shared wait for all readers
that says when the hours open (and the progress shows it), and ``--no-wait``
stopping with one line; ``trolleyfs check`` showing the limits it applies."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from pathlib import Path

import pytest
import trio

from trolleyfs.config import parse
from trolleyfs.prefetchhours import SERVER_XATTR, HoursGate, NotWaiting, servers_of, shut_windows
from trolleyfs.probe import format_rows, probe
from trolleyfs.progress import LineProgress

HOURS = "19:00-07:00"


def write_stats(root: Path, opens: dt.datetime | None) -> None:
    window = {"background_hours": HOURS, "open": opens is None, "opens": opens and opens.isoformat(), "closes": None}
    control = root / ".trolleyfs"
    control.mkdir(exist_ok=True)
    doc = {"limits": {"pacs": {"window": window}, "other": {"limits": {}}}}
    (control / "stats.json").write_text(json.dumps(doc))


def test_the_shut_windows_are_read_from_the_mount_soonest_first(tmp_path: Path) -> None:
    opens = dt.datetime(2026, 6, 1, 19, 0, tzinfo=dt.UTC)
    write_stats(tmp_path, opens)
    ((pacs),) = shut_windows(str(tmp_path))
    assert (pacs.server, pacs.hours, pacs.opens) == ("pacs", HOURS, opens)
    assert pacs.says() == f"pacs's background hours ({HOURS}) open at 2026-06-01T19:00+00:00"
    write_stats(tmp_path, None)
    assert shut_windows(str(tmp_path)) == []
    assert shut_windows(str(tmp_path / "not-a-mount")) == []


async def test_the_readers_share_one_wait_that_says_when_the_hours_open(tmp_path: Path, mock_clock) -> None:
    # virtual time jumps only after a moment of real idleness: the reads of stats.json run in threads
    mock_clock.autojump_threshold = 0.1
    opens = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    write_stats(tmp_path, opens)
    out = io.StringIO()
    gate = HoursGate([str(tmp_path)], LineProgress(out, 5.0))
    back: list[str] = []

    async def reader(name: str) -> None:
        await gate.refused(str(tmp_path / "study" / name))
        back.append(name)

    async def the_hours_open() -> None:
        while not gate.said:  # noqa: ASYNC110 - once the readers wait (a list the gate fills)
            await trio.sleep(1)
        await trio.sleep(600)
        await trio.to_thread.run_sync(write_stats, tmp_path, None)

    async with trio.open_nursery() as nursery:
        for name in ("a.dcm", "b.dcm", "c.dcm"):
            nursery.start_soon(reader, name)
        nursery.start_soon(the_hours_open)
    assert sorted(back) == ["a.dcm", "b.dcm", "c.dcm"]
    said = f"prefetch: waiting: pacs's background hours ({HOURS}) open at {opens.isoformat(timespec='minutes')}"
    assert out.getvalue().splitlines() == [said]  # one wait, said once
    assert gate.waited_s > 0 and gate.said == [said.removeprefix("prefetch: ")]


async def test_asked_not_to_wait_a_refused_read_stops_the_prefetch_saying_why(tmp_path: Path) -> None:
    opens = dt.datetime(2026, 6, 1, 19, 0, tzinfo=dt.UTC)
    write_stats(tmp_path, opens)
    gate = HoursGate([str(tmp_path)], LineProgress(io.StringIO(), 5.0), wait=False)
    with pytest.raises(NotWaiting, match=r"^outside the background hours: pacs's .* open at 2026-06-01T19:00\+00:00; "):
        await gate.refused(str(tmp_path / "x.dcm"))


async def test_the_walk_waits_only_for_the_hours_of_the_server_its_path_belongs_to(tmp_path: Path) -> None:
    """Before walking (each listing is a search) a prefetch waits for the
    hours of the server its path names (the ``user.trolleyfs.server`` of the
    folder it is in); a path of another server goes on."""
    write_stats(tmp_path, dt.datetime(2026, 6, 1, 19, 0, tzinfo=dt.UTC))  # pacs shut, other open
    for folder, server in (("ct", "pacs"), ("mr", "other")):
        (tmp_path / folder / "study").mkdir(parents=True)
        os.setxattr(tmp_path / folder, SERVER_XATTR, server.encode())
    assert servers_of(str(tmp_path / "ct" / "study"), str(tmp_path)) == {"pacs"}
    assert servers_of(str(tmp_path), str(tmp_path)) is None  # the whole mount: any server
    gate = HoursGate([str(tmp_path)], LineProgress(io.StringIO(), 5.0), wait=False)
    await gate.before_walk([str(tmp_path / "mr" / "study")])  # other's hours are open: no wait
    for shut_path in (tmp_path / "ct" / "study", tmp_path):
        with pytest.raises(NotWaiting, match=r"pacs's background hours"):
            await gate.before_walk([str(shut_path)])


async def test_check_shows_the_limits_each_server_will_be_held_to_and_the_audit(tmp_path: Path) -> None:
    cfg = parse(
        f"""
[servers.pacs]
search = {{ protocol = "qido-rs", url = "http://127.0.0.1:9/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "http://127.0.0.1:9/dicom-web" }}
timeout = 1
retries = 0
limits = {{ mb_per_s = 50, requests_per_s = 20, background_hours = "{HOURS}" }}
[servers.free]
search = {{ protocol = "qido-rs", url = "http://127.0.0.1:9/dicom-web" }}
retrieve = {{ protocol = "wado-rs", url = "http://127.0.0.1:9/dicom-web" }}
timeout = 1
retries = 0
[audit]
file = "{tmp_path / "audit.jsonl"}"
""",
        "t.toml",
    )
    rows = {(r.server, r.role): r for r in await probe(cfg, retrieve=True)}
    assert (
        rows["pacs", "limits"].detail == f"50 MB/s, 20 requests/s (bursts of 1 s), readahead and prefetch only {HOURS}"
    )
    assert rows["free", "limits"].detail == "no limits" and rows["free", "limits"].ok
    assert rows["audit", "audit"].detail.startswith(f"{tmp_path / 'audit.jsonl'}; reads go on")
    assert not (tmp_path / "audit.jsonl").exists()  # check opens nothing
    assert "ok: 50 MB/s, 20 requests/s" in format_rows(list(rows.values()))
