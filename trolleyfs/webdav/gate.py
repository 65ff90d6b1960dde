"""What every authenticated request passes before WsgiDAV serves it: the
method must be one a read-only class 1 server serves (every other is 405,
with the methods that are allowed), a PROPFIND must not ask for the whole
tree (``Depth: infinity``, or no Depth, which means the same: 403 with
RFC 4918's ``propfind-finite-depth``), and the request gets its
:class:`~.requester.Requester` (the user and the client's address) for the
audit.  It also counts requests by method, for the stats and the tests.

:func:`in_front` sits in front of WsgiDAV, for two faults of the libraries:
cheroot leaves the path of an OPTIONS request percent-encoded (every other
method's it decodes), so ``OPTIONS /a%20b`` would name a file that does not
exist; and WsgiDAV answers a path that climbs above the root (``/../x``)
with a 400 whose headers promise a body it never sends, so the client
waits for it until the connection times out.  It also keeps a streamed
PROPFIND's connection open (:func:`~.propfind.keep_alive`)."""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from wsgidav.dav_error import PRECONDITION_CODE_PropfindFiniteDepth
from wsgidav.mw.base_mw import BaseMiddleware

from .auth import CONFIG_KEY
from .propfind import keep_alive
from .requester import Requester
from .resources import REQUESTER_KEY

ALLOWED = ("OPTIONS", "GET", "HEAD", "PROPFIND")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
_QUOTED_SLASH = re.compile(rb"%2F", re.IGNORECASE)


def in_front(app: WsgiApp) -> WsgiApp:
    """``app`` with the path of OPTIONS requests percent-decoded as cheroot
    decodes every other (an encoded slash stays ``%2F``: it is no separator),
    and a path that climbs above the root answered 400 here, with its body."""

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "OPTIONS" and "%" in path:
            raw = path.encode("latin-1")  # WSGI: the bytes as latin-1
            atoms = [urllib.parse.unquote_to_bytes(a) for a in _QUOTED_SLASH.split(raw)]
            path = environ["PATH_INFO"] = b"%2F".join(atoms).decode("latin-1")
        if path != "*" and _climbs(path):
            return _answer(start_response, "400 Bad Request", b"the path leaves the root\n")

        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, keep_alive(environ, headers), exc_info)

        return app(environ, respond)

    return wrapped


def _climbs(path: str) -> bool:
    """Whether ``..`` in ``path`` goes above the root."""
    depth = 0
    for name in path.split("/"):
        if name == "..":
            depth -= 1
            if depth < 0:
                return True
        elif name not in ("", "."):
            depth += 1
    return False


class Counts:
    """Requests served, by method (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_method: Counter[str] = Counter()

    def add(self, method: str) -> None:
        with self._lock:
            self._by_method[method if method.isalpha() and len(method) < 20 else "other"] += 1

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_method)


class Gate(BaseMiddleware):  # type: ignore[misc]  # WsgiDAV has no type hints
    def __init__(self, wsgidav_app: object, next_app: Any, config: dict[str, Any]) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self._counts: Counts = config[CONFIG_KEY]["counts"]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "")
        self._counts.add(method)
        if method not in ALLOWED:
            return _answer(
                start_response,
                "405 Method Not Allowed",
                b"read-only: this server answers only " + ", ".join(ALLOWED).encode() + b"\n",
                [("Allow", ", ".join(ALLOWED))],
            )
        if method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").strip().lower() == "infinity":
            body = (
                '<?xml version="1.0" encoding="utf-8"?>\n'
                f'<D:error xmlns:D="DAV:"><D:{PRECONDITION_CODE_PropfindFiniteDepth[6:]}/></D:error>\n'
            ).encode()
            return _answer(start_response, "403 Forbidden", body, content_type="application/xml; charset=utf-8")
        environ[REQUESTER_KEY] = Requester(
            user=environ.get("wsgidav.auth.user_name") or None, address=environ.get("REMOTE_ADDR", "")
        )
        result: Iterable[bytes] = self.next_app(environ, start_response)
        return result


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]
