"""What names a search, for keeping its result (on disk, in the cluster
tier): one key for a study search, made of everything that shapes its
answer, and its hash where a short name is needed; and what names the
server it was asked of (its identity, not the name the config gives it)."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlsplit, urlunsplit

from ..endpoints import AeEndpoint, EndpointConfig, Server, UrlEndpoint
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


def _endpoint_identity(ep: EndpointConfig) -> dict[str, object]:
    """What makes an endpoint the same archive: its URL (scheme and host in
    lower case, the default port and a trailing slash dropped) or its
    application entity (host, port and both AE titles); settings that only
    shape requests (page sizes, how spaces are sent) do not count."""
    if isinstance(ep, UrlEndpoint):
        parts = urlsplit(ep.url)
        port = parts.port
        default = {"http": 80, "https": 443}.get(parts.scheme.lower())
        netloc = (parts.hostname or "").lower() + (f":{port}" if port and port != default else "")
        return {"url": urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))}
    if isinstance(ep, AeEndpoint):
        return {"host": ep.host.lower(), "port": ep.port, "called": ep.called_aet, "calling": ep.calling_aet}
    return {"where": ep.where()}


def server_identity(server: Server) -> str:
    """What a server is, as a short name: the protocol and identity of its
    search endpoint (listings kept on disk and in the cluster tier are named by
    it, so a server name pointed at another archive, or a mistyped port, never
    finds the listings of the one it used to name)."""
    ep = server.search
    return short_name(json.dumps({"protocol": ep.protocol, **_endpoint_identity(ep)}, sort_keys=True))
