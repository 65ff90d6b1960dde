"""The whole tree: a root with one directory per configured folder,
``by-uid``, the path queries (``by-accession``, ``by-patient``, ``query``),
``views`` and ``.trolleyfs``, over the inode table the kernel sees.  It is
handed its collaborators (the listings, the reader, the views' parts, the
presenter of what it lists): it reads no config."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from ..folders import Folder
from ..listings.sources import Listings
from ..listings.ttls import ListingTTLs
from ..rootnames import VIEWS_DIR
from ..stats import Stats
from .base import StaticDir
from .context import Context, Reader
from .control import control_dir
from .dirs import ByUidDir, FolderDir
from .inodes import InodeTable, UidIndex
from .presenter import Presenter
from .querydirs import query_roots
from .viewdirs import ViewParts, views_dir


class StoreView(Reader, Protocol):
    """What the tree uses of the Store: reads, sizes and its stats."""

    def stats(self) -> dict[str, object]: ...


class Tree:
    def __init__(  # noqa: PLR0913 - the tree's collaborators, each handed in by the composition root
        self,
        folders: Sequence[Folder],
        names: Mapping[str, str],
        ttls: ListingTTLs,
        listings: Listings,
        store: StoreView,
        stats: Stats,
        index: UidIndex,
        views: ViewParts | None = None,
        presenter: Presenter | None = None,
    ) -> None:
        """``folders``: the configured folders; ``names``: the name template of
        each level; ``listings``: where searches are asked (and kept);
        ``index`` is filled as the kernel learns about instance files (the
        page-cache pusher reads it); ``views`` make the ``views`` directory of
        the folders that ask for views; ``presenter`` says what is shown of
        what is listed (by default: all of it, as listed)."""
        self.mount_time = time.time()
        present = presenter or Presenter()
        ctx = Context(
            names=names,
            ttls=ttls,
            mount_time=self.mount_time,
            listings=listings,
            reader=store,
            form=present.form(""),
            presenter=present,
        )
        self.root = StaticDir("", None, self.mount_time)
        self.inodes = InodeTable(self.root, index)
        folder_dirs = [
            FolderDir(f, self.root, replace(ctx, form=present.form(f.transfer_syntax or ""))) for f in folders
        ]
        self.root.add(folder_dirs)
        self.root.add([ByUidDir(self.root, ctx)])
        self.root.add(query_roots(self.root, ctx))
        if views is not None and any(f.views for f in folders):
            self.root.add([views_dir(self.root, VIEWS_DIR, folder_dirs, views, ttls.series, ttls.instances)])

        def more_stats() -> dict[str, object]:
            return store.stats() | (views.stats() if views is not None else {})

        self.root.add([control_dir(self.root, self.mount_time, stats, more_stats, self.inodes.__len__)])
