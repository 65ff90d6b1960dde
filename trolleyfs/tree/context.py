"""What the nodes of the tree may use, and nothing more: name templates, the
TTL of each level's listing, the mount time, searches, reads, and what is
shown of what is listed (the presenter)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..listings.sources import Listings
from ..listings.ttls import ListingTTLs
from ..model import InstanceRef
from .presenter import Presenter


class Reader(Protocol):
    """Where instance files get their bytes and sizes (the Store)."""

    async def get(self, server: str, ref: InstanceRef, siblings: Callable[[], list[str]] | None = None) -> bytes:
        """The Part-10 bytes of ``ref`` (in its form); ``siblings`` (all
        instance UIDs of its series) lets the reader fetch the series ahead."""
        ...

    def size_of(self, key: str) -> int | None:
        """The size of an instance (by its cache key, ``InstanceRef.key``) if
        known without fetching it."""
        ...

    def cached_in(self, uid: str) -> tuple[bool, bool]:
        """Whether an instance is in the memory cache, and in the disk cache
        (nothing counted, nothing fetched)."""
        ...


@dataclass(frozen=True)
class Context:
    names: Mapping[str, str]  # name template by level: "study", "series", "instance"
    ttls: ListingTTLs  # seconds each level's listing is kept
    mount_time: float  # the mtime of what has no date of its own
    listings: Listings
    reader: Reader
    form: str = ""  # the form a folder's files are served in ("": as stored; a transfer syntax; de-identified)
    presenter: Presenter = field(
        default_factory=Presenter
    )  # what is shown of what is listed (de-identified with [deidentify])
