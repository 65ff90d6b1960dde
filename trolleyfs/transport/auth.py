"""httpx.Auth for each ``auth.type``: basic, bearer, vitrea, oauth2 (the
config side is :mod:`trolleyfs.credentials`; the HTTP client gets the result
passed in, see :func:`trolleyfs.transport.http.build_client`).

``vitrea`` and ``oauth2`` hold a credential that has to be obtained from the
server and renewed (a session cookie, an access token).  Both share
:class:`_RenewingAuth`: the renewal request is sent *through the flow* (yielded
to the client, so it uses the same connection pool, TLS settings and deadline
as the request that needed it), and at most one renewal runs at a time: other
requests that need it wait for it and then use its result.

Why not a lock held across the ``yield``: the flow is an async generator driven
by whichever task called ``client.send``; if that task is cancelled while the
login request is in flight, httpx closes the generator, and a lock held there
would have to be released from a ``finally`` that cannot await.  A
``trio.Event`` per renewal plus a generation counter needs no awaiting to clean
up, and trio's cooperative scheduling makes the checks between awaits atomic.

Secrets stay in :class:`~trolleyfs.config.Secret` until a header or form body
is built; reprs, log lines and error messages never contain them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Generator
from typing import assert_never

import httpx
import trio

from ..credentials import BasicLogin, BearerToken, NoAuth, OAuth2Client, Secret, VitreaLogin
from ..endpoints import Server
from ..errors import AccessDenied, ProtocolError, RemoteError, Unavailable
from .http_errors import describe_status

log = logging.getLogger("trolleyfs.auth")

DEFAULT_VITREA_REALM = "DefaultSystemRealm"  # what Vitrea Connection calls its built-in realm
REFUSAL_COOLDOWN = 30.0  # seconds a refused login/token request is not retried (avoids account lock-outs)
MAX_REFRESH_MARGIN = 30.0  # renew a token this long before it expires, at most ...
REFRESH_FRACTION = 0.1  # ... or this fraction of its lifetime, whichever is less


def _scrub(text: str, *secrets: Secret | None) -> str:
    """``text`` with every secret value replaced by ``***`` (servers may echo what they got)."""
    for s in secrets:
        if s is not None and s.get():
            text = text.replace(s.get(), "***")
    return text


class BearerAuth(httpx.Auth):
    """A fixed token in ``Authorization: Bearer``."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


class _RenewingAuth(httpx.Auth):
    """A credential obtained from the server, renewed on demand by one task at a time.

    Subclasses say when a renewal is wanted before sending (:meth:`_wants_renewal`),
    build the renewal request, accept its answer (storing the new credential and
    raising on refusal), and put the credential on a request (:meth:`_apply`).
    ``generation`` counts successful renewals; a request remembers the generation
    it was sent with, so after a 401 it renews only if nobody else did meanwhile.
    """

    credential = "credential"  # for log lines

    def __init__(self, server_name: str, what: str, refusal_cooldown: float = REFUSAL_COOLDOWN) -> None:
        self.server_name = server_name
        self.what = what  # the ``what`` of our errors, e.g. "login at https://pacs/login"
        self.refusal_cooldown = refusal_cooldown
        self.generation = 0
        self._renewing: trio.Event | None = None
        self._refused: tuple[float, str] | None = None  # (until, message)

    # ------------------------------------------------------------------ hooks

    def _wants_renewal(self) -> bool:
        return False

    def _renewal_request(self, original: httpx.Request) -> httpx.Request:
        raise NotImplementedError

    def _accept(self, response: httpx.Response) -> None:
        raise NotImplementedError

    def _apply(self, request: httpx.Request) -> None:
        raise NotImplementedError

    def _observe(self, response: httpx.Response) -> None:
        """Called with every answer to an ordinary request."""

    # --------------------------------------------------------------- machinery

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} works with httpx.AsyncClient under trio only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()  # the body must be there to send it a second time
        renew_from: int | None = self.generation if self._wants_renewal() else None
        retried = False
        while True:
            if renew_from is not None and await self._take_turn(renew_from):
                try:
                    answer = yield self._renewal_request(request)
                    await answer.aread()
                    self._accept_or_refuse(answer)
                finally:
                    self._end_turn()
            sent_with = self.generation
            self._apply(request)
            response = yield request
            self._observe(response)
            if response.status_code != 401 or retried:
                return
            # Give the connection back before waiting for a renewal: waiters holding
            # every pooled connection would leave none for the renewal request.
            await response.aread()
            log.debug("%s: HTTP 401 on %s, renewing the %s", self.server_name, request.url.path, self.credential)
            retried, renew_from = True, sent_with

    async def _take_turn(self, seen: int) -> bool:
        """Wait until a renewal of credential generation ``seen`` is done.  True
        if this task has to do it (it must then call :meth:`_end_turn`), False if
        another task already did.  Raises the stored refusal during its cooldown."""
        while True:
            self._raise_if_refused()
            if self.generation != seen:
                return False
            if self._renewing is None:
                self._renewing = trio.Event()
                return True
            await self._renewing.wait()

    def _end_turn(self) -> None:
        """Wake the waiters.  Never awaits: it runs while the flow is being closed."""
        event, self._renewing = self._renewing, None
        if event is not None:
            event.set()

    def _accept_or_refuse(self, answer: httpx.Response) -> None:
        try:
            self._accept(answer)
        except AccessDenied as exc:
            detail = str(exc).removeprefix(f"{exc.server}: {exc.what}: ")
            self._refused = (trio.current_time() + self.refusal_cooldown, detail)
            log.warning("%s", exc)
            raise
        self._refused = None
        self.generation += 1

    def _raise_if_refused(self) -> None:
        if self._refused is None:
            return
        until, message = self._refused
        if trio.current_time() < until:
            again = f"{message} (a refusal is not retried for {self.refusal_cooldown:g} s)"
            raise AccessDenied(again, server=self.server_name, what=self.what)
        self._refused = None

    def _status_error(
        self, answer: httpx.Response, hint: str, *secrets: Secret | None, text: str | None = None
    ) -> RemoteError:
        """The error for a non-2xx answer to a login or token request (not NotFound for a
        404: that would tell the file system the *file* is missing)."""
        text = _scrub(text or describe_status(answer), *secrets)
        code = answer.status_code
        if code in (401, 403):
            return AccessDenied(f"refused: {text}{hint}", server=self.server_name, what=self.what)
        if code >= 500 or code in (408, 429):
            return Unavailable(f"failed: {text}", server=self.server_name, what=self.what)
        return ProtocolError(f"unexpected answer: {text}", server=self.server_name, what=self.what)


def _set_cookies(response: httpx.Response) -> dict[str, str | None]:
    """``name -> value`` from the Set-Cookie headers (``None``: the server deletes it).

    Domain and path are ignored on purpose: the auth object belongs to one
    configured server, and the session must reach all of its endpoints."""
    found: dict[str, str | None] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attrs = header.split(";")
        name, sep, value = first.partition("=")
        if not sep or not name.strip():
            continue
        gone = any(a.strip().lower() in ("max-age=0", "max-age=-1") for a in attrs)
        found[name.strip()] = None if gone else value.strip()
    return found


def _cookie_header(existing: str | None, ours: dict[str, str]) -> str:
    """The Cookie header with our session cookies replacing same-named ones."""
    pairs: dict[str, str] = {}
    for item in (existing or "").split(";"):
        name, sep, value = item.strip().partition("=")
        if sep and name:
            pairs[name] = value
    pairs.update(ours)
    return "; ".join(f"{k}={v}" for k, v in pairs.items())


class VitreaAuth(_RenewingAuth):
    """Vitrea Connection's session login.

    Requests go out with the session cookie (none at first).  A 401 means "not
    logged in" or "session expired": POST the login URL with the credentials in
    ``X-Userid``/``X-Password``/``X-Realm`` headers, keep the cookies it sets,
    and send the request once more.  The login's own token is not used: the
    server checks the session cookie only."""

    credential = "session"

    def __init__(self, server_name: str, login_url: str, username: str, password: Secret, realm: str = "") -> None:
        super().__init__(server_name, f"login at {login_url}")
        self.login_url = login_url
        self.username = username
        self._password = password
        self.realm = realm or DEFAULT_VITREA_REALM
        self._cookies: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"VitreaAuth(login_url={self.login_url!r}, username={self.username!r}, password=***)"

    def _renewal_request(self, original: httpx.Request) -> httpx.Request:
        log.info("%s: logging in at %s as %s", self.server_name, self.login_url, self.username)
        headers = {"X-Userid": self.username, "X-Password": self._password.get(), "X-Realm": self.realm}
        headers["User-Agent"] = original.headers.get("User-Agent", "trolleyfs")
        return httpx.Request("POST", self.login_url, headers=headers, content=b"", extensions=_timeouts_of(original))

    def _accept(self, response: httpx.Response) -> None:
        if not 200 <= response.status_code < 300:
            hint = f" (check username {self.username!r}, password and realm {self.realm!r})"
            raise self._status_error(response, hint, self._password)
        cookies = _set_cookies(response)
        if not cookies:
            log.warning("%s: login at %s set no cookie; the session may not stick", self.server_name, self.login_url)
        self._update(cookies)

    def _update(self, cookies: dict[str, str | None]) -> None:
        for name, value in cookies.items():
            if value is None:
                self._cookies.pop(name, None)
            else:
                self._cookies[name] = value

    def _apply(self, request: httpx.Request) -> None:
        if self._cookies:
            request.headers["Cookie"] = _cookie_header(request.headers.get("Cookie"), self._cookies)

    def _observe(self, response: httpx.Response) -> None:
        if response.status_code != 401:  # servers may rotate the session id
            self._update(_set_cookies(response))


class OAuth2ClientCredentials(_RenewingAuth):
    """OAuth 2.0 client credentials grant (RFC 6749 4.4), as Keycloak's token endpoint offers.

    A token is fetched before the first request, kept, and renewed shortly
    before ``expires_in`` runs out (30 s or 10 % of its lifetime, whichever is
    less), or once after a 401."""

    credential = "access token"

    def __init__(
        self, server_name: str, token_url: str, client_id: str, client_secret: Secret, scope: str | None = None
    ) -> None:
        super().__init__(server_name, f"token request to {token_url}")
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._token: Secret | None = None
        self._renew_at: float | None = None  # trio time; None: no expiry given
        self._asked_at = 0.0

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(token_url={self.token_url!r}, client_id={self.client_id!r}, client_secret=***)"

    def _wants_renewal(self) -> bool:
        if self._token is None:
            return True
        return self._renew_at is not None and trio.current_time() >= self._renew_at

    def _renewal_request(self, original: httpx.Request) -> httpx.Request:
        log.debug("%s: requesting a token from %s for client %s", self.server_name, self.token_url, self.client_id)
        form = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self._secret.get()}
        if self.scope:
            form["scope"] = self.scope
        self._asked_at = trio.current_time()
        return httpx.Request(
            "POST",
            self.token_url,
            data=form,
            headers={"Accept": "application/json", "User-Agent": original.headers.get("User-Agent", "trolleyfs")},
            extensions=_timeouts_of(original),
        )

    def _accept(self, response: httpx.Response) -> None:
        if not 200 <= response.status_code < 300:
            hint = f" (check client_id {self.client_id!r} and client_secret)"
            raise self._status_error(response, hint, self._secret, text=_oauth_error(response))
        token, lifetime = self._parse(response)
        self._token = Secret(token)
        if lifetime is None:
            self._renew_at = None
        else:
            self._renew_at = self._asked_at + lifetime - min(MAX_REFRESH_MARGIN, REFRESH_FRACTION * lifetime)
        log.debug("%s: got a token valid for %s s", self.server_name, lifetime if lifetime is not None else "?")

    def _parse(self, response: httpx.Response) -> tuple[str, float | None]:
        def bad(problem: str) -> ProtocolError:
            return ProtocolError(problem, server=self.server_name, what=self.what)

        try:
            data = json.loads(response.content)
        except (ValueError, UnicodeDecodeError):
            raise bad(f"answer is not JSON ({response.headers.get('content-type', 'no Content-Type')})") from None
        if not isinstance(data, dict):
            raise bad("answer is not a JSON object")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise bad("answer has no access_token")
        kind = data.get("token_type", "Bearer")
        if not isinstance(kind, str) or kind.lower() != "bearer":
            raise bad(f"token_type {kind!r} is not Bearer")
        lifetime = data.get("expires_in")
        try:
            seconds = float(lifetime) if lifetime is not None and not isinstance(lifetime, bool) else None
        except (TypeError, ValueError):
            seconds = None
        return token, seconds if seconds is not None and seconds > 0 else None

    def _apply(self, request: httpx.Request) -> None:
        if self._token is not None:
            request.headers["Authorization"] = f"Bearer {self._token.get()}"


def _oauth_error(response: httpx.Response) -> str | None:
    """``HTTP 401 Unauthorized: invalid_client: ...`` from an RFC 6749 5.2 error answer, or None."""
    try:
        data = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None
    desc = data.get("error_description")
    text = data["error"] + (f": {desc}" if isinstance(desc, str) and desc else "")
    return f"HTTP {response.status_code} {response.reason_phrase}: {' '.join(text.split())[:160]}"


def _timeouts_of(request: httpx.Request) -> dict[str, object]:
    """The client's timeouts travel in the request's extensions; a request we build must carry them too."""
    timeout = request.extensions.get("timeout")
    return {"timeout": timeout} if timeout is not None else {}


def make_auth(server: Server) -> httpx.Auth | None:
    """The httpx.Auth for a configured server (``None`` for ``auth = none``); one per client."""
    a = server.auth
    if isinstance(a, NoAuth):
        return None
    if isinstance(a, BasicLogin):
        return httpx.BasicAuth(a.username, a.password.get())
    if isinstance(a, BearerToken):
        return BearerAuth(a.token)
    if isinstance(a, VitreaLogin):
        return VitreaAuth(server.name, a.login_url, a.username, a.password, a.realm)
    if isinstance(a, OAuth2Client):
        return OAuth2ClientCredentials(server.name, a.token_url, a.client_id, a.client_secret, a.scope)
    assert_never(a)


__all__ = ["BearerAuth", "OAuth2ClientCredentials", "VitreaAuth", "make_auth"]
