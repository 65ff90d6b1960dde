"""The kernel's view of the tree: inode numbers for the nodes it has looked up,
with its lookup counts, freed when it forgets them; and, for the files among
them, which inodes show which SOP instance (to push readahead data into their
page cache)."""

from __future__ import annotations

from ..errors import NotFound
from .base import Node

ROOT_INO = 1  # the kernel never forgets the root


class UidIndex:
    """An instance's cache key (its SOPInstanceUID, or ``<uid>@<form>``) -> the
    inodes of the files showing it (one per path)."""

    def __init__(self) -> None:
        self._inodes: dict[str, set[int]] = {}

    def add(self, uid: str, ino: int) -> None:
        self._inodes.setdefault(uid, set()).add(ino)

    def discard(self, uid: str, ino: int) -> None:
        inodes = self._inodes.get(uid)
        if inodes is not None:
            inodes.discard(ino)
            if not inodes:
                del self._inodes[uid]

    def inodes_of(self, uid: str) -> list[int]:
        return sorted(self._inodes.get(uid, ()))

    def __len__(self) -> int:
        """How many instances have a file the kernel knows."""
        return len(self._inodes)


class InodeTable:
    """Inode numbers for nodes.  A node keeps its number while the kernel
    counts lookups of it, however often its parent is listed again."""

    def __init__(self, root: Node, index: UidIndex) -> None:
        self.root = root
        self._index = index
        self._nodes: dict[int, Node] = {ROOT_INO: root}
        self._inos: dict[Node, int] = {root: ROOT_INO}
        self._lookups: dict[int, int] = {}
        self._next_ino = ROOT_INO + 1

    def remember(self, node: Node) -> int:
        """The inode of ``node`` (given one if it has none), counting one kernel lookup."""
        ino = self._inos.get(node)
        if ino is None:
            ino = self._next_ino
            self._next_ino += 1
            self._nodes[ino], self._inos[node] = node, ino
            key = node.content_key
            if key is not None:
                self._index.add(key, ino)
        if ino != ROOT_INO:
            self._lookups[ino] = self._lookups.get(ino, 0) + 1
        return ino

    def forget(self, ino: int, n: int) -> None:
        """The kernel dropped ``n`` lookups of ``ino``; at zero the number is freed."""
        if ino == ROOT_INO or ino not in self._lookups:
            return
        left = self._lookups[ino] - n
        if left > 0:
            self._lookups[ino] = left
            return
        del self._lookups[ino]
        node = self._nodes.pop(ino)
        del self._inos[node]
        key = node.content_key
        if key is not None:
            self._index.discard(key, ino)

    def node(self, ino: int) -> Node:
        try:
            return self._nodes[ino]
        except KeyError:
            raise NotFound(f"unknown inode {ino}") from None

    def ino_of(self, node: Node) -> int | None:
        """The inode of ``node`` if the kernel knows it."""
        return self._inos.get(node)

    def lookups(self, ino: int) -> int:
        """The kernel's lookup count of ``ino`` (0 for the root and unknown inodes)."""
        return self._lookups.get(ino, 0)

    def __len__(self) -> int:
        return len(self._nodes)
