"""The registry of protocols: for each name the config accepts, its role
(search or retrieve), its endpoint dataclass (which carries the name) and the
factory that builds its searcher or fetcher.  Config parsing (:mod:`trolleyfs.config`) and the wiring
(:mod:`trolleyfs.wiring`) both read it, so a protocol is named in one place.

Adding a protocol: its module under ``search/`` or ``retrieve/``, its endpoint
dataclass (:mod:`trolleyfs.endpoints`), a factory here and one line in
:data:`PROTOCOLS`.  Factories import their module when first used, so a
protocol no server uses is never imported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from .endpoints import (
    CGetEndpoint,
    CMoveEndpoint,
    DicomQrEndpoint,
    EndpointConfig,
    MintEndpoint,
    QidoEndpoint,
    Rad69Endpoint,
    Server,
    WadoRsEndpoint,
    WadoUriEndpoint,
)
from .model import Fetcher, MetadataSource, Searcher

if TYPE_CHECKING:  # the factories import the transports when used: parsing a config needs neither
    import httpx

    from .retrieve.storescp import Receivers

Role = Literal["search", "retrieve"]
E = TypeVar("E", bound=EndpointConfig)


Metadata = Callable[[Server, Any, "httpx.AsyncClient"], MetadataSource]


@dataclass(frozen=True)
class SearchProtocol(Generic[E]):
    """A listing protocol: ``build(server, endpoint, client)`` gives its
    Searcher; ``metadata``, for DICOMweb endpoints, the server's ``/metadata``."""

    endpoint: type[E]
    build: Callable[[Server, E, httpx.AsyncClient], Searcher]
    metadata: Metadata | None = None

    @property
    def name(self) -> str:
        return self.endpoint.protocol  # the name the config uses

    @property
    def role(self) -> Role:
        return "search"


@dataclass(frozen=True)
class RetrieveProtocol(Generic[E]):
    """A read protocol.  Its Fetcher is built by ``build(server, endpoint,
    client)`` for protocols that ask and are answered, or by
    ``receive(server, endpoint, receivers)`` for those whose objects the PACS
    sends to a receiver of the mount (C-MOVE); ``ask(server, endpoint, client,
    transfer_syntax)``, for protocols that can ask the server to transcode,
    a Fetcher asking for that transfer syntax."""

    endpoint: type[E]
    build: Callable[[Server, E, httpx.AsyncClient], Fetcher] | None = None
    receive: Callable[[Server, E, Receivers], Fetcher] | None = None
    ask: Callable[[Server, E, httpx.AsyncClient, str], Fetcher] | None = None
    metadata: Metadata | None = None

    @property
    def name(self) -> str:
        return self.endpoint.protocol  # the name the config uses

    @property
    def role(self) -> Role:
        return "retrieve"


# ---------------------------------------------------------------- factories


def _qido(server: Server, ep: QidoEndpoint, client: httpx.AsyncClient) -> Searcher:
    from .search.qido import QidoRS
    from .transport.http import HttpEndpoint

    return QidoRS(HttpEndpoint(server, ep.url, client), page_size=ep.page_size, space_as=ep.space_as)


def _mint(server: Server, ep: MintEndpoint, client: httpx.AsyncClient) -> Searcher:
    from .search.mint import Mint
    from .transport.http import HttpEndpoint

    return Mint(HttpEndpoint(server, ep.url, client), space_as=ep.space_as)


def _dicom_qr(server: Server, ep: DicomQrEndpoint, client: httpx.AsyncClient) -> Searcher:
    from .search.cfind import DicomQR

    return DicomQR(server, ep)


def _wado_metadata(server: Server, ep: QidoEndpoint | WadoRsEndpoint, client: httpx.AsyncClient) -> MetadataSource:
    from .retrieve.metadata import WadoMetadata
    from .transport.http import HttpEndpoint

    return WadoMetadata(HttpEndpoint(server, ep.url, client))


def _wado_rs(server: Server, ep: WadoRsEndpoint, client: httpx.AsyncClient) -> Fetcher:
    from .retrieve.wado_rs import WadoRS
    from .transport.http import HttpEndpoint

    return WadoRS(HttpEndpoint(server, ep.url, client))


def _once(server: Server) -> Server:
    """The server, asked without retries: a transcoding request that fails is
    not tried again but answered from the stored form (which is retried)."""
    return replace(server, retries=0)


def _wado_rs_asking(server: Server, ep: WadoRsEndpoint, client: httpx.AsyncClient, ts: str) -> Fetcher:
    from .retrieve.wado_rs import WadoRS
    from .transport.http import HttpEndpoint

    return WadoRS(HttpEndpoint(_once(server), ep.url, client), transfer_syntax=ts)


def _wado_uri(server: Server, ep: WadoUriEndpoint, client: httpx.AsyncClient) -> Fetcher:
    from .retrieve.wado_uri import WadoURI
    from .transport.http import HttpEndpoint

    return WadoURI(HttpEndpoint(server, ep.url, client))


def _wado_uri_asking(server: Server, ep: WadoUriEndpoint, client: httpx.AsyncClient, ts: str) -> Fetcher:
    from .retrieve.wado_uri import WadoURI
    from .transport.http import HttpEndpoint

    return WadoURI(HttpEndpoint(_once(server), ep.url, client), transfer_syntax=ts)


def _rad69(server: Server, ep: Rad69Endpoint, client: httpx.AsyncClient) -> Fetcher:
    from .retrieve.rad69 import Rad69
    from .transport.http import HttpEndpoint

    return Rad69(HttpEndpoint(server, ep.url, client), ignore_errors=ep.ignore_errors)


def _rad69_asking(server: Server, ep: Rad69Endpoint, client: httpx.AsyncClient, ts: str) -> Fetcher:
    from .retrieve.rad69 import Rad69
    from .retrieve.rad69_soap import syntaxes_preferring
    from .transport.http import HttpEndpoint

    endpoint = HttpEndpoint(_once(server), ep.url, client)
    return Rad69(endpoint, ignore_errors=ep.ignore_errors, transfer_syntaxes=syntaxes_preferring(ts))


def _c_get(server: Server, ep: CGetEndpoint, client: httpx.AsyncClient) -> Fetcher:
    from .retrieve.cget import CGet

    return CGet(server, ep)


def _c_move(server: Server, ep: CMoveEndpoint, receivers: Receivers) -> Fetcher:
    from .retrieve.cmove import CMove
    from .retrieve.senders import Senders
    from .retrieve.storescp import ReceiverAddress

    senders = Senders(server.name, ep.sender_aets or (ep.called_aet,), ep.sender_hosts or (ep.host,))
    address = ReceiverAddress(ep.store_host, ep.store_port, ep.store_aet)
    receiver = receivers.get(address, server.timeout, senders, pacs_host=ep.host)
    return CMove(server, ep, receiver, senders)


# ---------------------------------------------------------------- the registry

AnyProtocol = SearchProtocol[Any] | RetrieveProtocol[Any]

PROTOCOLS: dict[str, AnyProtocol] = {
    p.name: p
    for p in (
        SearchProtocol(QidoEndpoint, _qido, metadata=_wado_metadata),
        SearchProtocol(MintEndpoint, _mint),
        SearchProtocol(DicomQrEndpoint, _dicom_qr),
        RetrieveProtocol(WadoRsEndpoint, _wado_rs, ask=_wado_rs_asking, metadata=_wado_metadata),
        RetrieveProtocol(WadoUriEndpoint, _wado_uri, ask=_wado_uri_asking),
        RetrieveProtocol(Rad69Endpoint, _rad69, ask=_rad69_asking),
        RetrieveProtocol(CGetEndpoint, _c_get),
        RetrieveProtocol(CMoveEndpoint, receive=_c_move),
    )
}


def names(role: Role) -> list[str]:
    """The protocol names usable in ``role``, sorted."""
    return sorted(name for name, p in PROTOCOLS.items() if p.role == role)


def endpoint(protocol: str, **fields: Any) -> EndpointConfig:
    """The endpoint dataclass of ``protocol`` built from ``fields``, as the
    config would hold it (e.g. ``endpoint("qido-rs", url="http://pacs/dicom-web")``)."""
    spec = PROTOCOLS.get(protocol)
    if spec is None:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(sorted(PROTOCOLS))})")
    cls: type[EndpointConfig] = spec.endpoint
    return cls(**fields)


def build_searcher(server: Server, client: httpx.AsyncClient) -> Searcher:
    """The Searcher of ``server``'s search endpoint."""
    spec = PROTOCOLS.get(server.search.protocol)
    if not isinstance(spec, SearchProtocol) or not isinstance(server.search, spec.endpoint):
        raise ValueError(f"unknown search protocol {server.search.protocol}")
    return spec.build(server, server.search, client)


def build_fetcher(server: Server, client: httpx.AsyncClient, receivers: Receivers | None = None) -> Fetcher:
    """The Fetcher of ``server``'s retrieve endpoint.  C-MOVE fetchers get their
    storage receiver from ``receivers`` (the mount's; started by the caller)."""
    spec = PROTOCOLS.get(server.retrieve.protocol)
    if not isinstance(spec, RetrieveProtocol) or not isinstance(server.retrieve, spec.endpoint):
        raise ValueError(f"unknown retrieve protocol {server.retrieve.protocol}")
    if spec.build is not None:
        return spec.build(server, server.retrieve, client)
    assert spec.receive is not None
    if receivers is None:
        from .retrieve.storescp import Receivers

        receivers = Receivers()
    return spec.receive(server, server.retrieve, receivers)


def build_asking_fetcher(server: Server, client: httpx.AsyncClient, transfer_syntax: str) -> Fetcher | None:
    """A Fetcher of ``server``'s retrieve endpoint that asks the server for
    objects in ``transfer_syntax``, or None if its protocol cannot ask."""
    spec = PROTOCOLS.get(server.retrieve.protocol)
    if not isinstance(spec, RetrieveProtocol) or not isinstance(server.retrieve, spec.endpoint):
        raise ValueError(f"unknown retrieve protocol {server.retrieve.protocol}")
    return None if spec.ask is None else spec.ask(server, server.retrieve, client, transfer_syntax)


def build_metadata(server: Server, client: httpx.AsyncClient) -> MetadataSource | None:
    """``/metadata`` of ``server``'s search endpoint, else of its retrieve
    endpoint, where one is a DICOMweb service (None otherwise)."""
    for ep in (server.search, server.retrieve):
        spec = PROTOCOLS.get(ep.protocol)
        if spec is not None and spec.metadata is not None:
            return spec.metadata(server, ep, client)
    return None
