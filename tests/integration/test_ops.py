"""Running under systemd and from fstab, without a running systemd: the
notify protocol against a real socket, mount(8) with type fuse.trolleyfs, the
unit file against the CLI, runtime log level, mount options."""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mounting import (
    TROLLEYFS,
    force_unmount,
    mounted,
    qido_config,
    stop,
    wait_for,
    wait_mounted,
    wait_process_gone,
)
from trolleyfs.cli import build_parser

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FOLDER = '\n[[folders]]\nname = "all"\nquery = {}\n'


def test_notify_ready_only_once_the_mount_answers(orthanc, tmp_path):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    cfg = tmp_path / "n.toml"
    cfg.write_text(qido_config(orthanc, FOLDER))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [*TROLLEYFS, "mount", "--foreground", str(cfg), str(mnt)],
        env=os.environ | {"NOTIFY_SOCKET": str(sock_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        msg = sock.recv(4096).decode()
        assert "READY=1" in msg.splitlines()
        assert os.path.ismount(mnt) and "all" in os.listdir(mnt)
        proc.send_signal(signal.SIGTERM)
        assert "STOPPING=1" in sock.recv(4096).decode()
        assert proc.wait(30) == 0
        assert not os.path.ismount(mnt)
    finally:
        force_unmount(mnt)
        stop(proc)
        sock.close()


def test_the_unit_file_runs_a_command_the_cli_accepts():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive (configparser's documented way)
    unit.read(ROOT / "systemd" / "trolleyfs@.service")
    svc = unit["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure"
    argv = shlex.split(
        svc["ExecStart"]
        .replace("$TROLLEYFS_ARGS", "")
        .replace("%i", "pacs")
        .replace("${TROLLEYFS_MOUNTPOINT}", "/mnt/pacs")
    )
    assert Path(argv[0]).name == "trolleyfs"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "mount" and args.foreground and args.config == "/etc/trolleyfs/pacs.toml"


def test_mount_t_fuse_trolleyfs_and_umount(orthanc, tmp_path):
    """What an fstab line `CONFIG DIR fuse.trolleyfs ro,_netdev,nofail 0 0` runs."""
    helper = Path("/sbin/mount.fuse.trolleyfs")
    created = False
    if not helper.exists():
        helper.symlink_to(Path(sys.executable).parent / "mount.fuse.trolleyfs")
        created = True
    cfg = tmp_path / "f.toml"
    cfg.write_text(qido_config(orthanc, FOLDER))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "f.log"
    try:
        res = subprocess.run(
            ["mount", "-t", "fuse.trolleyfs", "-o", f"ro,_netdev,nofail,log_file={log}", str(cfg), str(mnt)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert os.path.ismount(mnt) and "all" in os.listdir(mnt)
        line = next(ln for ln in Path("/proc/mounts").read_text().splitlines() if f" {mnt} " in ln)
        assert " fuse.trolleyfs ro," in line and "allow_other" not in line
        res = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert not os.path.ismount(mnt)
        wait_process_gone(str(cfg))  # the mount process does not outlive umount
    finally:
        force_unmount(mnt)
        subprocess.run(["pkill", "-f", str(cfg)])
        if created:
            helper.unlink()


def test_allow_other_only_when_asked_and_then_with_default_permissions(orthanc, tmp_path):
    with mounted(qido_config(orthanc, FOLDER), tmp_path, "-o", "allow_other") as m:
        line = next(ln for ln in Path("/proc/mounts").read_text().splitlines() if f" {m.path} " in ln)
        assert "allow_other" in line and "default_permissions" in line and " ro," in line


def test_sigusr1_raises_the_log_level_at_runtime(orthanc, tmp_path):
    cfg = tmp_path / "l.toml"
    cfg.write_text(qido_config(orthanc, FOLDER))
    cfg.chmod(0o600)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "l.log"
    proc = subprocess.Popen(
        [*TROLLEYFS, "mount", "-f", "--log-level", "warning", "--log-file", str(log), str(cfg), str(mnt)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_mounted(mnt, proc, log)
        os.listdir(mnt / "all")
        assert "study search" not in log.read_text()
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "log level is now DEBUG" in log.read_text(), "the log level to change", detail=log.read_text)
        next(iter((mnt / "all").iterdir())).joinpath("x").exists()  # a lookup that asks the server
        wait_for(lambda: "series of study" in log.read_text(), "a debug line of the lookup", detail=log.read_text)
    finally:
        force_unmount(mnt)
        stop(proc)


def test_world_readable_config_with_password_warns(orthanc_auth, tmp_path):
    cfg = qido_config(orthanc_auth, FOLDER, extra='auth = { type = "basic", username = "alice", password = "secret" }')
    path = tmp_path / "w.toml"
    path.write_text(cfg)
    path.chmod(0o644)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        res = subprocess.run([*TROLLEYFS, "mount", str(path), str(mnt)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "can be read by others" in res.stderr and "secret" not in res.stderr.replace("password_env", "")
    finally:
        force_unmount(mnt)
        subprocess.run(["pkill", "-f", str(path)])
