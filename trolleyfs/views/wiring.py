"""The views' parts, built from the config and the opened servers: per
server, the Fetcher the Store uses (objects as stored, or in the transfer
syntaxes the folders ask for), the ``/metadata`` sources, and the
:class:`Views` the tree shows (with their counters for ``stats.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config import Config
from ..endpoints import QidoEndpoint, WadoRsEndpoint
from ..model import Fetcher
from ..protocols import build_asking_fetcher
from ..servers import Remote
from ..transport.http import HttpEndpoint
from .forms import FormFetcher, TranscodingFetcher
from .metadata import Metadata, StoredReader, WadoMetadata
from .transcode import Converter
from .zipstream import Crcs


@dataclass
class Transcoding:
    """The Store's fetchers, and the transcoding ones among them (for their counters)."""

    fetchers: dict[str, Fetcher]
    converter: Converter = field(default_factory=Converter)
    transcoders: list[TranscodingFetcher] = field(default_factory=list)

    def stats(self) -> dict[str, int]:
        out = self.converter.stats()
        for t in self.transcoders:
            for k, v in t.stats().items():
                out[k] = out.get(k, 0) + v
        return out


def transcoding(config: Config, remotes: Mapping[str, Remote]) -> Transcoding:
    """Each server's Fetcher, serving the transfer syntaxes its folders ask for."""
    wanted: dict[str, set[str]] = {}
    for f in config.folders:
        if f.transfer_syntax:
            wanted.setdefault(f.server, set()).add(f.transfer_syntax)
    out = Transcoding({})
    for name, r in remotes.items():
        forms: dict[str, Fetcher] = {}
        for ts in sorted(wanted.get(name, ())):
            t = TranscodingFetcher(r.fetcher, build_asking_fetcher(r.server, r.client, ts), out.converter, ts)
            out.transcoders.append(t)
            forms[ts] = t
        out.fetchers[name] = FormFetcher(r.fetcher, forms) if forms else r.fetcher
    return out


def metadata_sources(remotes: Mapping[str, Remote]) -> dict[str, WadoMetadata]:
    """``/metadata`` per server whose search (QIDO-RS) or retrieve (WADO-RS)
    endpoint is a DICOMweb service."""
    out = {}
    for name, r in remotes.items():
        for ep in (r.server.search, r.server.retrieve):
            if isinstance(ep, (QidoEndpoint, WadoRsEndpoint)):
                out[name] = WadoMetadata(HttpEndpoint(r.server, ep.url, r.client))
                break
    return out


@dataclass
class Views:
    """What the tree's ``views`` directory needs."""

    metadata: Metadata
    crcs: Crcs
    transcoding: Transcoding

    def stats(self) -> dict[str, object]:
        return {"views": self.transcoding.stats() | self.metadata.stats()}


def views(remotes: Mapping[str, Remote], reader: StoredReader, transcoding: Transcoding) -> Views:
    return Views(Metadata(metadata_sources(remotes), reader), Crcs(), transcoding)
