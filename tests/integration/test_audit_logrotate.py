"""The audit file under Debian's logrotate, as an admin would set it up:
``copytruncate`` (the file goes on at 0, nothing lost, no hole), and
``create`` with a ``postrotate`` that sends SIGHUP (the trail reopens the
new file, which logrotate created 0600)."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import trio

from tests.audit_check import until
from trolleyfs.audit.record import AuditRecord, Who
from trolleyfs.audit.settings import AuditConfig
from trolleyfs.audit.trail import AuditTrail, reopen_on_sighup

pytestmark = pytest.mark.integration

WHO = Who(1000, "alice", 4242, "cp")


def record(i: int) -> AuditRecord:
    return AuditRecord.make(WHO, "read", f"/studies/CT/IM-{i:05d}.dcm", instance=f"1.2.3.{i}", source="disk", nbytes=i)


def numbers(path: Path) -> list[int]:
    raw = path.read_bytes()
    assert b"\0" not in raw and (not raw or raw.startswith(b"{"))
    return [json.loads(line)["bytes"] for line in raw.splitlines()]


async def logrotate(tmp_path: Path, rules: str) -> None:
    logrotate = shutil.which("logrotate", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if logrotate is None:
        pytest.fail("logrotate is not installed: run `make test`, which installs it")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{tmp_path / 'audit.jsonl'} {{\n{rules}\n}}\n")
    done = await trio.run_process(
        [logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


async def written(trail: AuditTrail, n: int) -> None:
    await until(lambda: trail.stats()["written"] == n, f"{n} lines written")


async def test_logrotate_copytruncate(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(AuditConfig(file=str(path)))
    await trio.to_thread.run_sync(trail.start)
    try:
        for i in range(5):
            trail.record(record(i))
        await written(trail, 5)
        await logrotate(tmp_path, "    copytruncate\n    rotate 3\n    nocompress")
        for i in range(5, 8):
            trail.record(record(i))
        await written(trail, 8)
    finally:
        await trio.to_thread.run_sync(trail.close)
    assert numbers(tmp_path / "audit.jsonl.1") == [0, 1, 2, 3, 4]
    assert numbers(path) == [5, 6, 7]
    assert trail.stats()["truncations"] == 1


async def test_logrotate_create_with_sighup(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(AuditConfig(file=str(path)))
    await trio.to_thread.run_sync(trail.start)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reopen_on_sighup, trail)
            for i in range(5):
                trail.record(record(i))
            await written(trail, 5)
            rules = f"    create 0600\n    rotate 3\n    nocompress\n    postrotate\n        kill -HUP {os.getpid()}\n    endscript"
            await logrotate(tmp_path, rules)
            await until(lambda: trail.stats()["reopen_requests"] == 1, "the SIGHUP to be handled")
            for i in range(5, 8):
                trail.record(record(i))
            await written(trail, 8)
            nursery.cancel_scope.cancel()
    finally:
        await trio.to_thread.run_sync(trail.close)
    assert numbers(tmp_path / "audit.jsonl.1") == [0, 1, 2, 3, 4]
    assert numbers(path) == [5, 6, 7]
    assert trail.stats()["reopens"] == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
