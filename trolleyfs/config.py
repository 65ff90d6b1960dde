"""The TOML config: parsed with tomllib into frozen dataclasses.

Every problem raises :class:`ConfigError` naming the file, the key and what is
wrong, so the CLI can print one line.  Secrets (passwords, tokens) are read
from the file, an environment variable or a file at load time and kept in
:class:`Secret`, whose repr never shows the value.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .model import QueryLevel
from .tree.control import CONTROL_DIR

HTTP_SEARCH = {"qido-rs", "mint"}
DIMSE_SEARCH = {"dicom-qr"}
HTTP_RETRIEVE = {"wado-rs", "wado-uri", "rad69"}
DIMSE_RETRIEVE = {"c-get"}

# Study-level keywords a folder query may filter on (the seeds' Query fields
# and the other study-level return keys of the Study Root model).
QUERY_KEYS = frozenset(
    {
        "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
        "PatientSex", "OtherPatientIDs", "AccessionNumber", "StudyInstanceUID",
        "StudyID", "StudyDate", "StudyTime", "StudyDescription",
        "ModalitiesInStudy", "SOPClassesInStudy", "InstitutionName",
        "InstitutionalDepartmentName", "ReferringPhysicianName",
        "NameOfPhysiciansReadingStudy",
    }
)  # fmt: skip

DEFAULT_NAMES = {
    "study": "{StudyDate} {PatientName} {StudyDescription}",
    "series": "{SeriesNumber:03} {Modality} {SeriesDescription}",
    "instance": "{InstanceNumber:04}",
}


class Secret:
    """A password or token.  ``str()`` gives the value; repr and format hide it."""

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


@dataclass(frozen=True)
class Endpoint:
    protocol: str
    url: str | None = None
    host: str | None = None
    port: int | None = None
    called_aet: str = "ANY-SCP"
    calling_aet: str = "TROLLEYFS"
    page_size: int = 1000  # QIDO-RS limit per request
    ignore_errors: tuple[str, ...] = ()  # RAD69 error codes to skip

    def where(self) -> str:
        return self.url if self.url else f"{self.called_aet}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Auth:
    type: str  # none | basic | bearer | vitrea | oauth2
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    login_url: str | None = None
    realm: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    scope: str | None = None


@dataclass(frozen=True)
class Server:
    name: str
    search: Endpoint
    retrieve: Endpoint
    auth: Auth = field(default_factory=lambda: Auth("none"))
    timeout: float = 30.0
    retries: int = 2
    max_connections: int = 8
    verify: bool | str = True  # True, False or a CA bundle path
    client_cert: str | None = None
    client_key: str | None = None


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
    name: str
    server: str
    query: Mapping[str, str]
    min_study_date: DateSpec | None = None
    max_study_date: DateSpec | None = None
    include_fields: tuple[str, ...] = ()
    query_level: QueryLevel = QueryLevel.STUDY
    limit: int | None = None


@dataclass(frozen=True)
class CacheConfig:
    memory_mb: int = 512
    disk_dir: str | None = None
    disk_mb: int = 10240
    readahead: str = "series"  # off | series
    readahead_series: int = 2  # series prefetched at once
    folder_ttl: float = 60.0  # seconds a folder's study list is kept
    study_ttl: float = 300.0  # a study's series list
    series_ttl: float = 3600.0  # a series' instance list


@dataclass(frozen=True)
class Config:
    path: str
    servers: Mapping[str, Server]
    folders: tuple[Folder, ...]
    names: Mapping[str, str]
    cache: CacheConfig
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------- parsing


class _Table:
    """A TOML table being read: tracks its dotted path and which keys were used,
    so that unknown keys can be reported by name."""

    def __init__(self, path: str, key: str, data: Any) -> None:
        self.path, self.key = path, key
        if not isinstance(data, dict):
            raise ConfigError(path, key or None, f"must be a table, not {_kind(data)}")
        self.data: dict[str, Any] = data

    def sub(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str | None, problem: str) -> ConfigError:
        return ConfigError(self.path, self.sub(name) if name else self.key or None, problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(name, f"must be {_names(kinds)}, not a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(name, f"must be {_names(kinds)}, not {_kind(value)}")
        return value

    def require(self, name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in self.data:
            raise self.error(name, "is missing")
        return self.get(name, kind)

    def table(self, name: str) -> _Table | None:
        if name not in self.data:
            return None
        return _Table(self.path, self.sub(name), self.data[name])

    def check_keys(self, allowed: set[str] | frozenset[str]) -> None:
        for name in self.data:
            if name not in allowed:
                raise self.error(name, f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _kind(value: Any) -> str:
    return {
        str: "a string", int: "an integer", float: "a number", bool: "a boolean",
        list: "an array", dict: "a table",
    }.get(type(value), type(value).__name__)  # fmt: skip


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(_kind(k()) if k is not list else "an array" for k in kinds)


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


def _secret(t: _Table, base: str, required: bool = True) -> Secret | None:
    """Read ``base``, ``base_env`` or ``base_file`` from a table."""
    given = [k for k in (base, f"{base}_env", f"{base}_file") if k in t.data]
    if len(given) > 1:
        raise t.error(given[1], f"give only one of {', '.join(given)}")
    if not given:
        if required:
            raise t.error(base, f"is missing (give {base}, {base}_env or {base}_file)")
        return None
    key = given[0]
    value = t.get(key, str)
    if key.endswith("_env"):
        if value not in os.environ:
            raise t.error(key, f"environment variable {value} is not set")
        return Secret(os.environ[value])
    if key.endswith("_file"):
        try:
            return Secret(Path(value).expanduser().read_text().strip())
        except OSError as exc:
            raise t.error(key, f"cannot read {value}: {exc.strerror or exc}") from None
    return Secret(value)


_AUTH_KEYS = {
    "none": set(),
    "basic": {"username", "password"},
    "bearer": {"token"},
    "vitrea": {"username", "password", "login_url", "realm"},
    "oauth2": {"token_url", "client_id", "client_secret", "scope"},
}


def _parse_auth(t: _Table) -> Auth:
    kind = t.require("type", str)
    if kind not in _AUTH_KEYS:
        raise t.error("type", f"unknown auth type {kind!r} (expected one of: {', '.join(_AUTH_KEYS)})")
    allowed = {"type"}
    for k in _AUTH_KEYS[kind]:
        allowed |= {k}
        if k in ("password", "token", "client_secret"):
            allowed |= {f"{k}_env", f"{k}_file"}
    t.check_keys(allowed)
    if kind == "none":
        return Auth("none")
    if kind == "basic":
        return Auth(kind, username=t.require("username", str), password=_secret(t, "password"))
    if kind == "bearer":
        return Auth(kind, token=_secret(t, "token"))
    if kind == "vitrea":
        return Auth(
            kind,
            username=t.require("username", str),
            password=_secret(t, "password"),
            login_url=_url(t, "login_url"),
            realm=t.get("realm", str, ""),
        )
    return Auth(
        kind,
        token_url=_url(t, "token_url"),
        client_id=t.require("client_id", str),
        client_secret=_secret(t, "client_secret"),
        scope=t.get("scope", str),
    )


def _url(t: _Table, key: str) -> str:
    url = t.require(key, str)
    if not re.match(r"^https?://[^/\s]+", url):
        raise t.error(key, f"{url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def _parse_endpoint(t: _Table, role: str) -> Endpoint:
    known = (HTTP_SEARCH | DIMSE_SEARCH) if role == "search" else (HTTP_RETRIEVE | DIMSE_RETRIEVE)
    proto = t.require("protocol", str)
    if proto not in known:
        raise t.error("protocol", f"unknown {role} protocol {proto!r} (expected one of: {', '.join(sorted(known))})")
    if proto in HTTP_SEARCH | HTTP_RETRIEVE:
        allowed = {"protocol", "url"}
        if proto == "qido-rs":
            allowed.add("page_size")
        if proto == "rad69":
            allowed.add("ignore_errors")
        t.check_keys(allowed)
        page_size = t.get("page_size", int, 1000)
        if page_size < 1:
            raise t.error("page_size", "must be at least 1")
        ignore = t.get("ignore_errors", list, [])
        if not all(isinstance(x, str) for x in ignore):
            raise t.error("ignore_errors", "must be an array of strings")
        return Endpoint(proto, url=_url(t, "url"), page_size=page_size, ignore_errors=tuple(ignore))
    t.check_keys({"protocol", "host", "port", "called_aet", "calling_aet"})
    port = t.require("port", int)
    if not 0 < port < 65536:
        raise t.error("port", f"{port} is not a TCP port")
    aets = {}
    for k, default in (("called_aet", "ANY-SCP"), ("calling_aet", "TROLLEYFS")):
        aet = t.get(k, str, default)
        if not 0 < len(aet) <= 16 or "\\" in aet or not aet.isprintable():
            raise t.error(k, f"{aet!r} is not a valid AE title (1-16 printable characters)")
        aets[k] = aet
    return Endpoint(proto, host=t.require("host", str), port=port, **aets)


_SERVER_KEYS = {
    "search", "retrieve", "auth", "timeout", "retries", "max_connections",
    "verify", "ca_bundle", "client_cert", "client_key",
}  # fmt: skip


def _parse_server(t: _Table, name: str) -> Server:
    t.check_keys(_SERVER_KEYS)
    search_t, retrieve_t = t.table("search"), t.table("retrieve")
    if search_t is None:
        raise t.error("search", "is missing (e.g. search = { protocol = \"qido-rs\", url = \"...\" })")
    if retrieve_t is None:
        raise t.error("retrieve", "is missing (e.g. retrieve = { protocol = \"wado-rs\", url = \"...\" })")
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
        auth=_parse_auth(auth_t) if auth_t else Auth("none"),
        timeout=timeout,
        retries=retries,
        max_connections=conns,
        verify=verify,
        client_cert=cert,
        client_key=key,
    )


_FOLDER_KEYS = {
    "name", "server", "query", "min_study_date", "max_study_date",
    "include_fields", "query_level", "limit",
}  # fmt: skip
RESERVED_NAMES = {"by-uid", CONTROL_DIR}


def _keyword_ok(word: str) -> bool:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(word) is not None


def _parse_folder(t: _Table, servers: Mapping[str, Server]) -> Folder:
    t.check_keys(_FOLDER_KEYS)
    name = t.require("name", str)
    from .naming import sanitize

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
            if k not in QUERY_KEYS:
                raise q.error(k, f"unknown query key (expected one of: {', '.join(sorted(QUERY_KEYS))})")
            if isinstance(v, bool) or not isinstance(v, (str, int)):
                raise q.error(k, f"must be a string, not {_kind(v)}")
            if "\\" in str(v) and k != "ModalitiesInStudy":
                raise q.error(k, "must be a single value (no backslash)")
            query[k] = str(v)
    dates = {}
    for k in ("min_study_date", "max_study_date"):
        v = t.get(k, (str, _dt.date))
        if v is None:
            dates[k] = None
        elif isinstance(v, _dt.date):
            dates[k] = DateSpec(v.isoformat(), v)
        else:
            try:
                dates[k] = parse_date(v)
            except ValueError as exc:
                raise t.error(k, str(exc)) from None
    lo, hi = dates["min_study_date"], dates["max_study_date"]
    if lo and hi and lo.resolve() > hi.resolve():
        raise t.error("min_study_date", f"{lo.text} is after max_study_date {hi.text}")
    if lo and "StudyDate" in query:
        raise t.error("min_study_date", "cannot be combined with query.StudyDate")
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
    return Folder(
        name=name,
        server=server,
        query=query,
        min_study_date=lo,
        max_study_date=hi,
        include_fields=tuple(inc),
        query_level=level,
        limit=limit,
    )


def _parse_names(t: _Table | None, path: str) -> dict[str, str]:
    from .naming import check_template

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


def _parse_cache(t: _Table | None) -> CacheConfig:
    if t is None:
        return CacheConfig()
    allowed = {"memory_mb", "disk_dir", "disk_mb", "readahead", "readahead_series",
               "folder_ttl", "study_ttl", "series_ttl"}  # fmt: skip
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
    return CacheConfig(mem, disk_dir, disk_mb, ra, ras, **ttls)


def _has_inline_secret(data: Mapping[str, Any]) -> bool:
    for server in (data.get("servers") or {}).values():
        auth = server.get("auth") if isinstance(server, dict) else None
        if isinstance(auth, dict) and any(k in auth for k in ("password", "token", "client_secret")):
            return True
    return False


def parse(text: str, path: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, None, f"not valid TOML: {exc}") from None
    top = _Table(path, "", data)
    top.check_keys({"servers", "folders", "names", "cache"})
    servers_t = top.table("servers")
    if servers_t is None or not servers_t.data:
        raise ConfigError(path, "servers", "is missing (add a [servers.NAME] table)")
    servers = {}
    for name in servers_t.data:
        if not re.match(r"^[A-Za-z0-9_.-]+$", name):
            raise servers_t.error(name, "server names may use letters, digits, '_', '.' and '-'")
        servers[name] = _parse_server(_Table(path, servers_t.sub(name), servers_t.data[name]), name)
    raw_folders = top.get("folders", list, [])
    folders = []
    seen: set[str] = set()
    for i, f in enumerate(raw_folders):
        folder = _parse_folder(_Table(path, f"folders[{i}]", f), servers)
        if folder.name in seen:
            raise ConfigError(path, f"folders[{i}].name", f"{folder.name!r} is used by another folder")
        seen.add(folder.name)
        folders.append(folder)
    return Config(
        path=path,
        servers=servers,
        folders=tuple(folders),
        names=_parse_names(top.table("names"), path),
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
        mode = p.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH) and _has_inline_secret(tomllib.loads(text)):
            warnings.append(
                f"{p}: holds a password or token and can be read by others: chmod 600 it, "
                "or use password_env / password_file"
            )
    except OSError:
        pass
    if warnings:
        cfg = Config(cfg.path, cfg.servers, cfg.folders, cfg.names, cfg.cache, tuple(warnings))
    return cfg
