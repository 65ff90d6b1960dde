"""``trolleyfs demo``: a local Orthanc with generated studies
(:mod:`.demodata`), mounted with the README's config, so that the README's
session works as printed (with the demo's mount point for ``/mnt/pacs``).

Everything lives in a temp dir and is removed on exit (Ctrl-C, SIGTERM, or an
unmount: ``trolleyfs unmount``, the session's last command)."""

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
from .demodata import CHEST_CT_UID, generate_demo, instance_count
from .orthanc import Orthanc

# The README's minimal config (the demo fills in its Orthanc's URL).
CONFIG = """\
[servers.pacs]
search   = {{ protocol = "qido-rs", url = "{dicomweb}" }}
retrieve = {{ protocol = "wado-rs", url = "{dicomweb}" }}

[[folders]]
name  = "recent-ct"
query = {{ ModalitiesInStudy = "CT", PatientName = "TEST*" }}
min_study_date = "2020-01-01"
views = ["metadata", "zip"]
"""

CHEST = "/mnt/pacs/recent-ct/2021-03-04 TEST ALICE CT Chest"

# The README's session after `trolleyfs mount`, command by command (the test
# suite runs it against the demo and checks that the README prints the same).
SESSION = (
    "ls /mnt/pacs",
    "ls /mnt/pacs/recent-ct",
    f'ls "{CHEST}"',
    f'cp -r "{CHEST}/001 CT Axial 1.25mm" ~/case1',
    f'mkdir -p ~/nifti && dcm2niix -o ~/nifti "{CHEST}/001 CT Axial 1.25mm"',
    "trolleyfs prefetch /mnt/pacs/recent-ct",
    f"ls /mnt/pacs/by-uid/{CHEST_CT_UID}",
    f'getfattr -d "{CHEST}"',
    "ls /mnt/pacs/views/recent-ct",
    "cat /mnt/pacs/.trolleyfs/stats.json",
    "trolleyfs unmount /mnt/pacs",
)

READY = """
trolleyfs demo: Orthanc at {url} holds {n} generated instances (no patient data),
mounted at {mp} with this config ({cfg_path}):

{config}
Try the README's session in another terminal:

{session}

`trolleyfs unmount {mp}` or Ctrl-C here stops the demo and removes what it made."""


def session_for(mountpoint: str) -> list[str]:
    """The session's commands for a mount at ``mountpoint``."""
    return [cmd.replace("/mnt/pacs", mountpoint) for cmd in SESSION]


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
            print(f"generating and uploading {instance_count()} instances ...", flush=True)
            n = orthanc.upload(generate_demo())
            cfg_path = work / "pacs.toml"
            cfg_path.write_text(CONFIG.format(dicomweb=orthanc.dicomweb))
            cfg = load(cfg_path)

            def ready() -> None:
                session = "\n".join(f"  {cmd}" for cmd in session_for(mp))
                text = cfg_path.read_text()
                print(READY.format(url=orthanc.url, n=n, mp=mp, cfg_path=cfg_path, config=text, session=session))
                sys.stdout.flush()

            trio.run(_serve_until_signalled, cfg, mp, fuse_options([], str(cfg_path)), ready, toggle)
    finally:
        # Orthanc has stopped; a second signal must not cut the clean-up short
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        shutil.rmtree(work, ignore_errors=True)
    print("demo stopped; unmounted and cleaned up", file=sys.stderr)
    return 0
