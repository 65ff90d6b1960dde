"""The whole tree: a root with one directory per configured folder,
``by-uid``, the path queries (``by-accession``, ``by-patient``, ``query``)
and ``.trolleyfs``, over the inode table the kernel sees."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from ..config import VIEWS_DIR, Config
from ..listings.cluster import ClusterListings
from ..listings.disk import SavedListings
from ..listings.sources import Listings
from ..model import Searcher
from ..stats import Stats
from .base import StaticDir
from .context import Context, Reader
from .control import control_dir
from .dirs import ByUidDir, FolderDir
from .inodes import InodeTable, UidIndex
from .querydirs import query_roots
from .views import ViewParts, views_dir


class StoreView(Reader, Protocol):
    """What the tree uses of the Store: reads, sizes and its stats."""

    def stats(self) -> dict[str, object]: ...


class Tree:
    def __init__(
        self,
        config: Config,
        searchers: Mapping[str, Searcher],
        store: StoreView,
        stats: Stats,
        index: UidIndex,
        views: ViewParts | None = None,
        shared: ClusterListings | None = None,
    ) -> None:
        """``index`` is filled as the kernel learns about instance files (the
        page-cache pusher reads it); ``views`` make the ``views`` directory of
        the folders that ask for views; ``shared``: searches shared by a
        cluster of mounts."""
        self.mount_time = time.time()
        c = config.cache
        saved = SavedListings(c.disk_dir) if c.disk_dir else None  # listings kept beside the objects
        ttls = {"studies": c.folder_ttl, "series": c.study_ttl, "instances": c.series_ttl}
        ctx = Context(
            names=config.names,
            folder_ttl=c.folder_ttl,
            study_ttl=c.study_ttl,
            series_ttl=c.series_ttl,
            mount_time=self.mount_time,
            listings=Listings(searchers, stats, saved, ttls, shared=shared),
            reader=store,
        )
        self.root = StaticDir("", None, self.mount_time)
        self.inodes = InodeTable(self.root, index)
        folders = [FolderDir(f, self.root, replace(ctx, form=f.transfer_syntax or "")) for f in config.folders]
        self.root.add(folders)
        self.root.add([ByUidDir(self.root, ctx)])
        self.root.add(query_roots(self.root, ctx))
        if views is not None and any(f.views for f in config.folders):
            self.root.add([views_dir(self.root, VIEWS_DIR, folders, views, c.study_ttl, c.series_ttl)])

        def more_stats() -> dict[str, object]:
            return store.stats() | (views.stats() if views is not None else {})

        self.root.add([control_dir(self.root, self.mount_time, stats, more_stats, self.inodes.__len__)])
