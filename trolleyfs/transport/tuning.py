"""Settings of the transport libraries that trolleyfs changes for speed,
applied by :func:`tune` once at start-up (the CLI calls it; so do the tests).
Nothing here runs at import time."""

from __future__ import annotations

HTTP_READ_BYTES = 1 << 20


def tune() -> None:
    """Apply both settings; calling it again changes nothing."""
    tune_httpcore()
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


def tune_pynetdicom() -> None:
    """pynetdicom formats every C-FIND/C-GET identifier for its log whatever
    the log level: CPU for nothing, and it decodes the values we want to read
    raw (see :func:`trolleyfs.transport.dimse_data.attrs_from_dataset`)."""
    from pynetdicom import _config

    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
