"""The exception hierarchy and its errno mapping.

Everything below ``fs.py`` raises these; ``fs.py`` turns them into errno values
in one place.  A :class:`UserError` is a mistake the user can fix (bad config,
bad argument) and is printed as one line, without a traceback.
"""

from __future__ import annotations

import errno


class TrolleyError(Exception):
    """Base class of every error trolleyfs raises on purpose."""

    errno = errno.EIO


class UserError(TrolleyError):
    """A mistake in what the user gave us: printed as one line, exit code 2."""


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (a newline, NUL, a
    control or separator character a config value may carry) escaped, so that
    a message quoting it stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class ConfigError(UserError):
    """A problem in the config file; the message names file, key and problem,
    in one line whatever the key and the values quoted hold."""

    def __init__(self, path: str, key: str | None, problem: str) -> None:
        self.path, self.key, self.problem = str(path), key, problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(one_line(where + problem))


class RemoteError(TrolleyError):
    """A remote call failed.  ``server`` and ``what`` say where and on what;
    ``http_status``: the HTTP status of the answer, when there was one."""

    http_status: int | None = None

    def __init__(self, message: str, *, server: str = "", what: str = "") -> None:
        self.server, self.what, self.message = server, what, message
        parts = [p for p in (server, what) if p]
        super().__init__((": ".join(parts) + ": " if parts else "") + message)

    @property
    def cause(self) -> str:
        """What went wrong, without what was being asked (which may name a
        study by its UID) nor what the server wrote: for places every reader
        of a mount sees (``stats.json``); the log has the whole message."""
        return f"HTTP {self.http_status}" if self.http_status is not None else self.message


class NotFound(RemoteError):
    """The object does not exist on the server (HTTP 404, unknown UID)."""

    errno = errno.ENOENT


class AccessDenied(RemoteError):
    """Credentials missing or refused (HTTP 401/403, association rejected)."""

    errno = errno.EACCES


class Unavailable(RemoteError):
    """Timeout, refused connection, reset, 5xx: may work later."""

    errno = errno.EIO


class ProtocolError(RemoteError):
    """The server answered, but not with what the protocol promises
    (HTML instead of XML, a truncated multipart body, a part that is not DICOM)."""

    errno = errno.EIO


class IgnoredError(RemoteError):
    """A server error the config asked us to skip (e.g. RAD69 XDSMissingDocument).
    The objects concerned are left out, not failed."""

    errno = errno.ENOENT
