"""Login servers for auth tests, on :class:`tests.servers.base.TestHTTPServer`.

* :class:`VitreaSessions`: a Vitrea Connection-like login (``POST`` with
  ``X-Userid``/``X-Password``/``X-Realm`` headers sets a ``JSESSIONID`` cookie)
  and a guard that answers 401 (Jetty's HTML) to requests without a live session.
  Sessions can expire after a number of requests or seconds.
* :class:`KeycloakTokens`: a Keycloak-like client-credentials token endpoint at
  ``/realms/<realm>/protocol/openid-connect/token`` issuing opaque tokens with a
  short ``expires_in``, and a guard checking ``Authorization: Bearer``.
* :class:`BasicCheck` / static bearer tokens for the simple schemes.

Each guard has ``protect(handler)`` and ``protect_routes(routes)``: the latter
wraps every route of another test server (MINT, RAD69, WADO-RS ...) and adds the
login/token route, so protocol tests can be repeated behind any auth::

    sessions = VitreaSessions(users={"alice": "pw"})
    server = TestHTTPServer(sessions.protect_routes(routes)).start()
    # or, for a server that builds its own routes:
    mint = MintServer(index); sessions.protect_server(mint); mint.start()
    # login_url = mint.root_url + sessions.login_path

All counters are safe to read from the test while the server threads run.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from .base import Handler, Request, Response, TestHTTPServer

_RECORDED = Path(__file__).parent.parent / "fixtures" / "recorded"
JETTY_401 = (_RECORDED / "mint_401_jetty.html").read_bytes()

Routes = dict[tuple[str, str], Handler]


def quick_server(routes: Mapping[tuple[str, str], Handler]) -> TestHTTPServer:
    """A TestHTTPServer (not started) tuned for tests that start many servers.

    Two things would otherwise cost time: Nagle's algorithm plus delayed ACKs
    hold each answer's body ~40 ms (headers and body are separate writes), and
    ``serve_forever``'s default 0.5 s poll makes every ``stop()`` take 0.5 s.
    (Candidates for base.py itself.)"""
    server = TestHTTPServer(dict(routes))
    server.httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    server.thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    return server


def _cookies(req: Request) -> dict[str, str]:
    out = {}
    for item in req.headers.get("cookie", "").split(";"):
        name, sep, value = item.strip().partition("=")
        if sep:
            out[name] = value
    return out


def _protect_all(routes: Mapping[tuple[str, str], Handler], guard: Handler, extra: Routes) -> Routes:
    wrapped: Routes = {key: guard_wrap(guard, handler) for key, handler in routes.items()}
    wrapped.update(extra)
    return wrapped


def guard_wrap(guard: Handler, handler: Handler) -> Handler:
    """``handler`` behind ``guard``: the guard answers a Response to refuse, or one with status 0 to let through."""

    def wrapped(req: Request) -> Response:
        verdict = guard(req)
        return handler(req) if verdict.status == 0 else verdict

    return wrapped


_PASS = Response(0)


@dataclass
class _Session:
    created: float
    uses: int = 0


@dataclass
class VitreaSessions:
    """The login endpoint and session check of a Vitrea Connection-like server.

    ``session_uses``/``session_seconds`` end a session after that many protected
    requests or seconds (None: never).  ``login_delay`` makes logins slow, to
    widen races in concurrency tests.  ``refuse_status`` is what a wrong login
    gets (Vitrea answers 401)."""

    users: dict[str, str] = field(default_factory=lambda: {"alice": "wonderland"})
    realm: str = "DefaultSystemRealm"
    login_path: str = "/login"
    session_uses: int | None = None
    session_seconds: float | None = None
    login_delay: float = 0.0
    refuse_status: int = 401
    cookie_name: str = "JSESSIONID"
    cookie_path: str = "/"
    clock: Callable[[], float] = time.monotonic  # what session_seconds are measured on; tests may pass their own
    # counters
    logins_started: int = 0  # login requests received (counted before login_delay)
    logins: int = 0  # successful
    failed_logins: int = 0
    refused_requests: int = 0  # protected requests answered 401
    served_requests: int = 0
    login_headers: list[dict[str, str]] = field(default_factory=list)
    _sessions: dict[str, _Session] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def login(self, req: Request) -> Response:
        """``POST login_path`` with X-Userid/X-Password/X-Realm: 200 and a session cookie, or 401."""
        with self._lock:
            self.logins_started += 1
        if self.login_delay:
            time.sleep(self.login_delay)
        user, password = req.headers.get("x-userid"), req.headers.get("x-password")
        realm = req.headers.get("x-realm")
        with self._lock:
            self.login_headers.append({k: v for k, v in req.headers.items() if k.startswith("x-")})
            if user not in self.users or self.users[user] != password or realm != self.realm:
                self.failed_logins += 1
                return Response(self.refuse_status, b"Invalid credentials", content_type="text/plain")
            self.logins += 1
        body = json.dumps({"token": secrets.token_hex(8), "user": user}).encode()
        return Response(200, body, headers={"Set-Cookie": self.issue_cookie()}, content_type="application/json")

    def issue_cookie(self) -> str:
        """A new session; returns its Set-Cookie value (also for servers that rotate the session id)."""
        sid = secrets.token_hex(16)
        with self._lock:
            self._sessions[sid] = _Session(self.clock())
        return f"{self.cookie_name}={sid}; Path={self.cookie_path}; HttpOnly"

    def check(self, req: Request) -> Response:
        """A guard: lets a request with a live session through, answers 401 otherwise."""
        sid = _cookies(req).get(self.cookie_name)
        with self._lock:
            session = self._sessions.get(sid) if sid else None
            if session is not None and self._expired(session):
                del self._sessions[sid]  # type: ignore[arg-type]
                session = None
            if session is None:
                self.refused_requests += 1
                return Response(401, JETTY_401, content_type="text/html;charset=iso-8859-1")
            session.uses += 1
            self.served_requests += 1
        return _PASS

    def _expired(self, s: _Session) -> bool:
        if self.session_uses is not None and s.uses >= self.session_uses:
            return True
        return self.session_seconds is not None and self.clock() - s.created >= self.session_seconds

    def expire_all(self) -> None:
        """End every session now, as a server restart or timeout would."""
        with self._lock:
            self._sessions.clear()

    def protect(self, handler: Handler) -> Handler:
        return guard_wrap(self.check, handler)

    def protect_routes(self, routes: Mapping[tuple[str, str], Handler]) -> Routes:
        """Every route behind the session check, plus ``POST login_path``."""
        return _protect_all(routes, self.check, {("POST", self.login_path): self.login})

    def protect_server(self, server: TestHTTPServer) -> None:
        """Put an existing test server (MintServer, Rad69Server.http ...) behind this login, in place."""
        server.routes = self.protect_routes(server.routes)


@dataclass
class KeycloakTokens:
    """A Keycloak-like token endpoint (client credentials grant) and a bearer check.

    Tokens are opaque random strings valid for ``expires_in`` seconds (the
    server's own view can be made longer with ``valid_for``, to test that the
    client renews *before* expiry).  ``static_tokens`` are always accepted (for
    ``auth.type = "bearer"``)."""

    clients: dict[str, str] = field(default_factory=lambda: {"trolleyfs": "s3cr3t-client"})
    realm: str = "pacs"
    expires_in: float = 300
    valid_for: float | None = None  # seconds the server accepts a token (default: expires_in)
    token_delay: float = 0.0
    static_tokens: frozenset[str] = frozenset()
    answer: Response | None = None  # a canned answer for every token request (error tests)
    # counters
    token_requests: int = 0
    issued: int = 0
    refused_requests: int = 0
    served_requests: int = 0
    forms: list[dict[str, str]] = field(default_factory=list)
    _tokens: dict[str, float] = field(default_factory=dict)  # token -> valid until (monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token_path(self) -> str:
        return f"/realms/{self.realm}/protocol/openid-connect/token"

    def token(self, req: Request) -> Response:
        if self.token_delay:
            time.sleep(self.token_delay)
        form = dict(parse_qsl(req.body.decode("latin-1"), keep_blank_values=True))
        with self._lock:
            self.token_requests += 1
            self.forms.append(form)
        if self.answer is not None:
            return self.answer
        if "form-urlencoded" not in req.headers.get("content-type", ""):
            return _oauth_error(400, "invalid_request", "Missing form parameter: grant_type")
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "Unsupported grant_type")
        client = form.get("client_id")
        if client not in self.clients or self.clients[client] != form.get("client_secret"):
            return _oauth_error(401, "unauthorized_client", "Invalid client or Invalid client credentials")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self.issued += 1
            lifetime = self.valid_for if self.valid_for is not None else self.expires_in
            self._tokens[token] = time.monotonic() + lifetime
        body = {
            "access_token": token,
            "expires_in": self.expires_in,
            "refresh_expires_in": 0,
            "token_type": "Bearer",
            "not-before-policy": 0,
            "scope": form.get("scope", "profile email"),
        }
        return Response(200, json.dumps(body).encode(), content_type="application/json")

    def check(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        token = auth[7:] if auth[:7].lower() == "bearer " else None
        with self._lock:
            ok = token is not None and (token in self.static_tokens or self._tokens.get(token, 0.0) > time.monotonic())
            if not ok:
                self.refused_requests += 1
                return Response(
                    401,
                    b"",
                    headers={"WWW-Authenticate": 'Bearer realm="pacs", error="invalid_token"'},
                )
            self.served_requests += 1
        return _PASS

    def revoke_all(self) -> None:
        """Forget every issued token (static tokens stay)."""
        with self._lock:
            self._tokens.clear()

    def protect(self, handler: Handler) -> Handler:
        return guard_wrap(self.check, handler)

    def protect_routes(self, routes: Mapping[tuple[str, str], Handler]) -> Routes:
        """Every route behind the bearer check, plus ``POST token_path``."""
        return _protect_all(routes, self.check, {("POST", self.token_path): self.token})

    def protect_server(self, server: TestHTTPServer) -> None:
        """Put an existing test server behind bearer tokens, in place."""
        server.routes = self.protect_routes(server.routes)


def _oauth_error(status: int, error: str, description: str) -> Response:
    body = json.dumps({"error": error, "error_description": description}).encode()
    return Response(status, body, content_type="application/json")


@dataclass
class BasicCheck:
    """HTTP basic auth on every protected route."""

    users: dict[str, str] = field(default_factory=lambda: {"alice": "wonderland"})
    refused_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, req: Request) -> Response:
        auth = req.headers.get("authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                user, password = "", ""
            if self.users.get(user) == password and user:
                return _PASS
        with self._lock:
            self.refused_requests += 1
        return Response(401, b"", headers={"WWW-Authenticate": 'Basic realm="pacs"'})

    def protect_routes(self, routes: Mapping[tuple[str, str], Handler]) -> Routes:
        return _protect_all(routes, self.check, {})

    def protect_server(self, server: TestHTTPServer) -> None:
        server.routes = self.protect_routes(server.routes)


def resource_routes(prefix: str = "/api") -> Routes:
    """A simple resource to protect: ``GET prefix/...`` answers ``ok <path>``,
    ``POST prefix/echo`` answers its body (to check bodies survive a retry),
    ``GET prefix/slow`` answers after 0.2 s (to make requests overlap)."""

    def get(req: Request) -> Response:
        return Response(200, f"ok {req.path}".encode())

    def echo(req: Request) -> Response:
        return Response(200, req.body, content_type=req.headers.get("content-type", "application/octet-stream"))

    def slow(req: Request) -> Response:
        time.sleep(0.2)
        return Response(200, b"slow ok")

    def stream(req: Request) -> Response:
        return Response(200, iter([b"chunk1 ", b"chunk2"]))

    return {
        ("GET", prefix): get,
        ("POST", f"{prefix}/echo"): echo,
        ("GET", f"{prefix}/slow"): slow,
        ("GET", f"{prefix}/stream"): stream,
    }
