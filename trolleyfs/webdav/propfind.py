"""PROPFIND answered as it is made: the multistatus body is sent response by
response, so a folder of 50,000 studies starts arriving at once and the server
never holds the whole document.

WsgiDAV builds a PROPFIND's answer as one XML tree and sends it whole; its
providers may take over a method (``DAVProvider.custom_request_handler``), and
:class:`~.resources.TreeProvider` hands PROPFIND here.  What is asked is read
as WsgiDAV reads it (allprop, propname or named properties, with its own body
parser), and each resource's ``<response>`` is made with WsgiDAV's own
property code, so the properties are the ones WsgiDAV would answer; only the
document is sent in pieces (chunked transfer encoding, HTTP/1.1).

Everything that can fail as a whole fails before the 207 is sent: an unknown
path (404), a Depth other than 0 or 1 (400; infinity is refused by the :mod:`.gate`), a
bad body (400), a listing the archive does not answer (502).  What fails for
one resource (a size that could not be learned) is that property's own status
inside the 207, as WsgiDAV reports it.  Anything else going wrong once the body
has begun closes the connection without the closing chunk: a client sees a
broken answer, never a short listing that looks whole.

WsgiDAV holds every answer without a Content-Length to be a provider that
does not know its length: it logs an error and makes the client reconnect
(``Connection: close``).  A streamed PROPFIND is neither: it is marked
(:data:`STREAMED` in its environ) and :func:`~.gate.in_front` keeps its
connection open (when the request's body was read whole); every 207 is one of
these, and :class:`QuietStreamed` keeps WsgiDAV's two lines about it out of
the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_NOT_FOUND, DAVError
from wsgidav.xml_tools import etree, make_multistatus_el

CHUNK_BYTES = 64 * 1024  # responses gathered into one write of the body
_HEAD = b'<?xml version="1.0" encoding="utf-8" ?>\n<ns0:multistatus xmlns:ns0="DAV:">'
_TAIL = b"</ns0:multistatus>"
_ALLPROP = "{DAV:}allprop"
_PROPNAME = "{DAV:}propname"
_PROP = "{DAV:}prop"

STREAMED = "trolleyfs.streamed"  # environ key: this answer is chunked on purpose
_NO_LENGTH_207 = "Missing required Content-Length header in 207-response"
_CLOSING = "Adding 'Connection: close' header"
_last = threading.local()  # whether this thread's last WsgiDAV line was the 207 complaint

Asked = tuple[str, list[str]]  # WsgiDAV's mode ("allprop", "name", "named") and the names asked for
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def asked(environ: dict[str, Any]) -> Asked:
    """What a PROPFIND's body asks for; an empty body asks for everything."""
    body = util.parse_xml_body(environ, allow_empty=True)
    if body is None:
        return "allprop", []
    if body.tag != "{DAV:}propfind":
        raise DAVError(HTTP_BAD_REQUEST, "the body is not a DAV:propfind")
    modes = {_ALLPROP: "allprop", _PROPNAME: "name", _PROP: "named"}
    found = [modes[el.tag] for el in body if el.tag in modes]
    if len(set(found)) > 1:  # RFC 4918: allprop, propname and prop exclude each other
        raise DAVError(HTTP_BAD_REQUEST, "allprop, propname and prop cannot be combined")
    if not found:
        return "allprop", []
    names = [p.tag for el in body if el.tag == _PROP for p in el]
    return found[0], names


def depth(environ: dict[str, Any]) -> str:
    """The Depth asked for: 0 or 1 (infinity, or none, which means the same,
    never gets here: the :mod:`.gate` answers it)."""
    value = str(environ.get("HTTP_DEPTH", "")).strip().lower()
    if value not in ("0", "1"):
        raise DAVError(HTTP_BAD_REQUEST, f"invalid Depth header: {value!r}")
    return value


def propfind(provider: Any, environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
    """Answer a PROPFIND: checked whole, then sent response by response."""
    res = provider.get_resource_inst(environ["PATH_INFO"], environ)
    how = depth(environ)
    if res is None:
        raise DAVError(HTTP_NOT_FOUND)
    what = asked(environ)
    members = res.get_member_list() if how == "1" and res.is_collection else []
    environ[STREAMED] = True
    start_response(
        "207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"), ("Date", util.get_rfc1123_time())]
    )
    return _body([res, *members], what)


class QuietStreamed(logging.Filter):
    """For WsgiDAV's app logger: drops its complaint about a 207 without a
    Content-Length (every 207 is a streamed PROPFIND) and the "adding
    Connection: close" line right after it; any other line between them (the
    request's body not read whole) keeps the second one."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        after_207 = getattr(_last, "no_length_207", False)
        _last.no_length_207 = text.startswith(_NO_LENGTH_207)
        return not (_last.no_length_207 or (after_207 and text.startswith(_CLOSING)))


def keep_alive(environ: dict[str, Any], headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without the ``Connection: close`` WsgiDAV adds to a
    streamed answer (chunked encoding ends it, the connection stays usable),
    unless the request's body was not read whole."""
    if not environ.get(STREAMED) or not (
        util.get_content_length(environ) == 0 or environ.get("wsgidav.all_input_read")
    ):
        return headers
    return [(k, v) for k, v in headers if not (k.lower() == "connection" and v.lower() == "close")]


def _body(resources: list[Any], what: Asked) -> Iterator[bytes]:
    pending = [_HEAD]
    size = len(_HEAD)
    for res in resources:
        piece = response(res, what)
        pending.append(piece)
        size += len(piece)
        if size >= CHUNK_BYTES:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(_TAIL)
    yield b"".join(pending)


def response(res: Any, what: Asked) -> bytes:
    """One resource's ``<response>`` element, as WsgiDAV makes it."""
    mode, names = what
    props = res.get_properties(mode, name_list=names) if mode == "named" else res.get_properties(mode)
    holder = make_multistatus_el()
    util.add_property_response(holder, res.get_href(), props)
    (el,) = list(holder)
    data: bytes = etree.tostring(el, encoding="utf-8")
    return data.split(b"?>", 1)[1].lstrip(b"\n") if data.startswith(b"<?xml") else data
