"""Where a read's bytes came from (``memory``, ``disk``, ``shared``, ``pacs``),
told by the read path to the front end that audits the read.

The front end opens a note around the call that reads (``with noting() as
note:``); the read path calls :func:`served_from` wherever it serves bytes
(the Store: a cache hit, a fetch it waited for).  A context variable, so that
the tree between the two needs no new parameter; unset (no audit), telling
costs one lookup.  A read served from several places (a zip of many
instances, a retry) keeps the furthest one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .record import furthest


class SourceNote:
    """Where the bytes of one access came from, so far (None: nothing served yet)."""

    __slots__ = ("source",)

    def __init__(self) -> None:
        self.source: str | None = None


_NOTE: ContextVar[SourceNote | None] = ContextVar("trolleyfs_source_note", default=None)


@contextmanager
def noting(note: SourceNote | None = None) -> Iterator[SourceNote]:
    """Note the sources of what the body reads (into ``note``, or a new one)."""
    note = note if note is not None else SourceNote()
    token = _NOTE.set(note)
    try:
        yield note
    finally:
        _NOTE.reset(token)


def served_from(source: str | None) -> None:
    """The read path served bytes from ``source`` (for whoever notes it)."""
    note = _NOTE.get()
    if note is not None and source is not None:
        note.source = furthest(note.source, source)
