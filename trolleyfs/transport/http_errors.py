"""How HTTP failures become :mod:`trolleyfs.errors`: status codes, transport
errors, TLS trouble, and which of them are worth retrying; and a server's
error body said in a few words (its message text, not a cut JSON document)."""

from __future__ import annotations

import json
import re
import ssl

import httpx
import trio

from ..errors import AccessDenied, NotFound, ProtocolError, RemoteError, Unavailable


class TLSFailed(Unavailable):
    """TLS could not be set up (the server speaks plain HTTP on an ``https://``
    URL, no common protocol version, ...): a mistake in the config or on the
    server, not an outage; retrying cannot help."""


class TLSUntrusted(TLSFailed):
    """The server's certificate is not trusted: retrying cannot help."""


class Busy(Unavailable):
    """408 or 429: the server is there and asks to be asked later."""


MAX_SAID = 200  # characters of a server's message quoted in an error
# where servers put the words of an error in a JSON body, most telling first:
# Orthanc ("Message", "Details"), Google and many APIs ("error": {"message"}),
# OAuth ("error_description"), problem+json ("title", "detail")
_MESSAGE_KEYS = ("message", "Message", "error_description", "title", "detail", "Details", "error", "HttpError")


def _json_message(doc: object, depth: int = 0) -> str:
    """The human words of a JSON error document ("" if it has none)."""
    if depth > 3:
        return ""
    if isinstance(doc, str):
        return doc
    if isinstance(doc, list):
        return next((m for m in (_json_message(d, depth + 1) for d in doc[:3]) if m), "")
    if not isinstance(doc, dict):
        return ""
    said: list[str] = []
    for key in _MESSAGE_KEYS:
        text = " ".join(_json_message(doc.get(key), depth + 1).split())
        if text and not any(text in s or s in text for s in said):
            said.append(text)
        if len(said) == 2:
            break
    return said[0] + (f" ({said[1]})" if len(said) > 1 else "") if said else ""


def _shortened(text: str) -> str:
    """``text`` on one line, at most :data:`MAX_SAID` characters, cut at a word."""
    text = " ".join(text.split())
    if len(text) <= MAX_SAID:
        return text
    cut = text[:MAX_SAID].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " ..."


def server_says(resp: httpx.Response) -> str:
    """What the body of an error answer says, in a few words: the message of a
    JSON error document, the title of an HTML page, or the start of plain text."""
    try:
        body = resp.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        return ""
    ctype = resp.headers.get("content-type", "").lower()
    start = body.lstrip()[:1]
    if "json" in ctype or start in ("{", "["):
        try:
            return _shortened(_json_message(json.loads(body)))
        except (ValueError, RecursionError):
            pass  # not JSON after all: said as text
    if "html" in ctype or start == "<":
        m = re.search(r"<title>(.*?)</title>", body, re.S | re.I)
        return _shortened(m.group(1)) if m else ""
    return _shortened(body)


def describe_status(resp: httpx.Response) -> str:
    """``HTTP 404 Not Found: <what the server says>``."""
    text = server_says(resp)
    return f"HTTP {resp.status_code} {resp.reason_phrase}" + (f": {text}" if text else "")


def raise_for_status(resp: httpx.Response, server: str, what: str) -> None:
    """Map a non-2xx answer onto our errors (404 -> NotFound, 401/403 ->
    AccessDenied, 5xx -> Unavailable, 408/429 -> Busy, anything else ->
    ProtocolError); the error carries the status (``http_status``)."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    msg = describe_status(resp)
    exc: RemoteError
    if code == 404:
        exc = NotFound(msg, server=server, what=what)
    elif code in (401, 403):
        exc = AccessDenied(msg, server=server, what=what)
    elif code in (408, 429):
        exc = Busy(msg, server=server, what=what)
    elif code >= 500:
        exc = Unavailable(msg, server=server, what=what)
    else:
        exc = ProtocolError(msg, server=server, what=what)
    exc.http_status = code
    raise exc


def _tls_cause(exc: BaseException) -> ssl.SSLError | None:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 8:
        if isinstance(cur, ssl.SSLError):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def translate(exc: BaseException, server: str, what: str) -> RemoteError:
    """Our error for an exception raised while talking HTTP."""
    if isinstance(exc, RemoteError):
        return exc
    tls = _tls_cause(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return TLSUntrusted(
            f"TLS: the server certificate is not trusted ({tls.verify_message or tls.reason}): "
            "set ca_bundle to the CA that signed it (or verify = false)",
            server=server,
            what=what,
        )
    if isinstance(tls, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):  # the peer hung up mid-handshake
        return Unavailable(f"TLS handshake cut off: {tls.reason or tls}", server=server, what=what)
    if tls is not None:
        reason = tls.reason or str(tls)
        hint = " (the server speaks plain HTTP here? then use http://)" if "WRONG_VERSION" in reason.upper() else ""
        return TLSFailed(f"TLS handshake failed: {reason}{hint}", server=server, what=what)
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"timed out ({type(exc).__name__})", server=server, what=what)
    if isinstance(exc, httpx.ConnectError):
        return Unavailable(f"cannot connect: {exc}", server=server, what=what)
    if isinstance(exc, (httpx.TransportError, OSError)):
        return Unavailable(f"connection failed: {type(exc).__name__}: {exc}", server=server, what=what)
    if isinstance(exc, trio.TooSlowError):
        return Unavailable("no answer before the deadline", server=server, what=what)
    return ProtocolError(f"{type(exc).__name__}: {exc}", server=server, what=what)


# what a request may raise that translate() understands
HTTP_FAILURES: tuple[type[Exception], ...] = (RemoteError, httpx.HTTPError, OSError, trio.TooSlowError)


def retryable(exc: Exception) -> bool:
    """Timeouts, resets and 5xx may work later; a TLS failure will not."""
    return isinstance(exc, Unavailable) and not isinstance(exc, TLSFailed)
