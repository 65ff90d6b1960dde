"""What names a search, for keeping its result (on disk, in the cluster
tier): one key for a study search, made of everything that shapes its
answer, and its hash where a short name is needed."""

from __future__ import annotations

import hashlib
import json

from ..model import Query


def search_key(query: Query, min_text: str | None = None, max_text: str | None = None) -> str:
    """What identifies a study search.  A folder gives its date bounds as
    written (``-7d``), so its listing is found again on another day;
    otherwise the dates are the resolved ones."""
    return json.dumps(
        {
            "filters": dict(sorted(query.filters.items())),
            "min": min_text if min_text is not None else (query.min_study_date and query.min_study_date.isoformat()),
            "max": max_text if max_text is not None else (query.max_study_date and query.max_study_date.isoformat()),
            "include": list(query.include_fields),
            "level": query.level.value,
            "limit": query.limit,
        },
        sort_keys=True,
    )


def short_name(key: str) -> str:
    """A key as a short, fixed-length name (a hash)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]
