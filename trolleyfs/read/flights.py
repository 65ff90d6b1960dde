"""Single-flight: at most one fetch per instance is in flight; every other
reader of that instance waits on the same :class:`Flight` instead of starting
another fetch.  This module only keeps the register; :mod:`.single` and
:mod:`.readahead` start the fetches.

A flight carries the :class:`~trolleyfs.limits.priority.Urgency` its fetch
runs under (a user's read, series readahead, a prefetch): a more urgent
reader who joins it raises it (:meth:`Flight.join`), so a user waiting for
a file a prefetch is fetching is never queued behind the prefetch; and
where its bytes came from (``pacs`` or ``shared``), for the audit."""

from __future__ import annotations

import trio

from ..errors import IgnoredError
from ..limits.priority import Urgency, current


class Flight:
    """One fetch of one instance in progress.  ``by_series``: its bytes are to
    come from a series readahead rather than a fetch of the instance alone."""

    __slots__ = ("by_series", "data", "done", "error", "rescued", "source", "urgency")

    def __init__(self, by_series: bool, urgency: Urgency | None = None) -> None:
        self.done = trio.Event()
        self.data: bytes | None = None
        self.error: BaseException | None = None
        self.by_series = by_series
        self.rescued = False  # a fetch of the instance alone was started into this series flight
        # whose work this is: the caller's priority (a cell of its own: raising it hurries this fetch only)
        self.urgency = urgency if urgency is not None else Urgency(current().value)
        self.source: str | None = None  # where the bytes came from: "pacs" or "shared"

    def finish(self, data: bytes | None = None, error: BaseException | None = None, source: str | None = None) -> None:
        """The first call wins; later ones are ignored."""
        if not self.done.is_set():
            self.data, self.error, self.source = data, error, source
            self.done.set()

    def join(self) -> None:
        """A reader waits for this flight: its fetch is at least as urgent as the reader."""
        self.urgency.raise_to(current().value)

    @property
    def worth_asking_alone(self) -> bool:
        """A series fetch failed or did not carry this instance: fetching it
        alone may still work (unless the server said to skip it)."""
        return self.by_series and self.error is not None and not isinstance(self.error, IgnoredError)


class Flights:
    """The flights in progress, by SOP Instance UID."""

    def __init__(self) -> None:
        self._by_uid: dict[str, Flight] = {}

    def get(self, uid: str) -> Flight | None:
        return self._by_uid.get(uid)

    def __contains__(self, uid: str) -> bool:
        return uid in self._by_uid

    def __len__(self) -> int:
        return len(self._by_uid)

    def open(self, uid: str, by_series: bool, urgency: Urgency | None = None) -> Flight:
        flight = Flight(by_series, urgency)
        self._by_uid[uid] = flight
        return flight

    def close(self, uid: str, flight: Flight) -> None:
        """Forget ``flight`` (if it still is the one for ``uid``)."""
        if self._by_uid.get(uid) is flight:
            del self._by_uid[uid]

    def stats(self) -> dict[str, object]:
        return {"in_flight": len(self)}
