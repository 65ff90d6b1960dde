"""TEMPORARY, for the lead to replace (issue 23): the core the WebDAV front end
serves, built as ``mount.serve()`` builds it before ``Operations(...)``, and
the config read with its ``[webdav]`` table.

- :func:`open_core` becomes ``mount.open_core(config, stack, nursery) -> Core``
  (the one composition root both front ends use); the WebDAV server needs of
  it ``tree.root``, ``stats``, ``op_deadline`` and ``store.drain()``.
- :func:`load` becomes ``config.load``, once ``Config`` has a ``webdav:
  WebdavConfig | None`` field parsed by :func:`.settings.parse_webdav`; until
  then ``config.parse`` refuses the unknown top-level key, so the table is
  taken out here and the rest handed to ``config.parse`` re-written as TOML.
- :func:`probe_or_fail` is ``mount._probe_or_fail``.

Nothing here is WebDAV-specific except :func:`load`'s handling of the table.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import stat
import tomllib
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from ..config import Config, _has_inline_secret, parse
from ..config import load as load_config
from ..errors import ConfigError, UserError
from ..mount import op_deadline
from ..read.shared import SharedReads
from ..read.store import Store
from ..servers import open_remotes
from ..shared.listings import SharedListings
from ..shared.settings import shared_warnings
from ..shared.wiring import open_shared
from ..stats import Stats
from ..tomltable import Table
from ..tree.inodes import UidIndex
from ..tree.saved import holds as saved_listings_held
from ..tree.tree import Tree
from ..views.wiring import transcoding, views
from .settings import WebdavConfig, parse_webdav

log = logging.getLogger("trolleyfs.webdav")


@dataclass
class Core:
    tree: Tree
    store: Store
    stats: Stats
    op_deadline: float  # seconds one operation may take, all retries included


async def open_core(config: Config, stack: AsyncExitStack, nursery: trio.Nursery) -> Core:
    """The remotes, caches, read path and tree of ``config`` (what mount.serve
    builds, without the FUSE page pusher: there is no kernel page cache here)."""
    stats = Stats()
    remotes = await open_remotes(config, stack)
    shared = await open_shared(config.cache.shared, stack)
    c = config.cache
    forms = transcoding(config, remotes)
    reads = SharedReads(shared.tier, shared.leases) if shared else None
    store = Store(c, forms.fetchers, stats, nursery, shared=reads)
    parts = views(remotes, store, forms)
    listings = SharedListings(shared.tier, shared.leases, c.folder_ttl, c.study_ttl, c.series_ttl) if shared else None
    searchers = {n: r.searcher for n, r in remotes.items()}
    tree = Tree(config, searchers, store, stats, UidIndex(), views=parts, shared=listings)
    return Core(tree, store, stats, op_deadline(config))


async def probe_or_fail(config: Config, warn: Callable[[str], None]) -> None:
    """Each server's search must answer (or be kept offline by the disk cache)."""
    from ..probe import probe

    disk = config.cache.disk_dir
    for r in await probe(config, retrieve=False):
        if r.ok:
            continue
        if not r.reachable and disk and saved_listings_held(disk, r.server):
            warn(
                f"server {r.server!r} ({r.protocol} {r.where}) is unreachable ({r.detail}): serving offline; "
                "what the disk cache holds is served, the rest fails until the server answers"
            )
            continue
        raise UserError(f"server {r.server!r} ({r.protocol} {r.where}) failed: {r.detail}")


def load(path: str) -> tuple[Config, WebdavConfig]:
    """The config at ``path`` and its ``[webdav]`` table (defaults if none)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return load_config(path), WebdavConfig()  # load() says what is wrong, in its words
    if "webdav" not in data:
        return load_config(path), WebdavConfig()
    wd_data = data.pop("webdav")
    wd = parse_webdav(Table(str(p), "webdav", wd_data))
    cfg = parse(_toml(data), str(p))
    warnings = []
    readable = bool(p.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))
    inline_user_pw = any("password" in u for u in wd_data.get("users", {}).values())
    if readable and (_has_inline_secret(data) or inline_user_pw):
        warnings.append(
            f"{p}: holds a password or token and can be read by others: chmod 600 it, "
            "or use password_env / password_file"
        )
    if cfg.cache.shared is not None:
        inline = "password" in ((data.get("cache") or {}).get("shared") or {})
        warnings += shared_warnings(cfg.cache.shared, str(p), inline, readable)
    return replace(cfg, warnings=tuple(warnings)), wd


def _toml(value: Any, top: bool = True) -> str:
    """``value`` as TOML: a top-level table as ``key = value`` lines, every
    nested table inline (enough to hand a parsed document to config.parse)."""
    if top:
        return "".join(f"{json.dumps(k)} = {_toml(v, False)}\n" for k, v in value.items())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v, False) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v, False)}" for k, v in value.items()) + "}"
    raise ConfigError("<config>", None, f"cannot re-write {type(value).__name__} values")
