"""Running an external program (dcm2niix) on files in a private temporary
directory, under a deadline, off the event loop.

:func:`private_dir` makes a directory only this user can enter (mode 0700,
``tempfile.mkdtemp``) and removes it with everything in it when the block
ends: normally, by an exception, or by cancellation (the removal is
shielded).  :func:`run_tool` runs a program through trio's process API with
stdin closed and stdout and stderr captured together; when the caller is
cancelled (its deadline passed: ``trio.move_on_after``), the process is
killed (SIGKILL: nothing it leaves half-written is kept) and reaped before
the cancellation goes on."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

log = logging.getLogger("trolleyfs.derive")


@dataclass(frozen=True)
class ToolRun:
    """How a run ended: ``returncode`` (negative when a signal ended it) and
    its stdout and stderr as printed, decoded leniently."""

    returncode: int
    output: str


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        log.warning("cannot remove the temporary directory %s", path)


@asynccontextmanager
async def private_dir(parent: str | None = None, prefix: str = "trolleyfs-") -> AsyncIterator[Path]:
    """A new directory of mode 0700 under ``parent`` (default: the system's
    temporary directory), removed with its contents when the block ends."""
    path = await trio.to_thread.run_sync(tempfile.mkdtemp, "", prefix, parent)
    try:
        yield Path(path)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_remove, path)


async def _kill(process: trio.Process) -> None:
    process.kill()


async def run_tool(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> ToolRun:
    """Run ``argv`` in ``cwd`` to its end.  Raises OSError when the program
    cannot be started, never for its exit status.  Cancellation (the caller's
    deadline: ``with trio.move_on_after(seconds)``) kills it and waits for it."""
    done = await trio.run_process(
        list(argv),
        cwd=str(cwd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        capture_stdout=True,
        stderr=subprocess.STDOUT,
        check=False,
        deliver_cancel=_kill,
    )
    return ToolRun(done.returncode, done.stdout.decode("utf-8", "replace"))
