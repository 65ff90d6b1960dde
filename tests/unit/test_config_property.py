"""The config loader against arbitrary input (hypothesis): whatever the TOML
says, :func:`trolleyfs.config.parse` returns a Config or raises the one
ConfigError, never anything else; :func:`trolleyfs.config.load` does the same
for whatever bytes a file holds.  And a Config it returns works: every date
resolves (also decades from now), and what the first ``ls`` of each folder
does (its query built and sent, its studies named) raises nothing.

Inputs are arbitrary TOML documents (nested tables, arrays and scalars under
the config's real key names and random ones) and the valid configs of the
README, docs/ and examples/, and of these tests, with values replaced, keys
dropped and keys added.
The examples are derandomized and no database is kept, so CI is deterministic.

What "the first ``ls``" does is run for real: the protocol's searcher (built
by the registry, with the server's own auth) sends its study search through
httpx to a transport that checks the request as an HTTP/1.1 client would send
it (h11) and answers with an empty result; DICOM-QR builds and encodes its
C-FIND identifier and the AE it would associate with; names are rendered from
the templates over attribute values as servers send them."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import string
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.certs import self_signed
from trolleyfs import config as config_module
from trolleyfs.audit.settings import KEYS as AUDIT_KEYS
from trolleyfs.cluster import settings as shared_settings
from trolleyfs.config import Config, ConfigError, DateSpec, load, parse
from trolleyfs.endpoints import AeEndpoint, DicomQrEndpoint
from trolleyfs.folders import FOLDER_KEYS
from trolleyfs.limits.settings import KEYS as LIMITS_KEYS
from trolleyfs.listings.identity import search_key as query_key
from trolleyfs.naming import names_for
from trolleyfs.protocols import build_searcher
from trolleyfs.transport.auth import make_auth
from trolleyfs.transport.http import build_client

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
ROOT = Path(__file__).parents[2]
# the pages that show configs of the config file's current shape (the drafts of
# other pages show tables the loader does not take yet)
DOC_PAGES = [ROOT / "README.md", *(ROOT / "docs" / f"{n}.md" for n in ("configuring", "servers", "views", "cluster"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))

# ------------------------------------------------------------------ TOML out


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def dumps(doc: dict[str, Any]) -> str:
    """A TOML document of ``doc`` (every table inline: any nesting is expressible)."""
    return "".join(f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in doc.items())


def test_the_writer_round_trips() -> None:
    doc = {"a b": [1, 2.5, 'x\x00"\\\x7f', {"k": dt.date(2020, 1, 2)}], "t": {"n": -0.0, "i": math.inf}}
    assert tomllib.loads(dumps(doc)) == doc


# ------------------------------------------------------------------ seeds


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Real files and environment variables the seed configs name."""
    d = tmp_path_factory.mktemp("cfgfuzz")
    cert, key = self_signed(d)
    (d / "pw").write_text("from-a-file\n")
    (d / "shared.key").write_bytes(bytes(range(32)))
    paths = {
        "cert": str(cert),
        "key": str(key),
        "pw": str(d / "pw"),
        "shared_key": str(d / "shared.key"),
        "dir": str(d),
    }
    with pytest.MonkeyPatch.context() as mp:
        for var in ("PACS_PASSWORD", "VITREA_PW", "KC_SECRET", "PACS_PW", "PACS_TOKEN", "REDIS_PASSWORD"):
            mp.setenv(var, "from-the-environment")
        yield paths


def _readme_blocks() -> list[dict[str, Any]]:
    """The configs the documentation shows: the README's ```toml blocks, then
    those of the pages of docs/ about the config file and the servers, then
    the files of examples/."""
    blocks = [b for page in DOC_PAGES for b in re.findall(r"```toml\n(.*?)```", page.read_text(), re.S)]
    blocks += [p.read_text() for p in EXAMPLES]
    out = []
    for b in blocks:
        try:
            out.append(tomllib.loads(b))
        except tomllib.TOMLDecodeError:  # a fragment (keys without their table)
            out.append(tomllib.loads("[servers.pacs]\n" + b))
    return out


def seeds(files: dict[str, str]) -> list[dict[str, Any]]:
    """Valid configs: the README's (fragments joined to the first whole one)
    and one that uses every key of every table."""
    blocks = _readme_blocks()
    whole = [b for b in blocks if "servers" in b and "search" in next(iter(b["servers"].values()))]
    main = _copy(whole[0])
    for b in blocks:
        names = {f.get("name") for f in main.setdefault("folders", [])}
        main["folders"].extend(x for x in b.get("folders", []) if x.get("name") not in names)
        if "cache" in b:
            main.setdefault("cache", {}).update(b["cache"])
    shared = main["cache"]["shared"]
    for inline in ("password", "password_env"):  # the shared tier's password: from the test's file
        shared.pop(inline, None)
    shared["password_file"] = files["pw"]
    every = {
        "servers": {
            "qido": {
                "search": {
                    "protocol": "qido-rs",
                    "url": "https://pacs.example/dicom-web",
                    "page_size": 500,
                    "space_as": "?",
                },
                "retrieve": {"protocol": "wado-rs", "url": "https://pacs.example/dicom-web"},
                "auth": {
                    "type": "oauth2",
                    "token_url": "https://kc.example/token",
                    "client_id": "t",
                    "client_secret_env": "KC_SECRET",
                    "scope": "read",
                },
                "timeout": 12.5,
                "retries": 3,
                "max_connections": 4,
                "ca_bundle": files["cert"],
                "client_cert": files["cert"],
                "client_key": files["key"],
            },
            "mint": {
                "search": {"protocol": "mint", "url": "http://vitrea.example/mint", "space_as": "*"},
                "retrieve": {
                    "protocol": "rad69",
                    "url": "http://vitrea.example/rad69",
                    "ignore_errors": ["XDSMissingDocument"],
                },
                "auth": {
                    "type": "vitrea",
                    "login_url": "http://vitrea.example/login",
                    "username": "u",
                    "password_file": files["pw"],
                    "realm": "R",
                },
                "verify": False,
            },
            "uri": {
                "search": {"protocol": "qido-rs", "url": "http://o.example:8042/dicom-web"},
                "retrieve": {"protocol": "wado-uri", "url": "http://o.example:8042/wado"},
                "auth": {"type": "bearer", "token": "abc.def"},
            },
            "qr": {
                "search": {
                    "protocol": "dicom-qr",
                    "host": "pacs.example",
                    "port": 104,
                    "called_aet": "PACS",
                    "calling_aet": "ME",
                },
                "retrieve": {"protocol": "c-get", "host": "pacs.example", "port": 104, "called_aet": "PACS"},
            },
            "move": {
                "search": {"protocol": "dicom-qr", "host": "10.0.0.1", "port": 11112},
                "retrieve": {
                    "protocol": "c-move",
                    "host": "10.0.0.1",
                    "port": 11112,
                    "store_port": 11113,
                    "store_aet": "DEST",
                    "store_host": "127.0.0.1",
                },
                "auth": {"type": "basic", "username": "alice", "password": "pw"},
            },
        },
        "folders": [
            {
                "name": "all-qr",
                "server": "qr",
                "query": {"ModalitiesInStudy": "CT\\MR", "PatientName": "DOE^J*", "PatientID": 12345},
                "min_study_date": "-2w",
                "max_study_date": "today",
                "include_fields": ["PatientBirthDate", "StudyTime"],
                "query_level": "instance",
                "limit": 100,
                "transfer_syntax": "uncompressed",
                "views": ["metadata", "zip"],
            },
            {"name": "mint", "server": "mint", "min_study_date": dt.date(2001, 2, 3), "query_level": "series"},
            {"name": "qido", "server": "qido", "max_study_date": "20240101", "query": {"AccessionNumber": "2024/77"}},
            {"name": "uri", "server": "uri", "query": {"StudyDescription": "Thorax  und Abdomen"}},
        ],
        "names": {
            "study": "{StudyDate} {PatientName}",
            "series": "{SeriesNumber:03} {Modality}",
            "instance": "{InstanceNumber:04}",
        },
        "cache": {
            "memory_mb": 64,
            "disk_dir": files["dir"],
            "disk_mb": 100,
            "readahead": "off",
            "readahead_series": 4,
            "folder_ttl": 0,
            "study_ttl": 10.5,
            "series_ttl": 7200,
            "shared": {
                "url": ["rediss://r1.example:6379", "rediss://r2.example:6379"],
                "cluster": True,
                "username": "trolleyfs",
                "password_env": "PACS_PW",
                "ca_bundle": files["cert"],
                "client_cert": files["cert"],
                "client_key": files["key"],
                "ttl": "12h",
                "key_file": files["shared_key"],
                "timeout": 1.5,
                "max_connections": 8,
                "prefix": "tfs",
                "chunk_kb": 256,
            },
        },
    }
    return [main, *whole[1:], every]


def protection_seed(files: dict[str, str]) -> dict[str, Any]:
    """A valid config with every key of a server's ``limits`` and of ``[audit]``
    (a seed of its own: the limits and the audit are fuzzed by a property of
    their own, without changing the examples drawn for the others)."""
    return {
        "servers": {
            "pacs": {
                "search": {"protocol": "qido-rs", "url": "http://pacs.example/dicom-web"},
                "retrieve": {"protocol": "wado-rs", "url": "http://pacs.example/dicom-web"},
                "limits": {"mb_per_s": 50, "requests_per_s": 20, "burst_s": 2.5, "background_hours": "19:00-07:00"},
            },
            "night": {
                "search": {"protocol": "dicom-qr", "host": "pacs.example", "port": 104},
                "retrieve": {"protocol": "c-get", "host": "pacs.example", "port": 104},
                "limits": {"background_hours": "12:00-13:00,19:00-24:00"},
            },
        },
        "audit": {
            "file": os.path.join(files["dir"], "audit.jsonl"),
            "syslog": True,
            "syslog_socket": "/dev/log",
            "facility": "local3",
            "on_failure": "block",
            "queue": 1000,
            "max_mb": 10,
            "keep": 3,
        },
    }


def test_the_seeds_are_valid_and_use_every_key(files: dict[str, str]) -> None:
    docs = [*seeds(files), protection_seed(files)]
    for doc in docs:
        assert isinstance(parse(dumps(doc), "seed.toml"), Config)
    used: set[str] = set()

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            used.update(v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    for doc in docs:
        walk(doc)
    assert used >= FOLDER_KEYS | config_module._SERVER_KEYS | shared_settings._KEYS | set(LIMITS_KEYS) | set(AUDIT_KEYS)


# ------------------------------------------------------------------ strategies

REAL_KEYS = sorted(
    FOLDER_KEYS
    | config_module._SERVER_KEYS
    | shared_settings._KEYS
    | set(LIMITS_KEYS)
    | set(AUDIT_KEYS)
    | {"audit"}
    | set(config_module.QUERY_KEYS)
    | {"servers", "folders", "names", "cache", "study", "series", "instance", "protocol", "url", "page_size"}
    | {"space_as", "host", "port", "called_aet", "calling_aet", "store_port", "store_aet", "store_host"}
    | {"ignore_errors", "type", "username", "password_env", "token", "token_env", "token_file", "login_url"}
    | {"realm", "token_url", "client_id", "client_secret", "client_secret_env", "client_secret_file", "scope"}
    | {"memory_mb", "disk_dir", "disk_mb", "readahead", "readahead_series", "folder_ttl", "study_ttl", "series_ttl"}
)

# values that mean something somewhere in the config, and edges of each kind
WORDS = [
    *("qido-rs", "mint", "dicom-qr", "wado-rs", "wado-uri", "rad69", "c-get", "c-move"),
    *("none", "basic", "bearer", "vitrea", "oauth2", "study", "series", "instance", "off", "%20", "?", "*"),
    *("today", "-7d", "-2w", "-6m", "-1y", "-0d", "-99999999y", "-200y", "-201y", "-73000d", "-9999999999999999999d"),
    *("2020-01-01", "20200101", "00010101", "0001-01-01", "9999-12-31", "2020-02-30", "1899-12-31"),
    *("uncompressed", "as-stored", "metadata", "zip", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"),
    *("http://h/x", "https://h.example", "http://[::1", "http://h:99999/", "http://h:0/", "http://h/\x00", "ftp://h"),
    *("redis://h:6379/0", "rediss://h", "redis://h:99999", "redis://u:p@h", "redis://h/x", "redis://h/1?a=b"),
    *("~nosuchuser-trolleyfs/x", "~/x", "/dev/zero", "/dev/null", "/proc/self/mem", "/", ".", "..", "/etc/hostname"),
    *("", " ", "\x00", "a\x00b", "\n", "line\r\nX-Injected: 1", "\t", "é", "\u202e", "0.0.0.0", "::", "localhost"),
    *("ANY-SCP", "A" * 16, "A" * 17, "  ", "A\\B", "TROLLEYFS"),
    *("{PatientName}", "{SeriesNumber:03}", "{SeriesNumber:99999999}", "{SeriesNumber:c}", "{PatientName!x}"),
    *("{PatientName:{StudyDate}}", "{}", "{0}", "{PatientName.x}", "{PatientName[0]}", "{StudyDate:%Y}"),
    *("30d", "1e400", "9" * 400, "0s", "0.5s", "inf", "nan", "-1", "1" * 30),
    *("CT\\MR", "DOE^J*", "TEST*", "*", "?" * 70, "A" * 70, "20200101-20201231", "1.2.3"),
]

INTS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 16, 64, 65, 65535, 65536, 2**31, 2**63 - 1, -(2**63), 10**18]),
)
FLOATS = st.one_of(st.floats(), st.sampled_from([math.inf, -math.inf, math.nan, 1e308, 5e-324, -0.0, 0.1, 1e9]))
TEXT = st.one_of(st.text(max_size=30), st.sampled_from(WORDS))
SCALARS = st.one_of(
    st.booleans(),
    INTS,
    FLOATS,
    TEXT,
    TEXT,
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.times(),
)
KEYS = st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=12))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=6)


def _paths(v: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, (*at, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from _paths(x, (*at, i))


def _like(v: Any) -> st.SearchStrategy[Any]:
    """Values of the same kind as ``v`` (so that a change probes the checks
    of the key, not only its type)."""
    if isinstance(v, bool):
        return st.booleans()
    if isinstance(v, int):
        return INTS
    if isinstance(v, float):
        return st.one_of(FLOATS, INTS)
    if isinstance(v, str):
        return TEXT
    if isinstance(v, (dt.date, dt.time)):
        return st.one_of(st.dates(), st.datetimes(), st.times())
    if isinstance(v, list):
        return st.lists(_like(v[0]) if v else VALUES, max_size=4)
    return VALUES


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """One change: a value replaced (mostly by one of its kind), a key or
    element dropped, or a key added to a table."""
    doc = _copy(doc)
    paths = [p for p in _paths(doc) if p]
    leaves = [p for p in paths if not isinstance(_at(doc, p), dict)]
    tables = [p for p in _paths(doc) if isinstance(_at(doc, p), dict)]
    how = data.draw(st.sampled_from(["like", "like", "like", "like", "any", "drop", "add"]), label="how")
    pick = data.draw(
        st.randoms(use_true_random=False), label="where"
    )  # even over the keys (sampled_from favours the first)
    if how == "add" or not leaves:
        table = _at(doc, pick.choice(tables))
        table[data.draw(KEYS, label="key")] = data.draw(VALUES, label="value")
        return doc
    path = pick.choice(leaves)
    parent, last = _at(doc, path[:-1]), path[-1]
    if how == "drop":
        del parent[last]
    elif how == "like":
        parent[last] = data.draw(_like(parent[last]), label="value")
    else:
        parent[last] = data.draw(VALUES, label="value")
    return doc


def _copy(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


# ------------------------------------------------------------------ what the first ls does

MINT_EMPTY = b'<?xml version="1.0" encoding="UTF-8"?><studySearchResults xmlns="http://medical.nema.org/mint"/>'
# attribute values as servers send them, good and odd, for the name templates
ODD_VALUES = ["", "20240102", "DOE^JOHN=D^J", "3", "-12", "1.5e300", "9" * 60, "nan", "x" * 300, "\x00/\\"]


def _transport(token_urls: set[str]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        # what an HTTP/1.1 client would put on the wire must be valid (h11 checks as it sends)
        target = request.url.raw_path
        h11.Request(method=request.method, target=target, headers=list(request.headers.raw))
        if str(request.url) in token_urls:
            return httpx.Response(200, json={"access_token": "t0k", "expires_in": 300, "token_type": "bearer"})
        if "mint" in request.headers.get("accept", "") or "xml" in request.headers.get("accept", ""):
            return httpx.Response(200, content=MINT_EMPTY, headers={"content-type": "application/xml"})
        return httpx.Response(200, json=[], headers={"content-type": "application/dicom+json"})

    return httpx.MockTransport(answer)


def _dates(cfg: Config) -> list[DateSpec]:
    return [d for f in cfg.folders for d in (f.min_study_date, f.max_study_date) if d is not None]


def _template_rows(template: str) -> list[dict[str, str]]:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    return [dict.fromkeys(fields, v) for v in ODD_VALUES]


async def _first_ls(cfg: Config) -> None:
    from trolleyfs.search.cfind import DicomQR
    from trolleyfs.transport.dimse import make_ae

    for server in cfg.servers.values():
        folders = [f for f in cfg.folders if f.server == server.name]
        if isinstance(server.search, AeEndpoint):
            from pynetdicom.dsutils import encode
            from pynetdicom.utils import set_ae

            make_ae(server, server.search)
            set_ae(server.search.called_aet, "called_aet", False, False)
            assert isinstance(server.search, DicomQrEndpoint)  # the one search protocol over an AE
            qr = DicomQR(server, server.search)
            for f in folders:
                identifier = qr.study_identifier(f.study_query())
                assert encode(identifier, True, True) is not None
            continue
        token_urls = {getattr(server.auth, "token_url", "")}
        client = build_client(server, make_auth(server), transport=_transport(token_urls))
        async with client:
            searcher = build_searcher(server, client)
            for f in folders:
                assert await searcher.find_studies(f.study_query()) == []
            await searcher.aclose()


def check_works(cfg: Config) -> None:
    """What a returned Config must allow: every date resolves, now and for
    years to come; each folder's query and its key are built and its search
    sent; every name template renders over odd values."""
    today = dt.date.today()
    for day in (today, today.replace(year=today.year + 100)):
        for spec in _dates(cfg):
            spec.resolve(day).strftime("%Y%m%d")
    for f in cfg.folders:
        q = f.study_query()
        q.study_date_range()
        query_key(
            q, f.min_study_date.text if f.min_study_date else "", f.max_study_date.text if f.max_study_date else ""
        )
    for template in cfg.names.values():
        for row in _template_rows(template):
            (name,) = names_for(template, [(row, "1.2.3")], ".dcm")
            assert 0 < len(name.encode()) <= 255
    trio.run(_first_ls, cfg)


def parse_or_config_error(text: str) -> Config | None:
    try:
        cfg = parse(text, "fuzz.toml")
    except ConfigError as exc:
        assert exc.path == "fuzz.toml" and "\n" not in str(exc), str(exc)
        event("a ConfigError")
        return None
    event("a Config")
    return cfg


# ------------------------------------------------------------------ the properties


@settings(SETTINGS, max_examples=300)
@given(doc=DOCUMENTS)
def test_any_toml_document_is_a_config_or_a_config_error(doc: dict[str, Any], files: dict[str, str]) -> None:
    cfg = parse_or_config_error(dumps(doc))
    if cfg is not None:
        check_works(cfg)


@settings(SETTINGS, max_examples=500)
@given(data=st.data())
def test_a_valid_config_with_changed_values_is_a_config_or_a_config_error(
    data: st.DataObject, files: dict[str, str]
) -> None:
    doc = data.draw(st.sampled_from(seeds(files)), label="seed")
    for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 3]), label="changes")):
        doc = _mutate(doc, data)
    cfg = parse_or_config_error(dumps(doc))
    if cfg is not None:
        check_works(cfg)


@settings(SETTINGS, max_examples=200)
@given(data=st.data())
def test_limits_and_audit_with_changed_values_are_a_config_or_a_config_error(
    data: st.DataObject, files: dict[str, str]
) -> None:
    doc = protection_seed(files)
    for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 3]), label="changes")):
        doc = _mutate(doc, data)
    cfg = parse_or_config_error(dumps(doc))
    if cfg is not None:
        check_works(cfg)


@settings(SETTINGS, max_examples=200)
@given(text=st.text(max_size=200))
def test_any_text_is_a_config_or_a_config_error(text: str) -> None:
    parse_or_config_error(text)


@settings(SETTINGS, max_examples=100)
@given(raw=st.one_of(st.binary(max_size=200), TEXT.map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_any_file_is_loaded_or_a_config_error(raw: bytes, files: dict[str, str]) -> None:
    path = Path(files["dir"]) / "fuzz.toml"
    path.write_bytes(raw)
    try:
        cfg = load(path)
    except ConfigError as exc:
        assert exc.path == str(path) and "\n" not in str(exc)
    else:
        check_works(cfg)


@pytest.mark.parametrize("where", ["missing", "directory", "unreadable", "fifo"])
def test_a_path_that_is_no_config_file_is_a_config_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "c.toml"
    if where == "directory":
        path.mkdir()
    elif where == "unreadable":
        path.write_text("[servers]\n")
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: make it a dangling symlink instead
            path.unlink()
            path.symlink_to(tmp_path / "nowhere")
    elif where == "fifo":
        os.mkfifo(path)
    with pytest.raises(ConfigError) as exc:
        load(path)
    assert exc.value.path == str(path) and "\n" not in str(exc.value)
