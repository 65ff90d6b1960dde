"""Audit records and the ``[audit]`` table: who is behind a request (judged
by ``id`` and ``ps``), a record round-trips as JSON with every field, bad
records and bad config are refused with one line naming the key."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from tests.mounting import wait_for
from trolleyfs.audit.record import AuditRecord, Who, furthest, identify, process_name
from trolleyfs.audit.settings import AuditConfig, parse_audit
from trolleyfs.audit.trail import AuditTrail
from trolleyfs.errors import ConfigError
from trolleyfs.tomltable import Table

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.1.2", "1.2.826.0.1.3680043.8.498.1.2.3"


def test_who_is_behind_a_request_as_id_and_ps_say() -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    try:

        def ps() -> str:
            done = subprocess.run(["ps", "-o", "comm=", "-p", str(sleeper.pid)], capture_output=True, text=True)
            return done.stdout.strip()

        wait_for(lambda: ps() == "sleep", "the child to exec sleep")  # Popen may return before the exec
        who = identify(os.getuid(), sleeper.pid)
        assert who == Who(os.getuid(), subprocess.check_output(["id", "-un"], text=True).strip(), sleeper.pid, "sleep")
        assert who.process == ps()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert process_name(sleeper.pid) == ""  # gone: why it must be asked at open, not at close
    webdav = identify(None, None, user="alice")
    assert webdav == Who(None, "alice", None, "")
    assert identify(987654, None).user == "987654"  # a uid without a name


def test_a_record_round_trips_as_json_with_every_field(tmp_path: Path) -> None:
    who = identify(os.getuid(), os.getpid())
    when = dt.datetime(2026, 12, 4, 9, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    record = AuditRecord.make(
        who,
        "read",
        "/patients/Müller^Jörg/CT 2026-12-01/1 Thorax/IM-0001.dcm",
        study=STUDY,
        series=SERIES,
        instance=SOP,
        source="pacs",
        nbytes=527_412,
        server="pacs",
        patient="PAT-001",
        accession="ACC-42",
        sop_class="1.2.840.10008.5.1.4.1.1.2",
        when=when,
    )
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(AuditConfig(file=str(path)))
    trail.start()
    trail.record(record)
    trail.record(AuditRecord.make(who, "list", "/patients", source="memory", result="EIO"))
    assert trail.close() == 0
    raw = path.read_bytes()
    assert raw.isascii() and raw.endswith(b"\n")
    first, second = raw.decode().splitlines()
    data = json.loads(first)
    assert list(data) == [f.name for f in fields(AuditRecord)]
    assert data == {
        "time": dt.datetime.fromisoformat(data["time"]).isoformat(timespec="milliseconds"),
        "uid": os.getuid(),
        "user": who.user,
        "pid": os.getpid(),
        "process": who.process,
        "action": "read",
        "path": "/patients/Müller^Jörg/CT 2026-12-01/1 Thorax/IM-0001.dcm",
        "study": STUDY,
        "series": SERIES,
        "instance": SOP,
        "source": "pacs",
        "bytes": 527_412,
        "server": "pacs",
        "patient": "PAT-001",
        "accession": "ACC-42",
        "sop_class": "1.2.840.10008.5.1.4.1.1.2",
        "result": "ok",
        "host": os.uname().nodename,
    }
    stamp = dt.datetime.fromisoformat(data["time"])
    assert stamp.utcoffset() is not None and stamp == when.replace(
        microsecond=123000
    )  # with an offset, the same instant (ms)
    assert AuditRecord.from_json(first) == record
    listing = AuditRecord.from_json(second)
    assert (listing.action, listing.study, listing.bytes, listing.result) == ("list", None, 0, "EIO")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"action": "write"}, "action must be one of"),
        ({"source": "cloud"}, "source must be one of"),
        ({"nbytes": -1}, "negative"),
    ],
)
def test_a_bad_record_is_refused(change: dict[str, object], problem: str) -> None:
    args: dict[str, Any] = {"action": "read", "source": "disk", "nbytes": 1, **change}
    with pytest.raises(ValueError, match=problem):
        AuditRecord.make(
            Who(0, "root", 1, "init"), str(args["action"]), "/x", source=args["source"], nbytes=args["nbytes"]
        )


def test_the_furthest_source_is_recorded() -> None:
    assert furthest("memory", "pacs") == "pacs" == furthest("pacs", "disk")
    assert furthest(None, "shared") == "shared" and furthest("disk", "memory") == "disk"


def audit(text: str, path: str = "pacs.toml") -> AuditConfig:
    return parse_audit(Table(path, "audit", tomllib.loads(text)))


def test_the_documented_table_parses(tmp_path: Path) -> None:
    got = audit(f'file = "{tmp_path}/audit.jsonl"\nmax_mb = 100\nkeep = 3\non_failure = "block"')
    assert got == AuditConfig(file=f"{tmp_path}/audit.jsonl", on_failure="block", max_mb=100.0, keep=3)
    assert got.max_bytes == 100_000_000 and got.blocking
    assert (
        got.describe() == f"{tmp_path}/audit.jsonl, rotated at 100 MB keeping 3; reads fail while it cannot be written"
    )
    syslog = audit('syslog = true\nfacility = "local3"')
    assert syslog == AuditConfig(syslog=True, facility="local3")
    assert syslog.describe() == "syslog (local3, /dev/log); reads go on if it cannot be written"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("", "audit", 'needs file = "/path/audit.jsonl" or syslog = true (or both)'),
        ('file = "audit.jsonl"', "audit.file", "must be an absolute path, not 'audit.jsonl'"),
        ('file = "/no/such/dir/audit.jsonl"', "audit.file", "the directory /no/such/dir does not exist"),
        ('file = "/tmp"', "audit.file", "/tmp is a directory: name a file in it, e.g. /tmp/audit.jsonl"),
        ("file = 5", "audit.file", "must be a string, not an integer"),
        ('syslog = "yes"', "audit.syslog", "must be a boolean, not a string"),
        ('file = "/tmp/a.jsonl"\nfacility = "auth"', "audit.facility", "needs syslog = true"),
        ('syslog = true\nfacility = "kern"', "audit.facility", "must be one of auth, authpriv, local0,"),
        (
            'syslog = true\nsyslog_socket = "dev/log"',
            "audit.syslog_socket",
            "must be the absolute path of a unix socket",
        ),
        ('syslog = true\non_failure = "stop"', "audit.on_failure", 'must be "continue" or "block", not \'stop\''),
        ("syslog = true\nqueue = 5", "audit.queue", "must be between 10 and 1000000 lines, not 5"),
        ("syslog = true\nmax_mb = 10", "audit.max_mb", "needs file"),
        ('file = "/tmp/a.jsonl"\nmax_mb = nan', "audit.max_mb", "must be a finite number, not nan"),
        ('file = "/tmp/a.jsonl"\nmax_mb = 0.5', "audit.max_mb", "must be between 1 and 1000000 MB, not 0.5"),
        ('file = "/tmp/a.jsonl"\nkeep = 3', "audit.keep", "needs max_mb"),
        ('file = "/tmp/a.jsonl"\nmax_mb = 5\nkeep = 0', "audit.keep", "must be between 1 and 1000, not 0"),
        (
            'file = "/tmp/a.jsonl"\nrotate = "daily"',
            "audit.rotate",
            "unknown key (expected one of: facility, file, keep,",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        audit(text)
    message = str(info.value)
    assert message.startswith(f"pacs.toml: {key}: ") and problem in message and "\n" not in message
