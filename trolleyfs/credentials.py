"""Who trolleyfs is to a server: one frozen dataclass per ``auth.type`` of the
config, read from the server's ``auth`` table.

Secrets (passwords, tokens) are read from the file, an environment variable or
a file at load time and kept in :class:`Secret`, whose repr never shows the
value.  Turning these into httpx authentication is :mod:`trolleyfs.transport.auth`'s job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import ClassVar

from .tomltable import Table, control_problem


class Secret:
    """A password or token.  ``get()`` gives the value; repr and str hide it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SECRET_KEYS = ("password", "token", "client_secret")  # each may also be given as <key>_env or <key>_file


@dataclass(frozen=True)
class NoAuth:
    type: ClassVar[str] = "none"
    keys: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class BasicLogin:
    """HTTP basic authentication."""

    type: ClassVar[str] = "basic"
    keys: ClassVar[tuple[str, ...]] = ("username", "password")
    username: str
    password: Secret


@dataclass(frozen=True)
class BearerToken:
    """A fixed token sent as ``Authorization: Bearer``."""

    type: ClassVar[str] = "bearer"
    keys: ClassVar[tuple[str, ...]] = ("token",)
    token: Secret


@dataclass(frozen=True)
class VitreaLogin:
    """Vitrea Connection's session login (``realm`` empty: the server's default realm)."""

    type: ClassVar[str] = "vitrea"
    keys: ClassVar[tuple[str, ...]] = ("username", "password", "login_url", "realm")
    username: str
    password: Secret
    login_url: str
    realm: str = ""


@dataclass(frozen=True)
class OAuth2Client:
    """OAuth 2.0 client credentials grant."""

    type: ClassVar[str] = "oauth2"
    keys: ClassVar[tuple[str, ...]] = ("token_url", "client_id", "client_secret", "scope")
    token_url: str
    client_id: str
    client_secret: Secret
    scope: str | None = None


AuthConfig = NoAuth | BasicLogin | BearerToken | VitreaLogin | OAuth2Client
AUTH_KINDS: tuple[type[AuthConfig], ...] = (NoAuth, BasicLogin, BearerToken, VitreaLogin, OAuth2Client)


_ENV_NAME = re.compile(r"[^=\s]+")


def read_secret(t: Table, base: str) -> Secret:
    """``base``, ``base_env`` or ``base_file`` from a table: exactly one of
    them.  The secret is one line (it goes into a header or a login form): a
    control character in it (a newline left in an environment variable) is a
    config error, never a request that fails later."""
    given = [k for k in (base, f"{base}_env", f"{base}_file") if k in t.data]
    if len(given) > 1:
        raise t.error(given[1], f"give only one of {', '.join(given)}")
    if not given:
        raise t.error(base, f"is missing (give {base}, {base}_env or {base}_file)")
    key = given[0]
    if key.endswith("_file"):
        path = t.local_path(key)
        assert path is not None
        try:
            value = t.read_small(key, path).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise t.error(key, f"{path} is not UTF-8 text") from None
        where = f"the content of {path}"
    elif key.endswith("_env"):
        name = t.require(key, str)
        if not _ENV_NAME.fullmatch(name):
            raise t.error(key, f"{name!r} is not an environment variable name")
        if name not in os.environ:
            raise t.error(key, f"environment variable {name} is not set")
        value, where = os.environ[name], f"environment variable {name}"
    else:
        value, where = t.require(key, str), ""
    problem = control_problem(value)
    if problem:
        raise t.error(key, f"{where}: {problem}" if where else problem)
    return Secret(value)


def check_tls_files(t: Table, ca: str | None, cert: str | None, key: str | None) -> None:
    """``ca_bundle`` holds CA certificates and ``client_cert`` (with
    ``client_key``) a certificate and an unencrypted key that match, loaded
    the way a TLS connection will load them: a file that is not either is a
    config error now, not a failure at the first connection."""
    import ssl  # here: the config of most mounts has no TLS files

    if ca:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise t.error("ca_bundle", f"{ca} holds no usable CA certificate: {exc}") from None
    if cert:

        def no_prompt() -> str:  # never let OpenSSL ask on the terminal
            raise t.error("client_key", "is encrypted: give an unencrypted key")

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=no_prompt)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise t.error("client_cert", f"cannot use the certificate/key: {exc}") from None


def parse_auth(t: Table) -> AuthConfig:
    """The ``auth`` table of a server."""
    kinds = {k.type: k for k in AUTH_KINDS}
    kind = t.require("type", str)
    if kind not in kinds:
        raise t.error("type", f"unknown auth type {kind!r} (expected one of: {', '.join(kinds)})")
    allowed = {"type"}
    for k in kinds[kind].keys:
        allowed.add(k)
        if k in SECRET_KEYS:
            allowed |= {f"{k}_env", f"{k}_file"}
    t.check_keys(allowed)
    if kind == BasicLogin.type:
        username = t.require("username", str)
        if ":" in username:
            raise t.error("username", "must not contain ':' (HTTP basic authentication cannot send it)")
        return BasicLogin(username=username, password=read_secret(t, "password"))
    if kind == BearerToken.type:
        return BearerToken(token=read_secret(t, "token"))
    if kind == VitreaLogin.type:
        return VitreaLogin(
            username=t.require("username", str),
            password=read_secret(t, "password"),
            login_url=t.url("login_url"),
            realm=t.get("realm", str, ""),
        )
    if kind == OAuth2Client.type:
        return OAuth2Client(
            token_url=t.url("token_url"),
            client_id=t.require("client_id", str),
            client_secret=read_secret(t, "client_secret"),
            scope=t.get("scope", str),
        )
    return NoAuth()
