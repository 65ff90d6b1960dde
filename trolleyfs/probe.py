"""``trolleyfs check`` and the mount's pre-flight: can each server be searched
(and, for ``check``, read) with the credentials given?  One row per server and
role; the search row is the same probe for both."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from .cluster.settings import SharedConfig
from .config import Config
from .errors import TrolleyError, Unavailable, UserError
from .idle import idle_deadline, overall_bound
from .limits.redis_gcra import check_limits_script
from .limits.settings import LimitsConfig
from .listings.disk import holds as saved_listings_held
from .listings.identity import server_identity
from .model import Instance, Query, Study
from .transport.http_errors import TLSUntrusted
from .wiring import Remote, open_remotes

PROBE_SERIES = 3  # series of the probed study tried for an instance to read


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
    """One ``search`` row per server (a one-study search: exactly what a mount
    probes before mounting, so ``check`` and ``mount`` agree), and with
    ``retrieve`` one ``retrieve`` row: an instance found by listing that
    study's series, then read.  A listing that fails on the way is a server
    problem with that study, reported in the row, not a failed retrieve.
    Servers whose reads need the PACS to connect back (C-MOVE) get their
    retrieve row in the pre-flight too: only a read proves that works."""
    rows: list[Row] = []
    async with AsyncExitStack() as stack:
        remotes = await open_remotes(config, stack)
        for name, remote in remotes.items():
            srv = remote.server
            deadline = srv.timeout * (srv.retries + 2)
            t0 = time.monotonic()
            studies: list[Study] = []
            try:
                with idle_deadline(deadline, overall_bound(deadline)):
                    studies = await remote.searcher.find_studies(Query(limit=1))
                detail = f"answered ({len(studies)} study)" if studies else "answered (no studies)"
                rows.append(
                    Row(name, "search", srv.search.protocol, srv.search.where(), True, detail, time.monotonic() - t0)
                )
            except (TrolleyError, trio.TooSlowError) as exc:
                rows.append(
                    Row(
                        name,
                        "search",
                        srv.search.protocol,
                        srv.search.where(),
                        False,
                        _failure(exc, deadline),
                        time.monotonic() - t0,
                        not _unreachable(exc),
                    )
                )
            if retrieve or srv.retrieve.reads_need_callback:
                rows.append(await _probe_retrieve(remote, studies[0] if studies else None, deadline))
    if retrieve and config.cache.shared is not None:
        rows.append(await _probe_shared(config.cache.shared))
    if retrieve:
        rows += await _protection_rows(config)
    return rows


async def _protection_rows(config: Config) -> list[Row]:
    """What ``check`` says of the limits and the audit: the limits each server
    will be held to (a row each), whether the cluster's Redis runs the limits'
    script, and where the audit goes.  Nothing is opened or written."""
    rows = [
        Row(name, "limits", "", "", True, (config.limits.get(name) or LimitsConfig()).describe(), 0.0)
        for name in config.servers
    ]
    shared = config.cache.shared
    rated = any(lim.bytes_per_s is not None or lim.requests_per_s is not None for lim in config.limits.values())
    if shared is not None and rated:  # the rates' buckets are in Redis
        from .cluster.setup import build_shared

        t0 = time.monotonic()
        link = build_shared(shared).tier.link
        try:
            ok, detail = await check_limits_script(link, shared.prefix)
        finally:
            await link.aclose()
        rows.append(Row("shared", "limits", "redis", shared.where(), ok, detail, time.monotonic() - t0))
    if config.audit is not None:
        rows.append(Row("audit", "audit", "", "", True, config.audit.describe(), 0.0))
    return rows


async def preflight(config: Config, warn: Callable[[str], None]) -> None:
    r"""Before serving: each server's search must answer (a wrong URL or
    password fails here, before anything is mounted); a server that cannot be
    reached but whose listings the disk cache keeps is served offline, with
    one ``warn``\ ing."""
    disk = config.cache.disk_dir
    for r in await probe(config, retrieve=False):
        if r.ok:
            continue
        if not r.reachable and disk and saved_listings_held(disk, server_identity(config.servers[r.server])):
            warn(
                f"server {r.server!r} ({r.protocol} {r.where}) is unreachable ({r.detail}): mounting offline; "
                "what the disk cache holds is served, the rest fails with EIO until the server answers"
            )
            continue
        raise UserError(f"server {r.server!r} ({r.protocol} {r.where}) failed: {r.detail}")


async def _probe_shared(shared: SharedConfig) -> Row:
    """The shared cache tier's row: a write, a read and a delete."""
    from .cluster.setup import check_shared

    t0 = time.monotonic()
    ok, detail = await check_shared(shared)
    kind = "redis-cluster" if shared.cluster else "redis"
    return Row("shared", "cache", kind, shared.where(), ok, detail, time.monotonic() - t0)


def _unreachable(exc: BaseException) -> bool:
    """A failure that says nothing about the config: the server is down or too slow."""
    return isinstance(exc, (Unavailable, trio.TooSlowError)) and not isinstance(exc, TLSUntrusted)


def _failure(exc: BaseException, deadline: float) -> str:
    return str(exc) if isinstance(exc, TrolleyError) else f"no answer within {deadline:.0f} s"


async def _probe_retrieve(remote: Remote, study: Study | None, deadline: float) -> Row:
    srv = remote.server
    t0 = time.monotonic()

    def row(ok: bool, detail: str) -> Row:
        return Row(srv.name, "retrieve", srv.retrieve.protocol, srv.retrieve.where(), ok, detail, time.monotonic() - t0)

    if study is None:
        return row(True, "not tried (no instance found to read)")
    try:
        with idle_deadline(deadline, overall_bound(deadline)):
            instance = await _first_instance(remote, study)
    except (TrolleyError, trio.TooSlowError) as exc:
        return row(True, f"not tried (no instance could be listed to read: {_failure(exc, deadline)})")
    if instance is None:
        return row(True, "not tried (no instance found to read)")
    t0 = time.monotonic()
    try:
        with idle_deadline(deadline, overall_bound(deadline)):
            data = await remote.fetcher.fetch_instance(instance.ref)
    except (TrolleyError, trio.TooSlowError) as exc:
        return row(False, _failure(exc, deadline))
    return row(True, f"read one instance ({len(data)} bytes)")


async def _first_instance(remote: Remote, study: Study) -> Instance | None:
    """An instance of ``study``: from its first series that lists one (a few
    are tried; the first listing error is raised if none did)."""
    error: TrolleyError | None = None
    for series in (await remote.searcher.find_series(study.uid))[:PROBE_SERIES]:
        try:
            instances = await remote.searcher.find_instances(study.uid, series.uid)
        except TrolleyError as exc:
            error = error or exc
            continue
        if instances:
            return instances[0]
    if error is not None:
        raise error
    return None


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
        lines.append("  ".join([*cells, row[5].rjust(6), row[4]]))
    return "\n".join(lines)
