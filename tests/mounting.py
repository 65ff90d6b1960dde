"""Real mounts for tests: trolleyfs runs as a subprocess on a temp dir; the
mount is always undone (fusermount3 -u -z) and the process always ended,
also when the test fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trolleyfs.part10 import part10_sop_instance_uid

TROLLEYFS = [sys.executable, "-m", "trolleyfs"]
# the installed console script, as a user runs it
TROLLEYFS_BIN = str(Path(sys.executable).parent / "trolleyfs")


@dataclass
class Mount:
    path: Path
    proc: subprocess.Popen[bytes]
    log: Path
    config: Path

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads((self.path / ".trolleyfs" / "stats.json").read_text())
        return stats

    def requests(self) -> int:
        return sum(self.stats()["requests"].values())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def dataset_bytes(part10: bytes) -> bytes:
    """Everything after the file meta group: what DIMSE transfers (C-GET and
    C-MOVE files carry a file meta group written anew around these bytes)."""
    assert part10[128:132] == b"DICM"
    assert part10[132:140] == b"\x02\x00\x00\x00UL\x04\x00", "no (0002,0000) group length"
    group_len = int.from_bytes(part10[140:144], "little")
    return part10[144 + group_len :]


def by_sop_uid(files: list[bytes]) -> dict[str, bytes]:
    """Part-10 objects keyed by their SOP Instance UID."""
    return {part10_sop_instance_uid(b): b for b in files}


# Real processes on a slow, busy machine: waits poll, with bounds far above what
# any healthy run needs (they only decide how long a broken run takes to fail).
PROCESS_WAIT_S = 120.0


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = PROCESS_WAIT_S, detail: Callable[[], str] = lambda: ""
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            extra = detail()
            raise AssertionError(f"waited {timeout:.0f} s for {what}" + (f":\n{extra}" if extra else ""))
        time.sleep(0.05)


def wait_process_gone(needle: str, timeout: float = PROCESS_WAIT_S) -> None:
    """Wait until no process has ``needle`` in its command line."""
    wait_for(
        lambda: needle not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout,
        f"the process with {needle!r} to end",
        timeout,
    )


def wait_mounted(path: Path, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float = PROCESS_WAIT_S) -> None:
    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"trolleyfs exited with {proc.returncode} before mounting:\n{log.read_text()}")
        return os.path.ismount(path)

    wait_for(ready, f"the mount at {path}", timeout, lambda: log.read_text() if log.exists() else "")


def force_unmount(path: Path) -> None:
    if os.path.ismount(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def mounted(
    config_text: str, tmp_path: Path, *args: str, name: str = "mnt", log_level: str = "debug"
) -> Iterator[Mount]:
    """Mount ``config_text`` in the foreground (a child process we own), logging
    at ``log_level`` (the benchmarks mount at the default, ``info``)."""
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(config_text)
    cfg.chmod(0o600)
    mnt = tmp_path / name
    mnt.mkdir(exist_ok=True)
    log = tmp_path / f"{name}.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [*TROLLEYFS, "mount", "--foreground", "--log-level", log_level, *args, str(cfg), str(mnt)],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_mounted(mnt, proc, log)
        yield Mount(mnt, proc, log, cfg)
    finally:
        force_unmount(mnt)
        stop(proc)


def qido_config(orthanc, folders: str = "", extra: str = "", server: str = "pacs") -> str:
    """A config for the Orthanc fixture, QIDO-RS + WADO-RS."""
    return f"""
[servers.{server}]
search   = {{ protocol = "qido-rs", url = "{orthanc.dicomweb}" }}
retrieve = {{ protocol = "wado-rs", url = "{orthanc.dicomweb}" }}
timeout = 10
{extra}
{folders}
"""
