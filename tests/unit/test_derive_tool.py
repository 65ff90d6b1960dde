"""The runner of the derived views (trolleyfs.derive.tool): a private
temporary directory that goes away however its block ends, and a program
run through trio's process API that a deadline kills (real processes:
``sh``, ``sleep``)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import trio

from trolleyfs.derive.counters import DeriveCounters
from trolleyfs.derive.tool import private_dir, run_tool


def _entries(path: Path) -> list[str]:
    return os.listdir(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_private_dir_is_mode_0700_and_removed_with_its_contents(tmp_path: Path) -> None:
    async with private_dir(str(tmp_path)) as work:
        assert work.parent == tmp_path
        assert stat.S_IMODE(work.stat().st_mode) == 0o700
        (work / "sub").mkdir()
        (work / "sub" / "f").write_bytes(b"x")
    assert _entries(tmp_path) == []


async def test_private_dir_is_removed_on_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with private_dir(str(tmp_path)) as work:
            (work / "f").write_bytes(b"x")
            raise RuntimeError("boom")
    assert _entries(tmp_path) == []


async def test_private_dir_is_removed_on_cancellation(tmp_path: Path) -> None:
    with trio.CancelScope() as scope:
        async with private_dir(str(tmp_path)) as work:
            (work / "f").write_bytes(b"x")
            scope.cancel()
            await trio.sleep(3600)
    assert scope.cancelled_caught
    assert _entries(tmp_path) == []


async def test_run_tool_captures_both_streams_and_any_exit_status(tmp_path: Path) -> None:
    run = await run_tool(["sh", "-c", "echo one; echo two >&2; exit 3"], tmp_path)
    assert run.returncode == 3
    assert run.output.split() == ["one", "two"]


async def test_run_tool_runs_in_the_directory_with_the_environment_given(tmp_path: Path) -> None:
    run = await run_tool(["sh", "-c", 'pwd; echo "$ONLY"; echo "${HOME:-unset}"'], tmp_path, {"ONLY": "this"})
    assert run.output.split() == [str(tmp_path), "this", "unset"]


async def test_a_program_that_cannot_start_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError) as raised:
        await run_tool([str(tmp_path / "no-such-program")], tmp_path)
    assert raised.value.errno == errno.ENOENT


async def test_a_hanging_program_is_killed_at_the_deadline_and_its_dir_removed(tmp_path: Path) -> None:
    """``sleep 600`` through the runner, as the engine runs dcm2niix: the
    deadline cuts it, the process is gone (killed and reaped, not left
    running or a zombie) and the private directory with its files is removed."""
    base, pid_file = tmp_path / "base", tmp_path / "pid"
    base.mkdir()
    with trio.move_on_after(0.5) as deadline:
        async with private_dir(str(base)) as work:
            (work / "input.dcm").write_bytes(b"x" * 1000)
            await run_tool(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"], work)
    assert deadline.cancelled_caught
    assert _entries(base) == []
    assert not _alive(int(pid_file.read_text()))


def test_counters_count_outputs_failures_bytes_and_seconds() -> None:
    counters = DeriveCounters()
    counters.record(1000, 0.25)
    counters.record(None, 1.0)
    counters.record(24, 0.5)
    assert counters.as_dict() == {"conversions": 2, "failures": 1, "bytes_out": 1024, "seconds": 1.75}
