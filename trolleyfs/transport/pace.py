"""What the transport asks before it takes from a server: the small interface
a server's limits (:mod:`trolleyfs.limits`, a layer above) are handed to the
transport through, so that the transport never imports them.

* :meth:`Pace.request` before each HTTP request (each attempt, redirect and
  authentication round) and each DICOM association;
* :meth:`Pace.received` for each chunk of bytes received, before more is read.

Both wait as long as the server's limits say, in the priority of the calling
task (a context variable the limits read).  :attr:`Pace.receive_buffer` is
the socket receive buffer the transport asks for on the server's
connections while a byte rate applies: the kernel takes in what it has room
for whether or not we read, and left to itself Linux grows that room to
megabytes; a small buffer makes TCP hold the server back as soon as the
limits do, and bounds what arrives ahead of them.  :meth:`Pace.bound` gives the same
pace with the caller's priority fixed, for bytes that arrive in a thread
trio did not start (pynetdicom's C-STORE handlers): :class:`ThreadCharge`
charges them from there, holding the peer up until the limits allow, and
its waits are progress for the deadlines of the task that made it (they are
our own waits, not the peer's silence).

The composition root (:mod:`trolleyfs.wiring`) hands each server's pace to
its HTTP client (:func:`~.http.build_client`) and its associations
(:func:`~.dimse.pace_associations`).  Without one, nothing is charged."""

from __future__ import annotations

from typing import Protocol

import trio

from ..idle import Beacon


class Pace(Protocol):
    async def request(self) -> None:
        """Before a request or an association: wait for the request rate."""

    async def received(self, nbytes: int) -> None:
        """``nbytes`` arrived: wait for the byte rate before reading more."""

    def bound(self) -> Pace:
        """This pace with the calling task's priority fixed (for other threads)."""

    @property
    def receive_buffer(self) -> int | None:
        """SO_RCVBUF for the server's connections (None: the kernel's own sizing)."""


class ThreadCharge:
    """Bytes received in another thread on behalf of the trio task that made
    this (its priority captured now).  Call :meth:`charge` in that thread; the
    task waits for the bytes inside ``with charge.beacon.listening():`` (within
    its idle deadline), so that the charge's waits keep its deadline moving."""

    def __init__(self, pace: Pace | None) -> None:
        self._pace = None if pace is None else pace.bound()
        self._token = trio.lowlevel.current_trio_token()
        self.beacon = Beacon()

    @property
    def active(self) -> bool:
        return self._pace is not None

    def charge(self, nbytes: int) -> None:
        """Wait (blocking this thread) until ``nbytes`` may be taken.  Raises
        trio.RunFinishedError or trio.Cancelled when the loop is gone."""
        if self._pace is not None and nbytes > 0:
            trio.from_thread.run(self.take, nbytes, trio_token=self._token)

    async def take(self, nbytes: int) -> None:
        """The charge itself, on the trio loop (where :meth:`charge` runs it)."""
        if self._pace is not None:
            with self.beacon.reporting():
                await self._pace.received(nbytes)
