"""The ``[cache.shared]`` table: where the shared Redis is, who we are to it,
how long objects stay, and the optional encryption key.

Read at config time like every other table: each problem is one
:class:`~trolleyfs.errors.ConfigError` naming file, key and problem.  The
key file is read here too, so a wrong key fails before anything is mounted.
Nothing here imports redis or cryptography."""

from __future__ import annotations

import base64
import binascii
import math
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..credentials import Secret, check_tls_files, read_secret
from ..tomltable import Table, control_problem

DEFAULT_TTL_S = 30 * 86400.0
KEY_BYTES = 32  # AES-256
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TTL_S = 3650 * 86400.0  # ten years
MAX_TLS_FILE_BYTES = 16 << 20


@dataclass(frozen=True)
class SharedConfig:
    """The shared cache tier.  ``urls`` are ``redis://`` or ``rediss://`` (TLS);
    with ``cluster`` they are start-up nodes of a Redis Cluster."""

    urls: tuple[str, ...]
    cluster: bool = False
    username: str | None = None
    password: Secret | None = None
    verify: bool = True
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    ttl: float = DEFAULT_TTL_S  # seconds an object may stay (Redis's maxmemory policy may evict it sooner)
    key_file: str | None = None
    key: Secret | None = None  # the key file's 32 bytes, hex; set when key_file is
    timeout: float = 2.0  # seconds per Redis call
    max_connections: int = 16  # Redis calls at once (each in a worker thread)
    prefix: str = "trolleyfs"  # every key starts with "<prefix>:"
    chunk_kb: int = 1024  # objects are stored in chunks of this size

    @property
    def tls(self) -> bool:
        return self.urls[0].startswith("rediss://")

    def where(self) -> str:
        """The servers, for messages (never a secret: URLs hold no credentials)."""
        return ", ".join(self.urls)


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like ``"45s"``, ``"90m"``, ``"12h"``,
    ``"30d"``, ``"2w"``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("must be a duration, not a boolean")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str) and (m := _DURATION.match(value.strip().lower())):
        seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration (use seconds, or a number with s, m, h, d or w: '30d')")
    if not 1 <= seconds <= MAX_TTL_S:  # also nan and inf
        raise ValueError(f"must be at least 1 second and at most {MAX_TTL_S / 86400:g} days")
    return seconds


def _check_url(t: Table, key: str, url: str, cluster: bool) -> str:
    problem = control_problem(url)
    if problem:
        raise t.error(key, problem)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a broken [IPv6] host
        raise t.error(key, f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname or url != url.strip():
        raise t.error(key, f"{url!r} is not a redis:// or rediss:// URL")
    if parts.username or parts.password:
        raise t.error(key, "must not hold credentials: use username and password, password_env or password_file")
    if parts.query or parts.fragment:
        raise t.error(key, f"{url!r}: query parameters are not supported")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise t.error(key, f"{url!r} has an invalid port") from None
    db = parts.path.strip("/")
    if db and not (db.isascii() and db.isdigit() and len(db) <= 5):
        raise t.error(key, f"{url!r}: the path must be a database number, like /0")
    if cluster and db not in ("", "0"):
        raise t.error(key, "Redis Cluster has only database 0")
    return url.rstrip("/")


def _urls(t: Table) -> tuple[tuple[str, ...], bool]:
    raw = t.data.get("url")
    if raw is None:
        raise t.error("url", 'is missing (e.g. url = "redis://cache.example:6379/0")')
    given = [raw] if isinstance(raw, str) else raw
    if not isinstance(given, list) or not given or not all(isinstance(u, str) for u in given):
        raise t.error("url", "must be a URL or a non-empty array of URLs")
    cluster = t.get("cluster", bool, len(given) > 1)
    if len(given) > 1 and not cluster:
        raise t.error("cluster", "several urls are the nodes of a Redis Cluster: cluster = false is not possible")
    urls = tuple(_check_url(t, "url", u, cluster) for u in given)
    if len({u.split("://")[0] for u in urls}) > 1:
        raise t.error("url", "mixes redis:// and rediss://")
    return urls, cluster


def _file(t: Table, key: str) -> str | None:
    return t.file(key, MAX_TLS_FILE_BYTES)


def read_key(t: Table, path: str) -> Secret:
    """The key file's 32 bytes (raw, hex or base64), kept as hex."""
    raw = t.read_small("key_file", path)
    if len(raw) == KEY_BYTES:
        return Secret(raw.hex())
    try:
        text = raw.strip().decode("ascii")
    except UnicodeDecodeError:
        text = ""
    for decode in (bytes.fromhex, lambda s: base64.b64decode(s, validate=True)):
        try:
            key = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(key) == KEY_BYTES:
            return Secret(key.hex())
    raise t.error(
        "key_file",
        f"must hold a {KEY_BYTES}-byte key (raw, hex or base64), e.g. from: head -c {KEY_BYTES} /dev/urandom > {path}",
    )


_KEYS = {
    "url",
    "cluster",
    "username",
    "password",
    "password_env",
    "password_file",
    "verify",
    "ca_bundle",
    "client_cert",
    "client_key",
    "ttl",
    "key_file",
    "timeout",
    "max_connections",
    "prefix",
    "chunk_kb",
}


def parse_shared(t: Table) -> SharedConfig:
    """The ``[cache.shared]`` table."""
    t.check_keys(_KEYS)
    urls, cluster = _urls(t)
    password = None
    if any(k in t.data for k in ("password", "password_env", "password_file")):
        password = read_secret(t, "password")
    username = t.get("username", str)
    tls = urls[0].startswith("rediss://")
    verify = t.get("verify", bool, True)
    ca, cert, key = _file(t, "ca_bundle"), _file(t, "client_cert"), _file(t, "client_key")
    for k, v in (("ca_bundle", ca), ("client_cert", cert), ("verify", None if verify else "off")):
        if v is not None and not tls:
            raise t.error(k, "needs a rediss:// url (TLS)")
    if ca and not verify:
        raise t.error("ca_bundle", "cannot be used with verify = false")
    if key and not cert:
        raise t.error("client_key", "needs client_cert too")
    check_tls_files(t, ca, cert, key)
    try:
        ttl = parse_duration(t.data.get("ttl", DEFAULT_TTL_S))
    except ValueError as exc:
        raise t.error("ttl", str(exc)) from None
    timeout = t.number("timeout", 2.0, 0, 60, above=True)
    conns = t.integer("max_connections", 16, 1, 256)
    prefix = t.get("prefix", str, "trolleyfs")
    if not _PREFIX.fullmatch(prefix):
        raise t.error("prefix", "may use 1 to 64 letters, digits, '_', '.' and '-'")
    chunk_kb = t.integer("chunk_kb", 1024, 16, 64 * 1024)
    key_file = _file(t, "key_file")
    return SharedConfig(
        urls=urls,
        cluster=cluster,
        username=username,
        password=password,
        verify=verify,
        ca_bundle=ca,
        client_cert=cert,
        client_key=key,
        ttl=ttl,
        key_file=key_file,
        key=read_key(t, key_file) if key_file else None,
        timeout=timeout,
        max_connections=conns,
        prefix=prefix,
        chunk_kb=chunk_kb,
    )


def shared_warnings(config: SharedConfig, path: str, inline_password: bool, config_readable: bool) -> list[str]:
    """Warnings at load time: secrets that other users can read."""
    out = []
    if inline_password and config_readable:
        out.append(
            f"{path}: cache.shared holds a password and can be read by others: chmod 600 it, "
            "or use password_env / password_file"
        )
    if config.key_file:
        try:
            mode = Path(config.key_file).stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            out.append(f"{config.key_file}: the shared cache's key can be read by others: chmod 600 it")
    return out
