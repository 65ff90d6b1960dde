"""Settings of the transport libraries that trolleyfs changes for speed,
applied by :func:`tune` once at start-up (the CLI calls it; so do the tests).
Nothing here runs at import time."""

from __future__ import annotations

HTTP_READ_BYTES = 1 << 20


def tune() -> None:
    """Apply every setting; calling it again changes nothing."""
    tune_httpcore()
    tune_h11()
    tune_pynetdicom()


def tune_httpcore() -> None:
    """httpcore reads a response body 64 KiB at a time; each read costs a trip
    through several async generators.  Series bodies are hundreds of MB, so
    read up to 1 MiB at a time (the kernel returns what has arrived)."""
    try:
        from httpcore._async.http11 import AsyncHTTP11Connection
    except ImportError:  # a future httpcore: keep its default
        return
    if getattr(AsyncHTTP11Connection, "READ_NUM_BYTES", 0) < HTTP_READ_BYTES:
        AsyncHTTP11Connection.READ_NUM_BYTES = HTTP_READ_BYTES


_H11_BUFFER_FIELDS = {"_data", "_next_line_search", "_multiple_lines_search"}


def tune_h11() -> bool:
    """h11 hands a body on by copying its receive buffer twice (once only to
    see whether it is empty); a series is hundreds of MB, and those copies were
    a seventh of the loop's time in a cold copy.  When all that is buffered is
    asked for, as it is while a body streams, hand over the buffer itself.
    Applied only to the buffer this was written against (h11 0.14-0.16: its
    three fields); another h11 keeps its own code.  Returns whether applied."""
    try:
        from h11._receivebuffer import ReceiveBuffer
    except ImportError:
        return False
    if getattr(ReceiveBuffer, "_trolleyfs_tuned", False):
        return True
    if set(vars(ReceiveBuffer())) != _H11_BUFFER_FIELDS or not hasattr(ReceiveBuffer, "_extract"):
        return False
    extract = ReceiveBuffer._extract

    def maybe_extract_at_most(self: ReceiveBuffer, count: int) -> bytearray | None:
        data = self._data
        if not data:
            return None
        if count < len(data):
            return extract(self, count)
        self._data = bytearray()  # all of it: the caller takes the buffer, no copy
        self._next_line_search = self._multiple_lines_search = 0
        return data

    ReceiveBuffer.maybe_extract_at_most = maybe_extract_at_most  # type: ignore[method-assign]
    ReceiveBuffer._trolleyfs_tuned = True  # type: ignore[attr-defined]
    return True


def tune_pynetdicom() -> None:
    """pynetdicom formats every C-FIND/C-GET identifier for its log whatever
    the log level: CPU for nothing, and it decodes the values we want to read
    raw (see :func:`trolleyfs.transport.dimse_data.attrs_from_dataset`)."""
    from pynetdicom import _config

    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
