"""Who may read: the configured users, checked by HTTP Basic authentication
(WsgiDAV's HTTPAuthenticator with this domain controller), and a guard in
front of it that answers a malformed ``Authorization`` header with 401.

Basic only, no Digest: WsgiDAV's Digest is MD5 and needs each password (or
its MD5 hash, as good as the password for this realm) on the server; Basic
over TLS sends the password protected by TLS and lets the server keep it in
an environment variable or a file, like every other secret of trolleyfs.
Without TLS, Basic sends it readable: hence the rule that beyond loopback a
server has TLS (:func:`.settings.check_exposure`).  Passwords are compared in
constant time; neither they nor the ``Authorization`` header are ever logged.
With no users configured (loopback only), access is anonymous.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.mw.base_mw import BaseMiddleware

from ..credentials import Secret

log = logging.getLogger("trolleyfs.webdav")
REALM = "trolleyfs"
CONFIG_KEY = "trolleyfs"  # our part of the WsgiDAV config: {"users": {name: Secret}, ...}
StartResponse = Callable[..., Any]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


class UsersDomainController(BaseDomainController):  # type: ignore[misc]  # WsgiDAV has no type hints
    """The ``[webdav] users``: one realm, Basic authentication."""

    def __init__(self, wsgidav_app: object, config: Mapping[str, Any]) -> None:
        super().__init__(wsgidav_app, config)
        users: Mapping[str, Secret] = config[CONFIG_KEY]["users"]
        self._users = {name: _digest(secret.get()) for name, secret in users.items()}

    def __str__(self) -> str:
        return f"{len(self._users)} users" if self._users else "anonymous"

    def get_domain_realm(self, path_info: str, environ: object) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: object) -> bool:
        return bool(self._users)

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict[str, Any]) -> bool:
        expected = self._users.get(user_name)
        given = _digest(password)
        # the same work for an unknown user as for a wrong password
        ok = hmac.compare_digest(given, expected if expected is not None else _digest("\x00" + password))
        return ok and expected is not None

    def supports_http_digest_auth(self) -> bool:
        return False


class AuthHeaderGuard(BaseMiddleware):  # type: ignore[misc]
    """A Basic ``Authorization`` header that cannot be decoded into
    ``user:password`` is answered 401 here (WsgiDAV would fail with a 500)."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header[:6].lower() == "basic " and not _decodable(header[6:].strip()):
            body = b"malformed Basic credentials\n"
            start_response(
                "401 Not Authorized",
                [
                    ("WWW-Authenticate", f'Basic realm="{REALM}"'),
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                ],
            )
            return [body]
        result: Iterable[bytes] = self.next_app(environ, start_response)
        return result


def _decodable(value: str) -> bool:
    try:
        text = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in text
