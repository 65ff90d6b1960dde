"""How ``trolleyfs prefetch`` shows how far it got: a tqdm bar on a terminal
(bytes read of the expected total, MB/s and ETA, files in the description),
and plain lines at a fixed interval otherwise (pipes, logs, cron mails).

The expected total is exact once every file's size is known; before that it
is estimated from the sizes seen so far and shown with a ``~``."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Never, Protocol, TextIO

from tqdm import tqdm


@dataclass
class Tally:
    """What a prefetch has to do and has done."""

    files: int = 0  # files to read
    known_files: int = 0  # of them, the ones whose size was known before reading
    known_bytes: int = 0  # ... and their bytes
    done: int = 0
    done_bytes: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    def exact(self) -> bool:
        """Whether :meth:`expected_bytes` is exact, not an estimate."""
        return self.known_files == self.files or self.done + self.failed >= self.files

    def expected_bytes(self) -> int:
        if self.done + self.failed >= self.files:
            return self.done_bytes
        if self.known_files == self.files:
            return max(self.known_bytes, self.done_bytes)
        if self.done:
            average = self.done_bytes / self.done
        elif self.known_files:
            average = self.known_bytes / self.known_files
        else:
            return self.done_bytes
        return int(self.done_bytes + (self.files - self.done - self.failed) * average)

    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-6)

    def rate(self) -> float:
        """Bytes per second so far."""
        return self.done_bytes / self.elapsed()

    def eta(self) -> str:
        rate = self.rate()
        if rate <= 0:
            return "?"
        return str(_dt.timedelta(seconds=round(max(0, self.expected_bytes() - self.done_bytes) / rate)))


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


class Progress(Protocol):
    def listing(self, dirs: int, files: int) -> None:
        """The walk has listed ``dirs`` directories holding ``files`` files so far."""

    def start(self, tally: Tally) -> None:
        """Reading begins."""

    def advance(self, tally: Tally, nbytes: int) -> None:
        """A file was read (or failed) and ``nbytes`` more bytes were read."""

    def tick(self, tally: Tally | None) -> None:
        """Called every interval, also while nothing completes."""

    def waiting(self, text: str | None) -> None:
        """Reading waits (for a server's background hours), as ``text`` says; None: it goes on."""

    def close(self) -> None: ...


class LineProgress:
    """One plain line per interval, for output that is not a terminal."""

    def __init__(self, out: TextIO, every: float) -> None:
        self._out = out
        self._every = every
        self._last = time.monotonic()
        self._listed = (0, 0)
        self._waiting: str | None = None

    def _say(self, text: str) -> None:
        print(f"prefetch: {text}", file=self._out, flush=True)
        self._last = time.monotonic()

    def listing(self, dirs: int, files: int) -> None:
        self._listed = (dirs, files)

    def start(self, tally: Tally) -> None:
        size = tally.expected_bytes()
        known = f"{'' if tally.exact() else '~'}{_mb(size)} MB" if size else "size not known yet"
        self._say(f"reading {tally.files} file{'' if tally.files == 1 else 's'} ({known})")

    def advance(self, tally: Tally, nbytes: int) -> None:
        if time.monotonic() - self._last >= self._every:
            self.tick(tally)

    def waiting(self, text: str | None) -> None:
        self._waiting = text
        if text is not None:
            self._say(text)

    def tick(self, tally: Tally | None) -> None:
        if self._waiting is not None:
            self._say(self._waiting)
            return
        if tally is None:
            dirs, files = self._listed
            self._say(
                f"listing: {dirs} director{'y' if dirs == 1 else 'ies'}, {files} file{'' if files == 1 else 's'} so far"
            )
            return
        approx = "" if tally.exact() else "~"
        failed = f", {tally.failed} failed" if tally.failed else ""
        size = f"{_mb(tally.done_bytes)}/{approx}{_mb(tally.expected_bytes())} MB"
        done = f"{tally.done}/{tally.files} file{'' if tally.files == 1 else 's'}"
        self._say(f"{done}, {size}, {_mb(tally.rate())} MB/s, ETA {tally.eta()}{failed}")

    def close(self) -> None:
        pass


class BarProgress:
    """A tqdm bar over the bytes, on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        # a terminal that does not know its width (a pty nobody sized) says 0 columns
        try:
            sized = os.get_terminal_size(out.fileno()).columns > 0
        except (OSError, ValueError):
            sized = False
        fallback = shutil.get_terminal_size()
        self._shape: dict[str, Any] = (
            {"dynamic_ncols": True} if sized else {"ncols": fallback.columns, "nrows": fallback.lines}
        )
        self._bar: tqdm[Never] | None = None
        self._waiting: str | None = None
        self._walk: tqdm[Never] | None = tqdm(
            desc="listing", file=out, leave=False, bar_format="{desc}: {n} files [{elapsed}]", **self._shape
        )

    def listing(self, dirs: int, files: int) -> None:
        if self._walk is not None:
            self._walk.n = files
            self._walk.set_description_str(f"listing {dirs} director{'y' if dirs == 1 else 'ies'}", refresh=False)
            self._walk.refresh()

    def start(self, tally: Tally) -> None:
        if self._walk is not None:
            self._walk.close()
            self._walk = None
        self._bar = tqdm(
            total=tally.expected_bytes() or None,
            unit="B",
            unit_scale=True,
            file=self._out,
            desc=self._desc(tally),
            mininterval=0.2,
            **self._shape,
        )

    @staticmethod
    def _desc(tally: Tally) -> str:
        failed = f", {tally.failed} failed" if tally.failed else ""
        files = "file" if tally.files == 1 else "files"
        return f"{tally.done}/{tally.files} {files}{failed}{'' if tally.exact() else ' (size ~)'}"

    def advance(self, tally: Tally, nbytes: int) -> None:
        if self._bar is None:
            return
        self._bar.total = max(tally.expected_bytes(), tally.done_bytes) or None
        self._bar.set_description_str(self._waiting or self._desc(tally), refresh=False)
        self._bar.update(nbytes)

    def waiting(self, text: str | None) -> None:
        self._waiting = text
        bar = self._bar or self._walk
        if bar is not None and text is not None:
            bar.set_description_str(text)

    def tick(self, tally: Tally | None) -> None:
        for bar in (self._bar, self._walk):
            if bar is not None:
                bar.refresh()

    def close(self) -> None:
        for bar in (self._walk, self._bar):
            if bar is not None:
                bar.close()
        self._bar = self._walk = None


def progress_for(out: TextIO = sys.stdout, every: float = 5.0) -> Progress:
    """A bar when ``out`` is a terminal, plain lines every ``every`` seconds otherwise."""
    return BarProgress(out) if out.isatty() else LineProgress(out, every)
