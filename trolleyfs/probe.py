"""``trolleyfs check``: can each server be searched and read with the
credentials given?  One row per server and role."""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from .config import Config
from .errors import TrolleyError, Unavailable
from .model import Query
from .servers import open_remotes
from .shared.settings import SharedConfig
from .transport.http_errors import TLSUntrusted


@dataclass
class Row:
    """One line of ``trolleyfs check``: one server in one role."""

    server: str
    role: str  # search | retrieve
    protocol: str
    where: str
    ok: bool
    detail: str
    seconds: float
    reachable: bool = True  # False: a timeout, refused connection or 5xx (may work later)


async def probe(config: Config, retrieve: bool = True) -> list[Row]:
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        remotes = await open_remotes(config, stack)
        for name, remote in remotes.items():
            srv = remote.server
            deadline = srv.timeout * (srv.retries + 2)
            t0 = time.monotonic()
            instance = None
            try:
                with trio.fail_after(deadline):
                    studies = await remote.searcher.find_studies(Query(limit=1))
                    detail = f"answered ({len(studies)} study)" if studies else "answered (no studies)"
                    if studies and (retrieve or srv.retrieve.reads_need_callback):
                        series = await remote.searcher.find_series(studies[0].uid)
                        if series:
                            insts = await remote.searcher.find_instances(studies[0].uid, series[0].uid)
                            instance = insts[0] if insts else None
                rows.append(Row(name, "search", srv.search.protocol, srv.search.where(), True, detail,
                                time.monotonic() - t0))  # fmt: skip
            except (TrolleyError, trio.TooSlowError) as exc:
                msg = str(exc) if isinstance(exc, TrolleyError) else f"no answer within {deadline:.0f} s"
                rows.append(Row(name, "search", srv.search.protocol, srv.search.where(), False, msg,
                                time.monotonic() - t0, not _unreachable(exc)))  # fmt: skip
            if not (retrieve or srv.retrieve.reads_need_callback):
                continue
            t0 = time.monotonic()
            if instance is None:
                rows.append(Row(name, "retrieve", srv.retrieve.protocol, srv.retrieve.where(), True,
                                "not tried (no instance found to read)", 0.0))  # fmt: skip
                continue
            try:
                with trio.fail_after(deadline):
                    data = await remote.fetcher.fetch_instance(instance.ref)
                rows.append(Row(name, "retrieve", srv.retrieve.protocol, srv.retrieve.where(), True,
                                f"read one instance ({len(data)} bytes)", time.monotonic() - t0))  # fmt: skip
            except (TrolleyError, trio.TooSlowError) as exc:
                msg = str(exc) if isinstance(exc, TrolleyError) else f"no answer within {deadline:.0f} s"
                rows.append(Row(name, "retrieve", srv.retrieve.protocol, srv.retrieve.where(), False, msg,
                                time.monotonic() - t0))  # fmt: skip
    if retrieve and config.cache.shared is not None:
        rows.append(await _probe_shared(config.cache.shared))
    return rows


async def _probe_shared(shared: SharedConfig) -> Row:
    """The shared cache tier's row: a write, a read and a delete."""
    from .shared.wiring import check_shared

    t0 = time.monotonic()
    ok, detail = await check_shared(shared)
    kind = "redis-cluster" if shared.cluster else "redis"
    return Row("shared", "cache", kind, shared.where(), ok, detail, time.monotonic() - t0)


def _unreachable(exc: BaseException) -> bool:
    """A failure that says nothing about the config: the server is down or too slow."""
    return isinstance(exc, (Unavailable, trio.TooSlowError)) and not isinstance(exc, TLSUntrusted)


def format_rows(rows: list[Row]) -> str:
    head = ("server", "role", "protocol", "endpoint", "result", "time")
    table = [head] + [
        (r.server, r.role, r.protocol, r.where, ("ok: " if r.ok else "FAILED: ") + r.detail, f"{r.seconds:.2f}s")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 2)]
    lines = []
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=False)]
        lines.append("  ".join(cells + [row[5].rjust(6), row[4]]))
    return "\n".join(lines)
