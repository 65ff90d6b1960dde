"""The composition root: a mount's core built from its config, each part
handed its collaborators at construction.  Both front ends start here (FUSE
in :mod:`trolleyfs.mount`, WebDAV in :mod:`trolleyfs.webdav`); below this
module nothing reads the config.

What is built, bottom up: per server an HTTP client (with its auth), the
searcher, the fetcher and the ``/metadata`` source the protocol registry
makes of its endpoints, and the C-MOVE storage receivers; the cluster tier
(``[cache.shared]``); the converting fetchers the folders ask for (and the
de-identifying ones of a ``[deidentify]`` mount); the caches and the Store;
the listings (disk-kept and cluster-shared); the views' parts; the tree.
Each server's limits (``servers.<name>.limits``, shared by the cluster
through Redis when there is one) are handed to its HTTP client and its
associations as their pace, and to the Store for the background hours; the
audit trail (``[audit]``) is opened for the front ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass

import httpx
import trio

from .audit.trail import AuditTrail
from .cluster.once import Cluster
from .cluster.settings import SharedConfig
from .cluster.setup import build_cluster
from .config import CacheConfig, Config
from .deid import Deidentifier
from .derive.metadata import Metadata
from .derive.nifti import Dcm2niix, find_dcm2niix
from .derive.preview import Previewer
from .derive.zipstream import Crcs
from .endpoints import Server
from .errors import UserError
from .limits.server import Limits, build_limits
from .listings.cluster import ClusterListings
from .listings.disk import SavedListings
from .listings.identity import server_identity
from .listings.sources import Listings
from .listings.ttls import ListingTTLs
from .model import Fetcher, MetadataSource, Searcher
from .protocols import build_asking_fetcher, build_fetcher, build_metadata, build_searcher
from .read.cluster import ClusterReads
from .read.convert.deidentify import DeidForms
from .read.convert.forms import Conversions, FormFetcher, TranscodingFetcher
from .read.derived import DerivedCache
from .read.disk import DiskCache
from .read.placement import AS_LISTED
from .read.store import Around, ReadSettings, Store
from .retrieve.storescp import Receivers
from .stats import Stats
from .transport.auth import make_auth
from .transport.dimse import pace_associations
from .transport.http import build_client
from .transport.pace import Pace
from .tree.inodes import UidIndex
from .tree.presenter import DeidPresenter, Presenter
from .tree.seriesviews import AnalysisParts
from .tree.tree import StoreView, Tree
from .tree.viewdirs import ViewParts


@dataclass
class Remote:
    """One configured server and what the registry built for it."""

    server: Server
    searcher: Searcher
    fetcher: Fetcher
    metadata: MetadataSource | None
    client: httpx.AsyncClient  # the server's HTTP client: for the protocol objects built here only


def make_client(server: Server, pace: Pace | None = None) -> httpx.AsyncClient:
    """The HTTP client of ``server``, authenticating as its config says
    (and charging ``pace``, the server's limits)."""
    return build_client(server, make_auth(server), pace=pace)


async def open_remotes(config: Config, stack: AsyncExitStack, limits: Limits | None = None) -> dict[str, Remote]:
    """One Remote per server; everything opened is closed by ``stack``.  The
    storage receivers of C-MOVE servers are listening when this returns (a
    port that cannot be had is a UserError here, before anything is mounted).
    With ``limits``, every request and byte to each server is charged to its own."""
    remotes = {}
    receivers = Receivers()
    stack.push_async_callback(receivers.aclose)
    for name, server in config.servers.items():
        pace = None
        if limits is not None:
            pace = limits.of(name).pace()
            pace_associations(server, pace)
        client = make_client(server, pace)
        stack.push_async_callback(client.aclose)
        searcher = build_searcher(server, client)
        stack.push_async_callback(searcher.aclose)
        fetcher = build_fetcher(server, client, receivers)
        stack.push_async_callback(fetcher.aclose)
        remotes[name] = Remote(server, searcher, fetcher, build_metadata(server, client), client)
    await receivers.start()
    return remotes


async def open_cluster(settings: SharedConfig | None, stack: AsyncExitStack) -> Cluster | None:
    """The cluster tier (None without ``[cache.shared]``), closed by ``stack``.
    Nothing is asked of Redis yet: a Redis that is down does not stop a mount."""
    if settings is None:
        return None
    cluster = build_cluster(settings)
    stack.push_async_callback(cluster.tier.link.aclose)
    return cluster


def build_server_limits(config: Config, cluster: Cluster | None) -> Limits:
    """Each server's limits (counting only, for a server without), in one
    bucket per server and limit for the whole cluster when there is a shared tier."""
    link = cluster.tier.link if cluster is not None else None
    prefix = config.cache.shared.prefix if config.cache.shared is not None else "trolleyfs"
    return Limits(
        {name: build_limits(name, config.limits.get(name), link=link, prefix=prefix) for name in config.servers}
    )


async def open_audit(config: Config, stack: AsyncExitStack) -> AuditTrail | None:
    """The audit trail of ``[audit]`` (None without), its sinks open (a file
    that cannot be opened stops the start here), closed by ``stack`` (what is
    queued written first, for a few seconds at most)."""
    if config.audit is None:
        return None
    trail = AuditTrail(config.audit)
    await trio.to_thread.run_sync(trail.start)

    async def close() -> None:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(trail.close)

    stack.push_async_callback(close)
    return trail


# ---------------------------------------------------------------- config -> settings of the parts


def read_settings(cache: CacheConfig) -> ReadSettings:
    return ReadSettings(
        memory_bytes=cache.memory_mb * 2**20,
        readahead_series=cache.readahead_series if cache.readahead == "series" else 0,
    )


def disk_cache(cache: CacheConfig) -> DiskCache | None:
    return DiskCache(cache.disk_dir, cache.disk_mb * 2**20) if cache.disk_dir else None


def listing_ttls(cache: CacheConfig) -> ListingTTLs:
    return ListingTTLs(studies=cache.folder_ttl, series=cache.study_ttl, instances=cache.series_ttl)


def deid_forms(config: Config) -> DeidForms | None:
    """The de-identified forms of a ``[deidentify]`` mount (None without one)."""
    c = config.deidentify
    if c is None:
        return None
    deid = Deidentifier(c.key_bytes(), c.options, include_burned_in=c.include_burned_in)
    return DeidForms(deid, keep_originals=c.keep_originals)


def keeps_listings(config: Config) -> bool:
    """Whether listings (original identities) may be kept on disk and in the
    shared tier: not in a de-identified mount, unless it keeps originals."""
    return config.deidentify is None or config.deidentify.keep_originals


def conversions(config: Config, remotes: Mapping[str, Remote], deid: DeidForms | None = None) -> Conversions:
    """Each server's Fetcher as the Store sees it: objects as stored, or in
    the transfer syntaxes its folders ask for; with ``deid``, each of those
    de-identified too (converted first)."""
    wanted: dict[str, set[str]] = {}
    for f in config.folders:
        if f.transfer_syntax:
            wanted.setdefault(f.server, set()).add(f.transfer_syntax)
    out = Conversions({})
    for name, r in remotes.items():
        forms: dict[str, Fetcher] = {}
        for ts in sorted(wanted.get(name, ())):
            t = TranscodingFetcher(r.fetcher, build_asking_fetcher(r.server, r.client, ts), out.converter, ts)
            out.transcoders.append(t)
            forms[ts] = t
        if deid is not None:
            for ts in ["", *sorted(wanted.get(name, ()))]:
                form, fetcher = deid.fetcher(name, forms.get(ts, r.fetcher), ts)
                forms[form] = fetcher
        out.fetchers[name] = FormFetcher(r.fetcher, forms) if forms else r.fetcher
    return out


def build_tree(
    config: Config,
    searchers: Mapping[str, Searcher],
    reader: StoreView,
    stats: Stats,
    index: UidIndex,
    views: ViewParts | None = None,
    cluster: ClusterListings | None = None,
    deid: DeidForms | None = None,
) -> Tree:
    """The tree of ``config`` over ``searchers`` (its listings kept on disk
    with ``disk_dir``, shared through ``cluster``) and ``reader``.  With
    ``[deidentify]`` it shows what ``deid`` makes of the listings (made here
    if not given) and keeps no listing on disk unless originals may be kept."""
    cache = config.cache
    ttls = listing_ttls(cache)
    keep = keeps_listings(config)
    saved = SavedListings(cache.disk_dir) if cache.disk_dir and keep else None  # listings kept beside the objects
    identities = {name: server_identity(server) for name, server in config.servers.items()}
    listings = Listings(searchers, stats, saved, ttls, cluster=cluster if keep else None, identities=identities)
    deid = deid or deid_forms(config)
    presenter = DeidPresenter(deid.deid, deid.excluded) if deid is not None else Presenter()
    return Tree(config.folders, config.names, ttls, listings, reader, stats, index, views, presenter)


ANALYSIS_VIEWS = frozenset({"nifti", "preview"})
NIFTI_AT_ONCE = 1  # conversions at once, reading their series included (each holds its series in memory)
PREVIEWS_AT_ONCE = 2  # previews rendered at once (one image each)


def analysis_parts(config: Config, store: Store, nursery: trio.Nursery) -> AnalysisParts | None:
    """What the NIfTI and preview views are made with (None when no folder
    asks for them): the engines, and a derived-objects cache of half the
    memory cache's size beside it, on disk in the disk cache itself."""
    kinds = {v for f in config.folders for v in f.views}
    if not kinds & ANALYSIS_VIEWS:
        return None
    nifti = None
    if "nifti" in kinds:
        binary = find_dcm2niix()
        if binary is None:
            raise UserError("a folder asks for the nifti view, but dcm2niix is not installed (pip install dcm2niix)")
        nifti = Dcm2niix(binary, concurrency=NIFTI_AT_ONCE)
    derived = DerivedCache(read_settings(config.cache).memory_bytes // 2, store.caches, nursery)
    return AnalysisParts(derived, nifti, Previewer(PREVIEWS_AT_ONCE), trio.CapacityLimiter(NIFTI_AT_ONCE))


# ---------------------------------------------------------------- the core


@dataclass
class Core:
    """What a front end serves: the tree (and its inode table), over the
    Store, with the mount's counters."""

    config: Config
    stats: Stats
    store: Store
    tree: Tree
    limits: Limits | None = None  # each server's limits (and what they counted and waited)
    audit: AuditTrail | None = None  # the audit trail, for the front ends to record into

    def op_deadline(self) -> float:
        """How long one filesystem operation may take, all retries included."""
        return max((s.timeout * (s.retries + 2) for s in self.config.servers.values()), default=60.0)


async def open_core(
    config: Config,
    stack: AsyncExitStack,
    nursery: trio.Nursery,
    index: UidIndex | None = None,
    on_readahead: Callable[[str, bytes], None] = lambda uid, data: None,
) -> Core:
    """The core of a mount of ``config``; what it opens is closed by ``stack``,
    its background tasks run in ``nursery``.  ``index`` is filled with the
    instance files the front end has handed out; ``on_readahead(key, data)``
    sees readahead data as it arrives (the FUSE front end pushes it into the
    kernel's page cache)."""
    stats = Stats()
    audit = await open_audit(config, stack)
    cluster = await open_cluster(config.cache.shared, stack)
    limits = build_server_limits(config, cluster)
    stats.sections["limits"] = limits.stats
    if audit is not None:
        stats.sections["audit"] = audit.stats
    remotes = await open_remotes(config, stack, limits)
    deid = deid_forms(config)
    converted = conversions(config, remotes, deid)
    placement = deid.placement if deid is not None else AS_LISTED
    store = Store(
        read_settings(config.cache),
        converted.fetchers,
        stats,
        nursery,
        Around(
            disk=disk_cache(config.cache),
            on_readahead=on_readahead,
            cluster=ClusterReads(cluster, placement) if cluster else None,
            placement=placement,
            limits=limits,
        ),
    )
    # a de-identified mount's documents are built from its de-identified objects, never the server's /metadata
    sources = {n: r.metadata for n, r in remotes.items() if r.metadata is not None and deid is None}
    counters = converted.stats if deid is None else lambda: converted.stats() | deid.stats()
    views = ViewParts(Metadata(sources, store), Crcs(), counters, analysis_parts(config, store, nursery))
    listings = ClusterListings(cluster, listing_ttls(config.cache)) if cluster and keeps_listings(config) else None
    searchers = {n: r.searcher for n, r in remotes.items()}
    if deid is not None:
        deid.bind(store.get)
    index = index if index is not None else UidIndex()  # (an empty index is falsy: it has a length)
    tree = build_tree(config, searchers, store, stats, index, views, listings, deid)
    return Core(config, stats, store, tree, limits, audit)
