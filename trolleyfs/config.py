"""The TOML config: parsed with tomllib into frozen dataclasses.

Every problem raises :class:`~trolleyfs.errors.ConfigError` naming the file,
the key and what is wrong, so the CLI can print one line.  A server's
endpoints are read by the endpoint classes the protocol registry names
(:mod:`trolleyfs.protocols`), its ``auth`` table by
:mod:`trolleyfs.credentials`; folders, names and the cache are read here.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import protocols
from .cluster.settings import SharedConfig, parse_shared, shared_warnings
from .credentials import SECRET_KEYS, NoAuth, parse_auth
from .endpoints import EndpointConfig, Server
from .errors import ConfigError
from .model import QueryLevel
from .naming import check_template, sanitize
from .rootnames import RESERVED_NAMES, VIEWS_DIR
from .syntaxes import VIEWS, parse_transfer_syntax
from .tomltable import Table, kind_name

# Study-level keywords a folder query may filter on (the seeds' Query fields
# and the other study-level return keys of the Study Root model).
QUERY_KEYS = frozenset(
    {
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "OtherPatientIDs",
        "AccessionNumber",
        "StudyInstanceUID",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "StudyDescription",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "InstitutionName",
        "InstitutionalDepartmentName",
        "ReferringPhysicianName",
        "NameOfPhysiciansReadingStudy",
    }
)

DEFAULT_NAMES = {
    "study": "{StudyDate} {PatientName} {StudyDescription}",
    "series": "{SeriesNumber:03} {Modality} {SeriesDescription}",
    "instance": "{InstanceNumber:04}",
}


@dataclass(frozen=True)
class DateSpec:
    """An absolute date or one relative to today (``-7d``, ``-2w``, ``-1y``, ``today``)."""

    text: str
    absolute: _dt.date | None
    days_back: int = 0

    def resolve(self, today: _dt.date | None = None) -> _dt.date:
        if self.absolute is not None:
            return self.absolute
        return (today or _dt.date.today()) - _dt.timedelta(days=self.days_back)


@dataclass(frozen=True)
class Folder:
    """A top-level directory: a study search on one server."""

    name: str
    server: str
    query: Mapping[str, str]
    min_study_date: DateSpec | None = None
    max_study_date: DateSpec | None = None
    include_fields: tuple[str, ...] = ()
    query_level: QueryLevel = QueryLevel.STUDY
    limit: int | None = None
    transfer_syntax: str | None = None  # serve files in this transfer syntax UID (None: as stored)
    views: tuple[str, ...] = ()  # "metadata", "zip": offered under views/<folder>/


@dataclass(frozen=True)
class CacheConfig:
    """The ``[cache]`` table: cache sizes, readahead and listing lifetimes."""

    memory_mb: int = 512
    disk_dir: str | None = None
    disk_mb: int = 10240
    readahead: str = "series"  # off | series
    readahead_series: int = 2  # series prefetched at once
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


# --------------------------------------------------------------------------- parsing


_REL_DATE = re.compile(r"^-(\d+)([dwmy])$")
_UNIT_DAYS = {"d": 1, "w": 7, "m": 30, "y": 365}


def parse_date(text: str) -> DateSpec:
    """``2020-01-01``, ``20200101``, ``today``, ``-7d``, ``-2w``, ``-6m``, ``-1y``."""
    t = text.strip().lower()
    if t == "today":
        return DateSpec(text, None, 0)
    m = _REL_DATE.match(t)
    if m:
        return DateSpec(text, None, int(m.group(1)) * _UNIT_DAYS[m.group(2)])
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return DateSpec(text, _dt.datetime.strptime(t, fmt).date())
        except ValueError:
            pass
    raise ValueError(
        f"{text!r} is not a date (use YYYY-MM-DD, YYYYMMDD, 'today' or a relative form like '-7d', '-2w', '-6m', '-1y')"
    )


def query_value(key: str, value: object) -> str:
    """A study query's value for ``key``, as it is sent (the checks of a
    folder's ``query`` table, shared by the ``query/`` paths of the mount).
    Raises ValueError saying what is wrong."""
    if key not in QUERY_KEYS:
        raise ValueError(f"unknown query key (expected one of: {', '.join(sorted(QUERY_KEYS))})")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"must be a string, not {kind_name(value)}")
    if "\\" in str(value) and key != "ModalitiesInStudy":
        raise ValueError("must be a single value (no backslash)")
    if any(ord(c) < 0x20 or c == "\x7f" for c in str(value)):
        raise ValueError("must not hold control characters (NUL, newline, ...)")
    return str(value)


def date_range_problem(lo: DateSpec | None, hi: DateSpec | None, query: Mapping[str, str]) -> tuple[str, str] | None:
    """``(key, problem)`` if a study date range cannot be used with ``query``."""
    if lo and hi and lo.resolve() > hi.resolve():
        return "min_study_date", f"{lo.text} is after max_study_date {hi.text}"
    if (lo or hi) and "StudyDate" in query:
        return "min_study_date" if lo else "max_study_date", "cannot be combined with query.StudyDate"
    return None


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
}


def _parse_server(t: Table, name: str) -> Server:
    t.check_keys(_SERVER_KEYS)
    search_t, retrieve_t = t.table("search"), t.table("retrieve")
    if search_t is None:
        raise t.error("search", 'is missing (e.g. search = { protocol = "qido-rs", url = "..." })')
    if retrieve_t is None:
        raise t.error("retrieve", 'is missing (e.g. retrieve = { protocol = "wado-rs", url = "..." })')
    auth_t = t.table("auth")
    timeout = t.get("timeout", float, 30.0)
    if not timeout > 0:
        raise t.error("timeout", "must be more than 0 seconds")
    retries = t.get("retries", int, 2)
    if not 0 <= retries <= 10:
        raise t.error("retries", "must be between 0 and 10")
    conns = t.get("max_connections", int, 8)
    if not 1 <= conns <= 64:
        raise t.error("max_connections", "must be between 1 and 64")
    verify: bool | str = t.get("verify", bool, True)
    ca = t.get("ca_bundle", str)
    if ca is not None:
        if not Path(ca).expanduser().is_file():
            raise t.error("ca_bundle", f"no such file: {ca}")
        if verify is False:
            raise t.error("ca_bundle", "cannot be used with verify = false")
        verify = str(Path(ca).expanduser())
    cert, key = t.get("client_cert", str), t.get("client_key", str)
    for k, v in (("client_cert", cert), ("client_key", key)):
        if v is not None and not Path(v).expanduser().is_file():
            raise t.error(k, f"no such file: {v}")
    if key and not cert:
        raise t.error("client_key", "needs client_cert too")
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


_FOLDER_KEYS = {
    "name",
    "server",
    "query",
    "min_study_date",
    "max_study_date",
    "include_fields",
    "query_level",
    "limit",
    "transfer_syntax",
    "views",
}


def _keyword_ok(word: str) -> bool:
    from pydicom.datadict import tag_for_keyword  # here: pydicom takes a tenth of a second to import

    return tag_for_keyword(word) is not None


def _date(t: Table, key: str) -> DateSpec | None:
    v = t.get_any(key, (str, _dt.date))
    if v is None:
        return None
    if isinstance(v, _dt.date):
        return DateSpec(v.isoformat(), v)
    try:
        return parse_date(str(v))
    except ValueError as exc:
        raise t.error(key, str(exc)) from None


def _parse_folder(t: Table, servers: Mapping[str, Server]) -> Folder:
    t.check_keys(_FOLDER_KEYS)
    name = t.require("name", str)
    if not name or sanitize(name) != name:
        raise t.error("name", f"{name!r} is not usable as a directory name")
    if name in RESERVED_NAMES:
        raise t.error("name", f"{name!r} is reserved")
    server = t.get("server", str)
    if server is None:
        if len(servers) != 1:
            raise t.error("server", f"is missing (there are {len(servers)} servers: say which)")
        server = next(iter(servers))
    elif server not in servers:
        raise t.error("server", f"names unknown server {server!r} (known: {', '.join(servers) or 'none'})")
    q = t.table("query")
    query: dict[str, str] = {}
    if q is not None:
        for k, v in q.data.items():
            try:
                query[k] = query_value(k, v)
            except ValueError as exc:
                raise q.error(k, str(exc)) from None
    lo, hi = _date(t, "min_study_date"), _date(t, "max_study_date")
    problem = date_range_problem(lo, hi, query)
    if problem:
        raise t.error(*problem)
    inc = t.get("include_fields", list, [])
    for f in inc:
        if not isinstance(f, str) or not _keyword_ok(f):
            raise t.error("include_fields", f"{f!r} is not a DICOM keyword")
    level_text = t.get("query_level", str, "study")
    try:
        level = QueryLevel(level_text.lower())
    except ValueError:
        raise t.error("query_level", f"{level_text!r} is not one of: study, series, instance") from None
    limit = t.get("limit", int)
    if limit is not None and limit < 1:
        raise t.error("limit", "must be at least 1")
    try:
        transfer_syntax = parse_transfer_syntax(t.get("transfer_syntax", str, ""))
    except ValueError as exc:
        raise t.error("transfer_syntax", str(exc)) from None
    views = t.get("views", list, [])
    for v in views:
        if v not in VIEWS:
            raise t.error("views", f"{v!r} is not a view (expected some of: {', '.join(VIEWS)})")
    return Folder(
        name=name,
        server=server,
        query=query,
        min_study_date=lo,
        max_study_date=hi,
        include_fields=tuple(inc),
        query_level=level,
        limit=limit,
        transfer_syntax=transfer_syntax,
        views=tuple(dict.fromkeys(views)),
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
    mem = t.get("memory_mb", int, d.memory_mb)
    if mem < 16:
        raise t.error("memory_mb", "must be at least 16")
    disk_mb = t.get("disk_mb", int, d.disk_mb)
    if disk_mb < 1:
        raise t.error("disk_mb", "must be at least 1")
    disk_dir = t.get("disk_dir", str)
    if disk_dir is not None:
        disk_dir = str(Path(disk_dir).expanduser())
    ra = t.get("readahead", str, d.readahead)
    if ra not in ("off", "series"):
        raise t.error("readahead", f"{ra!r} is not one of: off, series")
    ras = t.get("readahead_series", int, d.readahead_series)
    if not 1 <= ras <= 32:
        raise t.error("readahead_series", "must be between 1 and 32")
    ttls = {}
    for k in ("folder_ttl", "study_ttl", "series_ttl"):
        v = t.get(k, float, getattr(d, k))
        if v < 0:
            raise t.error(k, "must not be negative")
        ttls[k] = v
    shared_t = t.table("shared")
    shared = parse_shared(shared_t) if shared_t is not None else None
    return CacheConfig(mem, disk_dir, disk_mb, ra, ras, **ttls, shared=shared)


def _has_inline_secret(data: Mapping[str, Any]) -> bool:
    for server in (data.get("servers") or {}).values():
        auth = server.get("auth") if isinstance(server, dict) else None
        if isinstance(auth, dict) and any(k in auth for k in SECRET_KEYS):
            return True
    return False


def parse(text: str, path: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    top = Table(path, "", data)
    top.check_keys({"servers", "folders", "names", "cache"})
    servers_t = top.table("servers")
    if servers_t is None or not servers_t.data:
        raise ConfigError(path, "servers", "is missing (add a [servers.NAME] table)")
    servers = {}
    for name in servers_t.data:
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise servers_t.error(name, "server names may use letters, digits, '_', '.' and '-'")
        servers[name] = _parse_server(Table(path, servers_t.sub(name), servers_t.data[name]), name)
    raw_folders = top.get("folders", list, [])
    folders = []
    seen: set[str] = set()
    for i, f in enumerate(raw_folders):
        folder = _parse_folder(Table(path, f"folders[{i}]", f), servers)
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
    )


def load(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(p), None, "no such file") from None
    except IsADirectoryError:
        raise ConfigError(str(p), None, "is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(str(p), None, f"cannot read: {exc.strerror or exc}") from None
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
    data = tomllib.loads(text)
    if readable and _has_inline_secret(data):
        warnings.append(
            f"{p}: holds a password or token and can be read by others: chmod 600 it, "
            "or use password_env / password_file"
        )
    if cfg.cache.shared is not None:
        inline = "password" in ((data.get("cache") or {}).get("shared") or {})
        warnings += shared_warnings(cfg.cache.shared, str(p), inline, readable)
    if warnings:
        cfg = Config(cfg.path, cfg.servers, cfg.folders, cfg.names, cfg.cache, tuple(warnings))
    return cfg
