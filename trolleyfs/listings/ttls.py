"""How long listings are kept: one number per level, named by what it lists."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ListingTTLs:
    """Seconds a listing is kept before it is asked again, named by what it
    lists: a folder's (or a query's) studies (the config's ``folder_ttl``), a
    study's series (``study_ttl``), a series' instances (``series_ttl``)."""

    studies: float = 60.0
    series: float = 300.0
    instances: float = 3600.0
