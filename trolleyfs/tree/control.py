"""The control files: ``.trolleyfs/stats.json`` (counters, cache and prefetch
state, as JSON; rendered afresh at each read)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from ..rootnames import CONTROL_DIR, STATS_FILE
from ..stats import Stats
from .base import DirNode, FileNode, StaticDir


class StatsFile(FileNode):
    direct_io = True
    attr_timeout = 0.0

    def __init__(
        self,
        parent: DirNode,
        mtime: float,
        stats: Stats,
        cache_stats: Callable[[], Mapping[str, object]],
        inode_count: Callable[[], int],
    ) -> None:
        super().__init__(STATS_FILE, parent, mtime)
        self._stats, self._cache_stats, self._inode_count = stats, cache_stats, inode_count

    def render(self) -> bytes:
        doc = self._stats.as_dict() | dict(self._cache_stats()) | {"inodes": self._inode_count()}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    def known_size(self) -> int | None:
        return len(self.render())

    async def read_all(self) -> bytes:
        return self.render()


def control_dir(
    root: DirNode,
    mtime: float,
    stats: Stats,
    cache_stats: Callable[[], Mapping[str, object]],
    inode_count: Callable[[], int],
) -> StaticDir:
    """The ``.trolleyfs`` directory, with its files."""
    control = StaticDir(CONTROL_DIR, root, mtime)
    control.add([StatsFile(control, mtime, stats, cache_stats, inode_count)])
    return control
