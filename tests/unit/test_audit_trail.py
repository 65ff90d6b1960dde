"""The audit trail's writing: the file is created 0600 by the mount's user;
a stalled file (a FIFO nobody reads) or a full disk never blocks the
caller, is said loudly once, counted, and (``on_failure = "block"``) refuses
access; SIGHUP and a rename reopen the file; a copytruncate'd file goes on
at 0; size rotation keeps N files; syslog lines reach a unix socket in
syslog's format.  Real files, FIFOs, /dev/full and sockets; waits poll."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import threading
from pathlib import Path

import pytest
import trio

from tests.audit_check import until
from tests.mounting import wait_for
from trolleyfs.audit.record import AuditRecord, Who
from trolleyfs.audit.settings import FACILITIES, AuditConfig
from trolleyfs.audit.sinks import FileSink
from trolleyfs.audit.trail import AuditTrail, AuditUnavailable, reopen_on_sighup

WHO = Who(1000, "alice", 4242, "cp")


def record(i: int, path: str = "") -> AuditRecord:
    return AuditRecord.make(
        WHO,
        "read",
        path or f"/studies/CT/1 Thorax/IM-{i:05d}.dcm",
        study="1.2.3",
        series="1.2.3.4",
        instance=f"1.2.3.4.{i}",
        source="pacs",
        nbytes=i,
    )


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stalled_fifo(tmp_path: Path) -> tuple[Path, int]:
    """A FIFO whose reader never reads, its pipe already full (of newlines):
    the first write(2) into it blocks.  Returns the path and the reading end."""
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        while True:
            os.write(filler, b"\n" * 4096)
    except BlockingIOError:
        pass
    finally:
        os.close(filler)
    return fifo, reader


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "trolleyfs.audit" and text in r.getMessage()]


def test_the_file_is_created_0600_by_the_mounts_user(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "audit.jsonl"
    old = os.umask(0)  # even with a permissive umask
    try:
        trail = AuditTrail(AuditConfig(file=str(path)))
        trail.start()
        trail.record(record(1))
        trail.close()
    finally:
        os.umask(old)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    assert not errors(caplog, "can be read")
    path.chmod(0o644)  # an admin made it readable: said, not changed
    trail = AuditTrail(AuditConfig(file=str(path)))
    trail.start()
    trail.close()
    assert errors(caplog, "can be read or written by others (mode 644)")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_file_that_cannot_be_opened_stops_the_start_with_one_line(tmp_path: Path) -> None:
    trail = AuditTrail(AuditConfig(file=str(tmp_path / "gone" / "audit.jsonl")))
    with pytest.raises(AuditUnavailable, match=r"^audit: cannot open .*/gone/audit.jsonl: No such file or directory$"):
        trail.start()


@pytest.mark.parametrize("on_failure", ["continue", "block"])
def test_a_stalled_fifo_never_blocks_the_caller(
    tmp_path: Path, on_failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    fifo, reader = stalled_fifo(tmp_path)
    trail = AuditTrail(AuditConfig(file=str(fifo), queue=50, on_failure=on_failure))
    drained: list[bytes] = []
    drainer = threading.Thread(target=lambda: drained.extend(iter(lambda: os.read(reader, 65536), b"")))
    try:
        trail.start()
        refused = 0
        for i in range(2000):
            try:
                trail.record(record(i))
            except AuditUnavailable:
                refused += 1
        # every call returned, while the writer is stuck in write(2)
        stats = trail.stats()
        assert stats["written"] == 0 and stats["sinks"][0]["queued"] == 50 and stats["dropped"] == 1950  # type: ignore[index]
        assert refused == (stats["dropped"] if on_failure == "block" else 0)
        assert len(errors(caplog, "is full (50 lines): records are being DROPPED")) == 1  # loudly, once
        assert not trail.healthy
        if on_failure == "block":
            with pytest.raises(AuditUnavailable, match="cannot be written: access refused"):
                trail.admit()
        else:
            trail.admit()
        os.set_blocking(reader, True)
        drainer.start()  # someone reads again: everything queued gets written
        wait_for(lambda: trail.stats()["written"] == 2000 - stats["dropped"] and trail.healthy, "the queue to drain")  # type: ignore[operator]
        assert errors(caplog, "has room again")
        trail.admit()
    finally:
        if not drainer.is_alive() and not drained:
            os.set_blocking(reader, True)
            drainer.start()
        assert trail.close() == 0
        drainer.join(60)
        os.close(reader)
    got = [json.loads(line) for line in b"".join(drained).splitlines() if line]
    assert len(got) == 2000 - stats["dropped"] and all(g["action"] == "read" for g in got)


def test_a_stalled_write_counts_as_unhealthy_before_the_queue_is_full(tmp_path: Path) -> None:
    fifo, reader = stalled_fifo(tmp_path)
    now = [0.0]
    trail = AuditTrail(AuditConfig(file=str(fifo), on_failure="block"), clock=lambda: now[0])
    try:
        trail.start()
        for i in range(10):
            trail.record(record(i))
        wait_for(lambda: trail.stats()["sinks"][0]["busy_s"] is not None, "the writer to start writing")  # type: ignore[index]
        trail.admit()  # stuck, but not for long yet
        now[0] += 11.0
        with pytest.raises(AuditUnavailable):
            trail.admit()
    finally:
        os.set_blocking(reader, True)
        drainer = threading.Thread(target=lambda: [None for _ in iter(lambda: os.read(reader, 65536), b"")])
        drainer.start()
        trail.close()
        drainer.join(60)
        os.close(reader)


def test_a_full_disk_is_said_once_and_nothing_is_dropped_until_the_queue_is_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    trail = AuditTrail(AuditConfig(file="/dev/full", queue=20, on_failure="block"), retry_s=0.02)
    trail.start()
    try:
        for i in range(5):
            trail.record(record(i))
        wait_for(lambda: trail.stats()["errors"] >= 5, "several failed tries")  # type: ignore[operator]
        stats = trail.stats()
        assert stats["written"] == 0 and stats["dropped"] == 0 and stats["sinks"][0]["queued"] == 5  # type: ignore[index]
        assert stats["sinks"][0]["failing"] == "No space left on device"  # type: ignore[index]
        (said,) = errors(caplog, "cannot write to /dev/full")
        assert "No space left on device" in said and "reads FAIL (on_failure = block)" in said
        with pytest.raises(AuditUnavailable):
            trail.admit()
    finally:
        assert trail.close(timeout=1.0) == 5
    assert trail.stats()["dropped"] == 5
    assert errors(caplog, "5 records could not be written to /dev/full")


async def test_sighup_and_a_rename_reopen_the_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(AuditConfig(file=str(path)))
    await trio.to_thread.run_sync(trail.start)

    async def written(n: int) -> None:
        await until(lambda: trail.stats()["written"] == n, f"{n} lines written")

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reopen_on_sighup, trail)
            trail.record(record(1))
            await written(1)
            os.kill(os.getpid(), signal.SIGHUP)  # logrotate's postrotate, with nothing moved
            await until(lambda: trail.stats()["reopen_requests"] == 1, "the signal to be handled")
            trail.record(record(2))
            await written(2)
            assert trail.stats()["reopens"] == 1
            os.rename(path, tmp_path / "audit.jsonl.1")  # logrotate's create mode, without a signal
            trail.record(record(3))
            await written(3)
            assert trail.stats()["reopens"] == 2
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(trail.close)
    assert [r["bytes"] for r in lines(tmp_path / "audit.jsonl.1")] == [1, 2]
    assert [r["bytes"] for r in lines(path)] == [3]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_after_copytruncate_the_file_goes_on_at_0(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(AuditConfig(file=str(path)))
    trail.start()
    try:
        for i in range(5):
            trail.record(record(i))
        wait_for(lambda: trail.stats()["written"] == 5, "5 lines")
        shutil.copyfile(path, tmp_path / "audit.jsonl.1")
        os.truncate(path, 0)
        for i in range(5, 8):
            trail.record(record(i))
        wait_for(lambda: trail.stats()["written"] == 8, "3 more lines")
    finally:
        trail.close()
    raw = path.read_bytes()
    assert raw.startswith(b"{") and b"\0" not in raw  # no hole where the old lines were
    assert [r["bytes"] for r in lines(path)] == [5, 6, 7]
    assert [r["bytes"] for r in lines(tmp_path / "audit.jsonl.1")] == [0, 1, 2, 3, 4]
    assert trail.stats()["truncations"] == 1


def test_size_rotation_keeps_n_files_and_loses_no_line_between_them(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = FileSink(str(path), max_bytes=2000, keep=2)
    sink.open()
    written = []
    for i in range(40):
        line = record(i).to_json().encode()
        sink.prepare()
        sink.write(line)
        written.append(i)
    sink.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    kept = [r["bytes"] for name in ("audit.jsonl.2", "audit.jsonl.1", "audit.jsonl") for r in lines(tmp_path / name)]
    assert kept == written[-len(kept) :] and len(kept) > 10  # the newest lines, in order, none missing
    longest = max(len(record(i).to_json()) + 1 for i in written)
    assert all((tmp_path / n).stat().st_size < 2000 + longest for n in ("audit.jsonl.1", "audit.jsonl.2"))
    assert sink.rotations >= 3  # older files than .2 were dropped


SYSLOG_LINE = re.compile(rb"^<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) trolleyfs-audit\[(\d+)\]: (.*)$")


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_syslog_lines_reach_a_local_socket_in_syslogs_format(tmp_path: Path, kind: socket.SocketKind) -> None:
    address = str(tmp_path / "log")
    server = socket.socket(socket.AF_UNIX, kind)
    server.bind(address)
    if kind == socket.SOCK_STREAM:
        server.listen(1)
    server.settimeout(60)
    trail = AuditTrail(AuditConfig(syslog=True, syslog_socket=address, facility="authpriv"))
    try:
        trail.start()
        sent = [record(1), record(2, path="/patients/Ünïcode/x.dcm")]
        for r in sent:
            trail.record(r)
        if kind == socket.SOCK_DGRAM:
            messages = [server.recv(65536) for _ in sent]
        else:
            conn, _ = server.accept()
            conn.settimeout(60)
            data = b""
            while data.count(b"\0") < len(sent):
                data += conn.recv(65536)
            conn.close()
            messages = data.split(b"\0")[:-1]
    finally:
        trail.close()
        server.close()
    for message, r in zip(messages, sent, strict=True):
        m = SYSLOG_LINE.match(message)
        assert m is not None, message
        assert int(m.group(1)) == FACILITIES["authpriv"] * 8 + 6 == 86  # authpriv.info
        assert int(m.group(3)) == os.getpid()
        assert AuditRecord.from_json(m.group(4)) == r


def test_syslog_gone_and_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trolleyfs.audit")
    address = str(tmp_path / "log")

    def listen() -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(address)
        s.settimeout(60)
        return s

    server = listen()
    trail = AuditTrail(AuditConfig(syslog=True, syslog_socket=address), retry_s=0.02)
    try:
        trail.start()
        trail.record(record(1))
        assert AuditRecord.from_json(SYSLOG_LINE.match(server.recv(65536)).group(4)).bytes == 1  # type: ignore[union-attr]
        server.close()
        os.unlink(address)  # the syslog daemon restarts
        trail.record(record(2))
        wait_for(lambda: trail.stats()["errors"] >= 2, "failed tries")  # type: ignore[operator]
        server = listen()
        wait_for(lambda: trail.stats()["written"] == 2, "the line once syslog is back")
        assert AuditRecord.from_json(SYSLOG_LINE.match(server.recv(65536)).group(4)).bytes == 2  # type: ignore[union-attr]
        assert len(errors(caplog, "cannot write to syslog")) == 1 and errors(caplog, "writing to syslog")
    finally:
        trail.close()
        server.close()
