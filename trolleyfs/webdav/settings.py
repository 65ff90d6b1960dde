"""The ``[webdav]`` table of the config: where the server listens, its TLS
certificate and its users, parsed into a frozen :class:`WebdavConfig`; and the
rule that a server reachable beyond loopback needs TLS and users.

```toml
[webdav]
listen = "0.0.0.0:8443"                      # default 127.0.0.1:8080
tls_cert = "/etc/trolleyfs/cert.pem"         # both or neither
tls_key = "/etc/trolleyfs/key.pem"
users = { alice = { password_env = "ALICE_PW" } }   # or password_file, or password
threads = 32                                 # requests served at once
sizes = "fetch"                              # or "known": PROPFIND never fetches (see docs/webdav.md)
allow_insecure_remote = false                # true: serve beyond loopback without TLS or users
```
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..credentials import Secret, read_secret
from ..errors import UserError
from ..tomltable import Table

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_THREADS = 32
MAX_THREADS = 1024
_USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")  # no ':' (Basic auth splits on it), no spaces
KEYS = ("listen", "tls_cert", "tls_key", "users", "threads", "sizes", "allow_insecure_remote")
SIZES = ("fetch", "known")


@dataclass(frozen=True)
class Listen:
    """A host (name or address, IPv6 without brackets) and a port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class WebdavConfig:
    listen: Listen = field(default_factory=lambda: parse_listen(DEFAULT_LISTEN))
    tls_cert: str | None = None
    tls_key: str | None = None
    users: Mapping[str, Secret] = field(default_factory=dict)  # user name -> password
    threads: int = DEFAULT_THREADS
    sizes: str = "fetch"  # "fetch": PROPFIND learns unknown sizes (fetching); "known": only what is known
    allow_insecure_remote: bool = False

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def url(self) -> str:
        """The URL clients connect to (for the start-up log line)."""
        return f"{'https' if self.tls else 'http'}://{self.listen}/"


def parse_listen(text: str) -> Listen:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all addresses); a ValueError
    saying what is wrong otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^\s:\[\]]*):(\d{1,5})", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080, 0.0.0.0:8443, [::1]:8080)")
    host = m.group(1) if m.group(1) is not None else (m.group(3) or "0.0.0.0")
    port = int(m.group(2) or m.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    if m.group(1) is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    return Listen(host, port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def parse_webdav(t: Table) -> WebdavConfig:
    """The ``[webdav]`` table (every problem a ConfigError naming the key)."""
    t.check_keys(KEYS)
    raw_listen = t.get("listen", str, DEFAULT_LISTEN)
    try:
        listen = parse_listen(raw_listen)
    except ValueError as exc:
        raise t.error("listen", str(exc)) from None
    cert, key = t.get("tls_cert", str), t.get("tls_key", str)
    if (cert is None) != (key is None):
        missing = "tls_key" if key is None else "tls_cert"
        raise t.error(missing, "is missing (give both tls_cert and tls_key, or neither)")
    for name, value in (("tls_cert", cert), ("tls_key", key)):
        if value is not None and not Path(value).expanduser().is_file():
            raise t.error(name, f"{value}: no such file")
    threads = t.get("threads", int, DEFAULT_THREADS)
    if not 1 <= threads <= MAX_THREADS:
        raise t.error("threads", f"must be between 1 and {MAX_THREADS}")
    sizes = t.get("sizes", str, "fetch")
    if sizes not in SIZES:
        raise t.error("sizes", f"{sizes!r} is not one of: {', '.join(SIZES)}")
    return WebdavConfig(
        listen=listen,
        tls_cert=str(Path(cert).expanduser()) if cert else None,
        tls_key=str(Path(key).expanduser()) if key else None,
        users=_parse_users(t),
        threads=threads,
        sizes=sizes,
        allow_insecure_remote=t.get("allow_insecure_remote", bool, False),
    )


def _parse_users(t: Table) -> dict[str, Secret]:
    users_t = t.table("users")
    if users_t is None:
        return {}
    out = {}
    for name in users_t.data:
        if not _USER_NAME.match(name):
            raise users_t.error(name, "a user name is 1-64 letters, digits, '_', '.', '@' or '-'")
        user_t = users_t.table(name)
        assert user_t is not None
        user_t.check_keys({"password", "password_env", "password_file"})
        secret = read_secret(user_t, "password")
        if not secret.get():
            raise user_t.error(None, "the password is empty")
        out[name] = secret
    return out


def check_exposure(wd: WebdavConfig, insecure_flag: bool = False) -> list[str]:
    """Refuse (UserError) to serve beyond loopback without both TLS and users,
    unless told so (``allow_insecure_remote`` or the command line's flag); the
    warnings to print when told so."""
    if is_loopback(wd.listen.host):
        return []
    lacks = [w for w, ok in (("TLS (tls_cert, tls_key)", wd.tls), ("users", bool(wd.users))) if not ok]
    if not lacks:
        return []
    if not (wd.allow_insecure_remote or insecure_flag):
        raise UserError(
            f"webdav: refusing to listen on {wd.listen} without {' and '.join(lacks)}: anyone who can reach "
            "this address could read the archive (set them in [webdav], listen on 127.0.0.1, or pass "
            "--allow-insecure-remote)"
        )
    return [f"webdav: listening on {wd.listen} without {' and '.join(lacks)}, as told (--allow-insecure-remote)"]
