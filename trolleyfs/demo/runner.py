"""``trolleyfs demo``: a local Orthanc with generated sample studies, mounted.

Everything lives in a temp dir and is removed on exit (Ctrl-C)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from ..config import load
from ..logs import setup_logging
from ..mount import check_mountpoint, fuse_options, serve
from . import sampledata
from .orthanc import Orthanc

CONFIG = """\
# trolleyfs demo config: a local Orthanc on loopback
[servers.orthanc]
search   = {{ protocol = "qido-rs", url = "{dicomweb}" }}
retrieve = {{ protocol = "wado-rs", url = "{dicomweb}" }}

[[folders]]
name = "all-studies"
query = {{}}

[[folders]]
name = "test-patients-ct"
query = {{ PatientName = "TEST*", ModalitiesInStudy = "CT" }}

[[folders]]
name = "since-2022"
query = {{}}
min_study_date = "2022-01-01"
"""


READY = """
trolleyfs demo is mounted at {mp}  (config: {cfg_path})
Try, in another terminal:
  ls {mp}
  ls {mp}/all-studies
  ls -l "{mp}/test-patients-ct/$(ls {mp}/test-patients-ct | head -1)"/*
  cp -r {mp}/all-studies ~/trolleyfs-copy
  dcmdump "$(find {mp}/all-studies -name '*.dcm' | head -1)" | head -30
  cat {mp}/.trolleyfs/stats.json
Press Ctrl-C here to unmount and stop the demo."""


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


async def _serve_until_signalled(*args: Any) -> None:
    """``serve(*args)``, ended also by a SIGTERM or SIGHUP that arrives while the
    mount's own signal handling is not in place: before it starts, or after an
    external unmount, when trio hands signals it had not delivered back to the
    handler it found.  That handler only asks trio to cancel (safe from a signal
    handler); raising there would land inside trio's own machinery."""
    token = trio.lowlevel.current_trio_token()
    with trio.CancelScope() as scope:

        def stop(signum: int, frame: object) -> None:
            token.run_sync_soon(scope.cancel)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            await serve(*args)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_demo(mountpoint: str, log_level: str) -> int:
    """Start Orthanc, fill it, mount it at ``mountpoint`` until unmounted or
    signalled; remove everything it made.  The exit code."""
    toggle = setup_logging(log_level)
    # SIGTERM/SIGHUP outside the mount's own handling (during start-up, or just
    # after an external unmount) must still stop Orthanc and remove its data
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_cleanly)
    if not os.path.lexists(mountpoint):
        os.makedirs(mountpoint)
    mp = check_mountpoint(mountpoint)
    work = Path(tempfile.mkdtemp(prefix="trolleyfs-demo-"))
    print(f"starting Orthanc (data in {work}) ...", flush=True)
    try:
        with Orthanc(workdir=str(work / "orthanc")) as orthanc:
            n = orthanc.upload(sampledata.generate())
            cfg_path = work / "demo.toml"
            cfg_path.write_text(CONFIG.format(dicomweb=orthanc.dicomweb))
            cfg = load(cfg_path)
            print(f"Orthanc at {orthanc.url} holds {n} sample instances", flush=True)

            def ready() -> None:
                print(READY.format(mp=mp, cfg_path=cfg_path), flush=True)

            trio.run(_serve_until_signalled, cfg, mp, fuse_options([], str(cfg_path)), ready, toggle)
    finally:
        # Orthanc has stopped; a second signal must not cut the clean-up short
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        shutil.rmtree(work, ignore_errors=True)
    print("demo stopped; unmounted and cleaned up", file=sys.stderr)
    return 0
