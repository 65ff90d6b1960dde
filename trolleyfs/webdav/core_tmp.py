"""TEMPORARY (folded into :mod:`trolleyfs.config` when ``Config`` holds its
``[webdav]`` table): the config read with its ``[webdav]`` table, which
``config.parse`` does not know yet: the table is taken out here and the rest
handed to ``config.parse`` re-written as TOML."""

from __future__ import annotations

import datetime as dt
import json
import logging
import stat
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..cluster.settings import shared_warnings
from ..config import Config, _has_inline_secret, parse
from ..config import load as load_config
from ..errors import ConfigError
from ..tomltable import Table
from .settings import WebdavConfig, parse_webdav

log = logging.getLogger("trolleyfs.webdav")


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
