"""What the config says about one server: its search and retrieve endpoints,
one frozen dataclass per protocol (each reads itself from its TOML table), and
the :class:`Server` holding them with its auth and connection settings.

Which protocol name maps to which endpoint class, and in which role, is the
registry's business (:mod:`trolleyfs.protocols`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import trio

from .credentials import AuthConfig, NoAuth
from .tomltable import Table


@dataclass(frozen=True)
class EndpointConfig:
    """One endpoint of a server, as configured."""

    protocol: ClassVar[str]
    # reads need the PACS to connect back to us (C-MOVE): only a read proves
    # that works, so the mount's pre-flight reads one instance too
    reads_need_callback: ClassVar[bool] = False

    def where(self) -> str:
        """The endpoint's address, for messages."""
        raise NotImplementedError

    @classmethod
    def from_table(cls, t: Table) -> Self:
        """Read the endpoint from its TOML table (which has its ``protocol``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class UrlEndpoint(EndpointConfig):
    """An HTTP endpoint: a base URL."""

    url: str

    def where(self) -> str:
        return self.url

    @classmethod
    def from_table(cls, t: Table) -> Self:
        t.check_keys({"protocol", "url"})
        return cls(url=t.url("url"))


# How a space in a query value is sent: "auto" (the default: QIDO-RS sends a
# wildcard where the attribute takes one and keeps only exact matches, see
# trolleyfs.search.fields; MINT sends %20), percent-encoded (servers that
# decode the query string), or always as a one-character / any-length
# wildcard (Orthanc 1.10 does not decode the query: ``%20`` matches nothing).
SPACE_FORMS = ("auto", "%20", "?", "*")


def _space_as(t: Table) -> str:
    value = t.get("space_as", str, "auto")
    if value not in SPACE_FORMS:
        raise t.error("space_as", f"{value!r}: expected one of {', '.join(repr(f) for f in SPACE_FORMS)}")
    return value


@dataclass(frozen=True)
class QidoEndpoint(UrlEndpoint):
    protocol: ClassVar[str] = "qido-rs"
    page_size: int = 1000  # QIDO-RS limit per request
    space_as: str = "auto"  # how a space in a query value is sent (SPACE_FORMS)

    @classmethod
    def from_table(cls, t: Table) -> Self:
        t.check_keys({"protocol", "url", "page_size", "space_as"})
        page_size = t.integer("page_size", 1000, 1, 100_000)
        return cls(url=t.url("url"), page_size=page_size, space_as=_space_as(t))


@dataclass(frozen=True)
class MintEndpoint(UrlEndpoint):
    protocol: ClassVar[str] = "mint"
    space_as: str = "auto"  # how a space in a query value is sent (SPACE_FORMS)

    @classmethod
    def from_table(cls, t: Table) -> Self:
        t.check_keys({"protocol", "url", "space_as"})
        return cls(url=t.url("url"), space_as=_space_as(t))


@dataclass(frozen=True)
class WadoRsEndpoint(UrlEndpoint):
    protocol: ClassVar[str] = "wado-rs"


@dataclass(frozen=True)
class WadoUriEndpoint(UrlEndpoint):
    protocol: ClassVar[str] = "wado-uri"


@dataclass(frozen=True)
class Rad69Endpoint(UrlEndpoint):
    protocol: ClassVar[str] = "rad69"
    ignore_errors: tuple[str, ...] = ()  # RAD69 error codes to skip

    @classmethod
    def from_table(cls, t: Table) -> Self:
        t.check_keys({"protocol", "url", "ignore_errors"})
        ignore = t.get("ignore_errors", list, [])
        if not all(isinstance(x, str) and x.isprintable() for x in ignore):
            raise t.error("ignore_errors", "must be an array of strings (error codes)")
        return cls(url=t.url("url"), ignore_errors=tuple(ignore))


def _aet(t: Table, key: str, default: str) -> str:
    aet = t.get(key, str, default)
    if not 0 < len(aet) <= 16 or "\\" in aet or not (aet.isascii() and aet.isprintable()) or not aet.strip():
        raise t.error(key, f"{aet!r} is not a valid AE title (1-16 printable ASCII characters, not all spaces)")
    return aet


# a host name or an IPv4/IPv6 address (IPv6 without brackets, as sockets take it)
_HOST = re.compile(r"[A-Za-z0-9_.:%-]{1,253}")


def _host(t: Table, key: str, default: str | None = None) -> str:
    host = t.get(key, str, default) if default is not None else t.require(key, str)
    assert host is not None
    if not _HOST.fullmatch(host) or host.startswith(("-", ".")):
        raise t.error(key, f"{host!r} is not a host name or IP address")
    return host


@dataclass(frozen=True)
class AeEndpoint(EndpointConfig):
    """A DICOM application entity: host, port and the AE titles of both ends."""

    host: str
    port: int
    called_aet: str = "ANY-SCP"
    calling_aet: str = "TROLLEYFS"

    def where(self) -> str:
        return f"{self.called_aet}@{self.host}:{self.port}"

    @classmethod
    def from_table(cls, t: Table) -> Self:
        t.check_keys({"protocol", "host", "port", "called_aet", "calling_aet"})
        return cls(**_ae_fields(t))


def _port(t: Table, key: str) -> int:
    port = t.require(key, int)
    if not 0 < port < 65536:
        raise t.error(key, f"{port} is not a TCP port")
    return port


def _ae_fields(t: Table) -> dict[str, Any]:
    called, calling = _aet(t, "called_aet", "ANY-SCP"), _aet(t, "calling_aet", "TROLLEYFS")
    return {"host": _host(t, "host"), "port": _port(t, "port"), "called_aet": called, "calling_aet": calling}


@dataclass(frozen=True)
class DicomQrEndpoint(AeEndpoint):
    protocol: ClassVar[str] = "dicom-qr"


@dataclass(frozen=True)
class CGetEndpoint(AeEndpoint):
    protocol: ClassVar[str] = "c-get"


@dataclass(frozen=True)
class CMoveEndpoint(AeEndpoint):
    """C-MOVE: the PACS sends the objects to our storage SCP, which listens on
    ``store_port`` as ``store_aet`` (the move destination, by default our
    calling AE title), on ``store_host`` (empty: the address of this machine
    that routes to the PACS's ``host``), and takes objects only from the
    PACS: associations calling as one of ``sender_aets`` (empty: ``called_aet``)
    from one of ``sender_hosts`` (names, addresses or networks; empty: ``host``)."""

    protocol: ClassVar[str] = "c-move"
    reads_need_callback: ClassVar[bool] = True
    store_port: int = 11112
    store_aet: str = "TROLLEYFS"
    store_host: str = ""
    sender_aets: tuple[str, ...] = ()
    sender_hosts: tuple[str, ...] = ()

    @classmethod
    def from_table(cls, t: Table) -> Self:
        t.check_keys(
            {
                "protocol",
                "host",
                "port",
                "called_aet",
                "calling_aet",
                "store_port",
                "store_aet",
                "store_host",
                "sender_aets",
                "sender_hosts",
            }
        )
        fields = _ae_fields(t)
        store_host = t.get("store_host", str, "")  # "": the address that routes to the PACS
        if "store_host" in t.data and not (_HOST.fullmatch(store_host) and not store_host.startswith(("-", "."))):
            raise t.error("store_host", f"{store_host!r}: expected an address to listen on (e.g. 0.0.0.0 for all)")
        return cls(
            **fields,
            store_port=_port(t, "store_port"),
            store_aet=_aet(t, "store_aet", fields["calling_aet"]),
            store_host=store_host,
            sender_aets=_strings(t, "sender_aets", _valid_aet, "AE title", "1-16 printable characters"),
            sender_hosts=_strings(
                t, "sender_hosts", _host_like, "host name, address or network", "e.g. pacs, 10.1.2.3, 10.1.2.0/24"
            ),
        )


def _valid_aet(value: str) -> bool:
    return 0 < len(value.strip()) <= 16 and "\\" not in value and value.isprintable()


def _host_like(value: str) -> bool:
    """A host name, an address or a network as text (looked up only when used)."""
    return bool(value.strip()) and value == value.strip() and value.isprintable() and " " not in value


def _strings(t: Table, key: str, valid: Callable[[str], bool], noun: str, example: str) -> tuple[str, ...]:
    """A non-empty array of strings each ``valid`` (absent: empty)."""
    values = t.get(key, list, [])
    if key in t.data and not values:
        raise t.error(key, f"must list at least one {noun} (leave it out for the default)")
    for value in values:
        if not isinstance(value, str) or not valid(value):
            raise t.error(
                key,
                f"{value!r}: expected an {noun} ({example})"
                if noun[0] in "AEIOU"
                else f"{value!r}: expected a {noun} ({example})",
            )
    return tuple(values)


@dataclass(frozen=True)
class Server:
    """A configured server.

    ``association_limiter`` bounds the DICOM associations open to the server
    at once (``max_connections``): an association is a connection the PACS
    counts, whichever of the server's searcher and fetcher opened it, so both
    take their slots from this one limiter."""

    name: str
    search: EndpointConfig
    retrieve: EndpointConfig
    auth: AuthConfig = field(default_factory=NoAuth)
    timeout: float = 30.0
    retries: int = 2
    max_connections: int = 8
    verify: bool | str = True  # True, False or a CA bundle path
    client_cert: str | None = None
    client_key: str | None = None
    association_limiter: trio.CapacityLimiter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "association_limiter", trio.CapacityLimiter(self.max_connections))
