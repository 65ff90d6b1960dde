"""systemd's notify protocol (sd_notify(3)): datagrams to $NOTIFY_SOCKET.
A no-op when not run by systemd with Type=notify."""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(path)
            s.sendall("\n".join(lines).encode())
        return True
    except OSError:
        return False
