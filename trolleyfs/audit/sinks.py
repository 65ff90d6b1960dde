"""Where audit lines go: a file, or the local syslog.  Each sink is used by
one writer thread only (:mod:`.writer`); its calls block and may raise
:class:`OSError`, which the writer counts, reports and retries.

The file is opened ``O_APPEND``, created with mode 0600 (readable by its
owner only: the user the mount runs as), and:

* reopened before the next line after :meth:`FileSink.reopen` (SIGHUP, the
  end of logrotate's ``create`` mode) or when its path no longer names the
  open file (renamed or deleted);
* never confused by logrotate's ``copytruncate``: with ``O_APPEND`` every
  write goes to the current end, so after the truncation the file simply
  continues at 0 (no hole of zero bytes); the truncation is noticed and
  counted;
* rotated by size when ``max_bytes`` is given: ``file`` -> ``file.1`` ->
  ... -> ``file.<keep>``, the oldest dropped.

A line torn by a failing write (a full disk) is ended with a newline before
the next one, and the record is written again whole."""

from __future__ import annotations

import logging
import os
import socket
import stat
import time

log = logging.getLogger("trolleyfs.audit")

SEVERITY_INFO = 6
IDENT = "trolleyfs-audit"


class FileSink:
    def __init__(self, path: str, max_bytes: int | None = None, keep: int = 5) -> None:
        self.path = path
        self.max_bytes, self.keep = max_bytes, keep
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._size = 0
        self._torn = False
        self._reopen = False
        self.reopens = 0
        self.truncations = 0
        self.rotations = 0

    def describe(self) -> str:
        return self.path

    def open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            log.warning(
                "audit: %s can be read or written by others (mode %o): it holds who read which patient; chmod 600 it",
                self.path,
                stat.S_IMODE(st.st_mode),
            )
        self._fd, self._ino, self._size = fd, (st.st_dev, st.st_ino), st.st_size

    def reopen(self) -> None:
        """Open the path again before the next line (thread-safe: only sets a flag)."""
        self._reopen = True

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def prepare(self) -> None:
        """Before a batch: reopen, notice a truncation, rotate, as needed."""
        if self._fd is None:
            self.open()
        elif self._reopen or not self._same_file():
            self._reopen = False
            self.close()
            self.open()
            self.reopens += 1
            log.info("audit: reopened %s", self.path)
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._size:
            self.truncations += 1
            log.info("audit: %s was truncated (logrotate's copytruncate?): continuing at its end", self.path)
        self._size = size
        if self.max_bytes is not None and size >= self.max_bytes:
            self._rotate()

    def _same_file(self) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == self._ino

    def _rotate(self) -> None:
        for i in range(self.keep - 1, 0, -1):
            older = f"{self.path}.{i}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")
        self.close()
        self.open()
        self.rotations += 1

    def write(self, line: bytes) -> None:
        """Append ``line`` and a newline (one write, so lines never interleave)."""
        assert self._fd is not None
        data = (b"\n" if self._torn else b"") + line + b"\n"
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError:
            self._torn = self._torn or done > 0
            raise
        finally:
            self._size += done
        self._torn = False


class SyslogSink:
    """Lines to a local syslog socket (``/dev/log``), one message each, as
    glibc's ``syslog(3)`` sends them: ``<PRI>Mmm dd hh:mm:ss IDENT[PID]: line``
    (RFC 3164).  A datagram socket, else a stream one (messages ended with a
    NUL byte)."""

    def __init__(self, address: str = "/dev/log", facility: int = 10, ident: str = IDENT) -> None:
        self.address = address
        self._pri = facility * 8 + SEVERITY_INFO
        self._ident = ident
        self._sock: socket.socket | None = None
        self._stream = False
        self._reopen = False

    def describe(self) -> str:
        return f"syslog {self.address}"

    def open(self) -> None:
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(self.address)
            self._stream = False
        except OSError:
            sock.close()
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.address)
            except OSError:
                sock.close()
                raise
            self._stream = True
        self._sock = sock

    def reopen(self) -> None:
        """Connect again before the next line (thread-safe: only sets a flag)."""
        self._reopen = True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def prepare(self) -> None:
        if self._sock is None or self._reopen:
            self._reopen = False
            self.open()

    def write(self, line: bytes) -> None:
        assert self._sock is not None
        stamp = time.strftime("%b %e %H:%M:%S").encode()
        message = b"<%d>%s %s[%d]: %s" % (self._pri, stamp, self._ident.encode(), os.getpid(), line)
        try:
            if self._stream:
                self._sock.sendall(message + b"\0")
            else:
                self._sock.send(message)
        except OSError:
            self.close()  # connect again before the next line
            raise
