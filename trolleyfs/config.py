"""The TOML config: parsed with tomllib into frozen dataclasses.

Every problem raises :class:`~trolleyfs.errors.ConfigError` naming the file,
the key and what is wrong, so the CLI can print one line.  A server's
endpoints are read by the endpoint classes the protocol registry names
(:mod:`trolleyfs.protocols`), its ``auth`` table by
:mod:`trolleyfs.credentials`; folders, names and the cache are read here.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import protocols
from .audit.settings import AuditConfig, parse_audit
from .cluster.settings import SharedConfig, parse_shared, shared_warnings
from .credentials import SECRET_KEYS, NoAuth, check_tls_files, parse_auth
from .deid.config import DeidConfig, parse_deidentify
from .endpoints import EndpointConfig, Server
from .errors import ConfigError
from .folders import (
    FOLDER_KEYS,
    QUERY_KEYS,
    DateSpec,
    Folder,
    date_range_problem,
    parse_date,
    parse_folder,
    query_value,
)
from .limits.settings import LimitsConfig, limits_of
from .naming import check_template
from .rootnames import RESERVED_NAMES, VIEWS_DIR
from .tomltable import Table
from .webdav.settings import WebdavConfig, parse_webdav

__all__ = [
    "FOLDER_KEYS",
    "QUERY_KEYS",
    "CacheConfig",
    "Config",
    "ConfigError",
    "DateSpec",
    "Folder",
    "date_range_problem",
    "load",
    "parse",
    "parse_date",
    "query_value",
]

DEFAULT_NAMES = {
    "study": "{StudyDate} {PatientName} {StudyDescription}",
    "series": "{SeriesNumber:03} {Modality} {SeriesDescription}",
    "instance": "{InstanceNumber:04}",
}


@dataclass(frozen=True)
class CacheConfig:
    """The ``[cache]`` table: cache sizes, readahead and listing lifetimes."""

    memory_mb: int = 512
    disk_dir: str | None = None
    disk_mb: int = 10240
    readahead: str = "series"  # off | series
    readahead_series: int = 2  # series read ahead at once
    folder_ttl: float = 60.0  # seconds a folder's study list is kept
    study_ttl: float = 300.0  # a study's series list
    series_ttl: float = 3600.0  # a series' instance list
    shared: SharedConfig | None = None  # [cache.shared]: the Redis tier shared by a cluster of mounts


@dataclass(frozen=True)
class Config:
    """A whole config file, parsed."""

    path: str
    servers: Mapping[str, Server]
    folders: tuple[Folder, ...]
    names: Mapping[str, str]
    cache: CacheConfig
    warnings: tuple[str, ...] = ()
    webdav: WebdavConfig | None = None  # [webdav]: what `trolleyfs webdav` serves on (mount ignores it)
    deidentify: DeidConfig | None = None  # [deidentify]: the whole mount shows only de-identified data
    limits: Mapping[str, LimitsConfig] = field(default_factory=dict)  # servers.<name>.limits, of servers that have one
    audit: AuditConfig | None = None  # [audit]: the audit trail (None: none)


# --------------------------------------------------------------------------- parsing


def _parse_endpoint(t: Table, role: protocols.Role) -> EndpointConfig:
    known = protocols.names(role)
    proto = t.require("protocol", str)
    if proto not in known:
        raise t.error("protocol", f"unknown {role} protocol {proto!r} (expected one of: {', '.join(known)})")
    cls: type[EndpointConfig] = protocols.PROTOCOLS[proto].endpoint
    return cls.from_table(t)


_SERVER_KEYS = {
    "search",
    "retrieve",
    "auth",
    "timeout",
    "retries",
    "max_connections",
    "verify",
    "ca_bundle",
    "client_cert",
    "client_key",
    "limits",
}


MAX_TIMEOUT_S = 3600.0  # a server's timeout: silence longer than an hour is no answer
MAX_TTL_S = 365 * 86400.0  # a listing kept longer than a year is never refreshed
MAX_CA_BYTES = 16 << 20  # a CA bundle (the system's is a few hundred KB)


def _parse_server(t: Table, name: str) -> Server:
    t.check_keys(_SERVER_KEYS)
    search_t, retrieve_t = t.table("search"), t.table("retrieve")
    if search_t is None:
        raise t.error("search", 'is missing (e.g. search = { protocol = "qido-rs", url = "..." })')
    if retrieve_t is None:
        raise t.error("retrieve", 'is missing (e.g. retrieve = { protocol = "wado-rs", url = "..." })')
    auth_t = t.table("auth")
    timeout = t.number("timeout", 30.0, 0, MAX_TIMEOUT_S, above=True)
    retries = t.integer("retries", 2, 0, 10)
    conns = t.integer("max_connections", 8, 1, 64)
    verify: bool | str = t.get("verify", bool, True)
    ca = t.file("ca_bundle", MAX_CA_BYTES)
    if ca is not None:
        if verify is False:
            raise t.error("ca_bundle", "cannot be used with verify = false")
        verify = ca
    cert, key = t.file("client_cert", MAX_CA_BYTES), t.file("client_key", MAX_CA_BYTES)
    if key and not cert:
        raise t.error("client_key", "needs client_cert too")
    check_tls_files(t, ca, cert, key)
    return Server(
        name=name,
        search=_parse_endpoint(search_t, "search"),
        retrieve=_parse_endpoint(retrieve_t, "retrieve"),
        auth=parse_auth(auth_t) if auth_t else NoAuth(),
        timeout=timeout,
        retries=retries,
        max_connections=conns,
        verify=verify,
        client_cert=cert,
        client_key=key,
    )


def _parse_names(t: Table | None) -> dict[str, str]:
    names = dict(DEFAULT_NAMES)
    if t is None:
        return names
    t.check_keys(set(DEFAULT_NAMES))
    for level in DEFAULT_NAMES:
        tpl = t.get(level, str)
        if tpl is None:
            continue
        try:
            check_template(tpl)
        except ValueError as exc:
            raise t.error(level, str(exc)) from None
        names[level] = tpl
    return names


def _parse_cache(t: Table | None) -> CacheConfig:
    if t is None:
        return CacheConfig()
    allowed = {
        "memory_mb",
        "disk_dir",
        "disk_mb",
        "readahead",
        "readahead_series",
        "folder_ttl",
        "study_ttl",
        "series_ttl",
        "shared",
    }
    t.check_keys(allowed)
    d = CacheConfig()
    mem = t.integer("memory_mb", d.memory_mb, 16, 1 << 20)
    disk_mb = t.integer("disk_mb", d.disk_mb, 1, 1 << 30)
    disk_dir = t.local_path("disk_dir")
    if disk_dir is not None and os.path.lexists(disk_dir) and not os.path.isdir(disk_dir):
        raise t.error("disk_dir", f"{disk_dir} exists and is not a directory")
    ra = t.get("readahead", str, d.readahead)
    if ra not in ("off", "series"):
        raise t.error("readahead", f"{ra!r} is not one of: off, series")
    ras = t.integer("readahead_series", d.readahead_series, 1, 32)
    ttls = {k: t.number(k, getattr(d, k), 0, MAX_TTL_S) for k in ("folder_ttl", "study_ttl", "series_ttl")}
    shared_t = t.table("shared")
    shared = parse_shared(shared_t) if shared_t is not None else None
    return CacheConfig(mem, disk_dir, disk_mb, ra, ras, **ttls, shared=shared)


def _has_inline_secret(data: Mapping[str, Any]) -> bool:
    for server in (data.get("servers") or {}).values():
        auth = server.get("auth") if isinstance(server, dict) else None
        if isinstance(auth, dict) and any(k in auth for k in SECRET_KEYS):
            return True
    users = (data.get("webdav") or {}).get("users") if isinstance(data.get("webdav"), dict) else None
    return isinstance(users, dict) and any(isinstance(u, dict) and "password" in u for u in users.values())


_SERVER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_CONFIG_BYTES = 16 << 20


def _toml(text: str, path: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(path, None, "not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None


def parse(text: str, path: str = "<config>") -> Config:
    """The config in ``text`` (``path`` names it in messages); every problem is
    one ConfigError."""
    data = _toml(text, path)
    top = Table(path, "", data)
    top.check_keys({"servers", "folders", "names", "cache", "webdav", "deidentify", "audit"})
    servers_t = top.table("servers")
    if servers_t is None or not servers_t.data:
        raise ConfigError(path, "servers", "is missing (add a [servers.NAME] table)")
    servers = {}
    for name in servers_t.data:
        if not _SERVER_NAME.fullmatch(name):
            raise servers_t.error(name, "server names may use 1 to 64 letters, digits, '_', '.' and '-'")
        servers[name] = _parse_server(Table(path, servers_t.sub(name), servers_t.data[name]), name)
    raw_folders = top.get("folders", list, [])
    folders = []
    seen: set[str] = set()
    for i, f in enumerate(raw_folders):
        folder = parse_folder(Table(path, f"folders[{i}]", f), servers, RESERVED_NAMES)
        if folder.name in seen:
            raise ConfigError(path, f"folders[{i}].name", f"{folder.name!r} is used by another folder")
        seen.add(folder.name)
        folders.append(folder)
    if any(f.views for f in folders) and VIEWS_DIR in seen:
        i = next(i for i, f in enumerate(folders) if f.name == VIEWS_DIR)
        raise ConfigError(path, f"folders[{i}].name", f"{VIEWS_DIR!r} is reserved when a folder has views")
    return Config(
        path=path,
        servers=servers,
        folders=tuple(folders),
        names=_parse_names(top.table("names")),
        cache=_parse_cache(top.table("cache")),
        webdav=parse_webdav(webdav_t) if (webdav_t := top.table("webdav")) is not None else None,
        deidentify=parse_deidentify(deid_t) if (deid_t := top.table("deidentify")) is not None else None,
        limits=_parse_limits(path, servers_t),
        audit=parse_audit(audit_t) if (audit_t := top.table("audit")) is not None else None,
    )


def _parse_limits(path: str, servers_t: Table) -> dict[str, LimitsConfig]:
    """The ``limits`` of each server that has them (issue 20)."""
    out = {}
    for name in servers_t.data:
        found = limits_of(Table(path, servers_t.sub(name), servers_t.data[name]))
        if found is not None:
            out[name] = found
    return out


def load(path: str | os.PathLike[str]) -> Config:
    """The config file at ``path``: a regular file of UTF-8 TOML (a pipe or a
    device is refused rather than read, which could block or never end)."""
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(str(p), None, "is a directory, not a config file")
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(str(p), None, "is not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(str(p), None, f"is too large for a config file ({st.st_size} bytes)")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), None, "no such file") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(str(p), None, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(p), None, "is not UTF-8 text") from None
    cfg = parse(text, str(p))
    warnings = []
    try:
        readable = bool(p.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        readable = False
    data = _toml(text, str(p))
    if readable and _has_inline_secret(data):
        warnings.append(
            f"{p}: holds a password or token and can be read by others: chmod 600 it, "
            "or use password_env / password_file"
        )
    if cfg.cache.shared is not None:
        inline = "password" in ((data.get("cache") or {}).get("shared") or {})
        warnings += shared_warnings(cfg.cache.shared, str(p), inline, readable)
    return replace(cfg, warnings=tuple(warnings)) if warnings else cfg
