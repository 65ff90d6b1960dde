"""Who asked: the seam through which a front end tells the core (the audit
trail) on whose behalf a tree or read call runs.

The WebDAV front end sets :data:`REQUESTER` inside the trio task that serves
each request (see :mod:`.bridge`), to the authenticated WebDAV user and the
client's address; code below it reads ``REQUESTER.get()``.  A contextvar,
not an argument, so that the tree and the read path need no new parameter:
the audit reads it where it records a read or a listing.  Tasks the core
starts in its own nurseries (series readahead) do not inherit it: they run on
nobody's behalf, as they should be recorded.

To wire (issue 20's audit, issue 23's layers): move this module to a leaf of
the core (it imports nothing of trolleyfs) and let the FUSE front end set it
from pyfuse3's RequestContext (uid, pid) the same way.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Requester:
    """``user``: the authenticated user (None: anonymous, loopback only);
    ``address``: the client's IP address; ``front``: which front end."""

    user: str | None
    address: str
    front: str = "webdav"


REQUESTER: ContextVar[Requester | None] = ContextVar("trolleyfs_requester", default=None)
