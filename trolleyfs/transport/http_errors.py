"""How HTTP failures become :mod:`trolleyfs.errors`: status codes, transport
errors, TLS trouble, and which of them are worth retrying."""

from __future__ import annotations

import re
import ssl

import httpx
import trio

from ..errors import AccessDenied, NotFound, ProtocolError, RemoteError, Unavailable


class TLSUntrusted(Unavailable):
    """The server's certificate is not trusted: retrying cannot help."""


def describe_status(resp: httpx.Response) -> str:
    """``HTTP 500 Server Error: <first words of the body or the HTML title>``."""
    try:
        body = resp.text
    except (httpx.ResponseNotRead, UnicodeDecodeError):
        body = ""
    if "html" in resp.headers.get("content-type", "") or body.lstrip()[:1] == "<":
        m = re.search(r"<title>(.*?)</title>", body, re.S | re.I)
        body = m.group(1) if m else ""
    text = " ".join(body.split())[:160]
    return f"HTTP {resp.status_code} {resp.reason_phrase}" + (f": {text}" if text else "")


def raise_for_status(resp: httpx.Response, server: str, what: str) -> None:
    """Map a non-2xx answer onto our errors (404 -> NotFound, 401/403 ->
    AccessDenied, 5xx -> Unavailable, anything else -> ProtocolError)."""
    code = resp.status_code
    if 200 <= code < 300:
        return
    msg = describe_status(resp)
    if code == 404:
        raise NotFound(msg, server=server, what=what)
    if code in (401, 403):
        raise AccessDenied(msg, server=server, what=what)
    if code >= 500 or code in (408, 429):
        raise Unavailable(msg, server=server, what=what)
    raise ProtocolError(msg, server=server, what=what)


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
    if tls is not None:
        return Unavailable(f"TLS handshake failed: {tls.reason or tls}", server=server, what=what)
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
    """Timeouts, resets and 5xx may work later; a refused certificate will not."""
    return isinstance(exc, Unavailable) and not isinstance(exc, TLSUntrusted)
