"""``trolleyfs check`` and the mount's pre-flight: can each server be searched
and read with the credentials given?  One row per server and role; both
commands run the same probes, so ``check`` and ``mount`` agree.

A row is ``ok`` only when its probe ran and passed; ``skipped`` when it could
not run (the search failed, or found nothing to read); ``FAILED``; or
``offline``: the server cannot be reached, but the disk cache keeps listings
of it (of this very server: they are kept by its identity), so a mount serves
it from there.  Only an outage counts as unreachable (a refused connection, a
timeout, a DNS failure, a 5xx): a TLS failure or a 4xx is an answer, and a
mistake to fix."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import trio

from .cluster.settings import SharedConfig
from .config import Config
from .endpoints import Server
from .errors import ProtocolError, RemoteError, TrolleyError, Unavailable
from .idle import idle_deadline, overall_bound
from .limits.redis_gcra import check_limits_script
from .limits.settings import LimitsConfig
from .listings.disk import newest_kept
from .listings.identity import server_identity
from .model import Instance, Query, Study
from .stats import Offline, human_age
from .transport.http_errors import Busy, TLSFailed
from .wiring import Remote, open_remotes

PROBE_SERIES = 3  # series of the probed study tried for an instance to read
OK, FAILED, SKIPPED, OFFLINE = "ok", "FAILED", "skipped", "offline"
# for an HTTP 400 or 404 to a search: the URL is most likely not the root the protocol wants
URL_HINTS = {
    "qido-rs": "is the url the server's DICOMweb root? For Orthanc that is http://HOST:8042/dicom-web, "
    "not its REST root",
    "wado-rs": "is the url the server's DICOMweb root? For Orthanc that is http://HOST:8042/dicom-web",
    "wado-uri": "is the url the server's WADO-URI endpoint? For Orthanc that is http://HOST:8042/wado",
}


class ServerFailed(TrolleyError):
    """A server did not pass the pre-flight: one line, exit 1 (not a mistake
    on the command line, which is exit 2)."""


@dataclass
class Row:
    """One line of ``trolleyfs check``: one server in one role."""

    server: str
    role: str  # search | retrieve | cache
    protocol: str
    where: str
    state: str  # OK, FAILED, SKIPPED or OFFLINE
    detail: str
    seconds: float
    reachable: bool = True  # False: a timeout, refused connection or 5xx (may work later)
    fatal: bool = True  # a failure that stops a mount (not: one object read that failed its checks)

    @property
    def ok(self) -> bool:
        return self.state == OK


async def probe(config: Config, retrieve: bool = True, services: bool = True) -> list[Row]:
    """One ``search`` row per server (a one-study search) and, with
    ``retrieve``, one ``retrieve`` row: an instance found by listing that
    study's series, then read (servers whose reads need the PACS to connect
    back, C-MOVE, always get it: only a read proves that works).  A listing
    that fails on the way is a server problem with that study: the retrieve
    row is then skipped, saying why.  With ``services`` (``check``; not the
    pre-flight of a mount), rows for the cluster tier, the limits each server
    is held to and the audit trail.  A server that cannot be reached but whose listings the disk cache
    keeps is ``offline``."""
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
                search = Row(name, "search", srv.search.protocol, srv.search.where(), OK, detail, 0.0)
            except (TrolleyError, trio.TooSlowError) as exc:
                search = _failed(srv, "search", exc, deadline, config.cache.disk_dir)
            search.seconds = time.monotonic() - t0
            rows.append(search)
            if retrieve or srv.retrieve.reads_need_callback:
                rows.append(await _probe_retrieve(remote, search, studies, deadline, config.cache.disk_dir))
    if services and config.cache.shared is not None:
        rows.append(await _probe_shared(config.cache.shared))
    if services:
        rows += await _protection_rows(config)
    return rows


async def _protection_rows(config: Config) -> list[Row]:
    """What ``check`` says of the limits and the audit: the limits each server
    will be held to (a row each), whether the cluster's Redis runs the limits'
    script, and where the audit goes.  Nothing is opened or written."""
    rows = [
        Row(name, "limits", "", "", OK, (config.limits.get(name) or LimitsConfig()).describe(), 0.0)
        for name in config.servers
    ]
    shared = config.cache.shared
    rated = any(lim.bytes_per_s is not None or lim.requests_per_s is not None for lim in config.limits.values())
    if shared is not None and rated:  # the rates' buckets are in Redis
        from .cluster.setup import build_cluster

        t0 = time.monotonic()
        link = build_cluster(shared).tier.link
        try:
            ok, detail = await check_limits_script(link, shared.prefix)
        finally:
            await link.aclose()
        rows.append(
            Row("shared", "limits", "redis", shared.where(), OK if ok else FAILED, detail, time.monotonic() - t0)
        )
    if config.audit is not None:
        rows.append(Row("audit", "audit", "", "", OK, config.audit.describe(), 0.0))
    return rows


async def preflight(config: Config, warn: Callable[[str], None]) -> dict[str, Offline]:
    r"""Before serving: each server's search must answer and one of its
    instances must read (a wrong URL, path or password fails here, before
    anything is mounted).  A server that cannot be reached but whose listings
    the disk cache keeps is served offline, with one ``warn``\ ing; returned
    (by name) with since when and why."""
    offline: dict[str, Offline] = {}
    for r in await probe(config, retrieve=True, services=False):
        if r.state == OFFLINE and r.server not in offline:
            warn(
                f"server {r.server!r} ({r.protocol} {r.where}) is unreachable ({r.detail}): mounting offline; "
                "what the disk cache holds is served, the rest fails with EIO until the server answers"
            )
            offline[r.server] = Offline(time.time(), r.detail)
        elif r.state == FAILED and not r.fatal:
            warn(
                f"server {r.server!r}: reading one instance ({r.protocol} {r.where}) failed: {r.detail}; "
                "mounting anyway: files that cannot be read fail with EIO"
            )
        elif r.state == FAILED:
            what = "" if r.role == "search" else f" {r.role}"
            raise ServerFailed(f"server {r.server!r}{what} ({r.protocol} {r.where}) failed: {r.detail}")
    return offline


async def _probe_shared(shared: SharedConfig) -> Row:
    """The shared cache tier's row: a write, a read and a delete."""
    from .cluster.setup import check_cluster

    t0 = time.monotonic()
    ok, detail = await check_cluster(shared)
    kind = "redis-cluster" if shared.cluster else "redis"
    return Row("shared", "cache", kind, shared.where(), OK if ok else FAILED, detail, time.monotonic() - t0)


def _unreachable(exc: BaseException) -> bool:
    """An outage, which says nothing about the config: a refused connection,
    a timeout, a DNS failure, a 5xx.  Not a TLS failure (a mistake in the URL,
    the certificates or the server) nor any 4xx (an answer: 408 and 429 too)."""
    return isinstance(exc, (Unavailable, trio.TooSlowError)) and not isinstance(exc, (TLSFailed, Busy))


def _wrong_endpoint(exc: BaseException) -> bool:
    """Whether a failed read says the endpoint is wrong (its URL, path, port,
    credentials, TLS) or down, rather than that one object failed its checks
    (a damaged or misplaced object: its file fails, the mount goes on)."""
    return not isinstance(exc, ProtocolError) or exc.http_status is not None


def _failed(srv: Server, role: str, exc: BaseException, deadline: float, disk_dir: str | None) -> Row:
    """The row of a probe that raised ``exc``: offline, if the server cannot be
    reached and the disk cache keeps listings of it; otherwise FAILED, with a
    hint for the common mistakes."""
    ep = srv.search if role == "search" else srv.retrieve
    detail = str(exc) if isinstance(exc, TrolleyError) else f"no answer within {deadline:.0f} s"
    reachable = not _unreachable(exc)
    status = exc.http_status if isinstance(exc, RemoteError) else None
    if status in (400, 404) and ep.protocol in URL_HINTS:
        detail += f" ({URL_HINTS[ep.protocol]})"
    if not reachable and disk_dir:
        kept = newest_kept(disk_dir, server_identity(srv))
        if kept is not None:
            count, newest = kept
            age = human_age(time.time() - newest)
            detail += f"; the disk cache keeps {count} listing{'s' if count != 1 else ''} of it, the newest {age} old"
            return Row(srv.name, role, ep.protocol, ep.where(), OFFLINE, detail, 0.0, False)
        detail += "; the disk cache keeps nothing listed from this server (a changed url or AE title starts empty)"
    return Row(srv.name, role, ep.protocol, ep.where(), FAILED, detail, 0.0, reachable)


async def _probe_retrieve(
    remote: Remote, search: Row, studies: list[Study], deadline: float, disk_dir: str | None
) -> Row:
    srv = remote.server
    t0 = time.monotonic()

    def row(state: str, detail: str) -> Row:
        ep = srv.retrieve
        return Row(srv.name, "retrieve", ep.protocol, ep.where(), state, detail, time.monotonic() - t0)

    if not search.ok:
        return row(SKIPPED, "not tried (the search failed)")
    if not studies:
        return row(SKIPPED, "not tried (the server holds no study to read)")
    try:
        with idle_deadline(deadline, overall_bound(deadline)):
            instance = await _first_instance(remote, studies[0])
    except (TrolleyError, trio.TooSlowError) as exc:
        reason = str(exc) if isinstance(exc, TrolleyError) else f"no answer within {deadline:.0f} s"
        return row(SKIPPED, f"not tried (no instance could be listed to read: {reason})")
    if instance is None:
        return row(SKIPPED, "not tried (no instance found to read)")
    t0 = time.monotonic()
    try:
        with idle_deadline(deadline, overall_bound(deadline)):
            data = await remote.fetcher.fetch_instance(instance.ref)
    except (TrolleyError, trio.TooSlowError) as exc:
        failed = _failed(srv, "retrieve", exc, deadline, disk_dir)
        failed.seconds = time.monotonic() - t0
        failed.fatal = srv.retrieve.reads_need_callback or _wrong_endpoint(exc)
        return failed
    return row(OK, f"read one instance ({len(data)} bytes)")


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


def exit_code(rows: list[Row]) -> int:
    """``check``'s exit code: 0 every probe ran and passed, 1 one failed (or
    found its server offline), 3 none failed but one could not run."""
    if any(r.state in (FAILED, OFFLINE) for r in rows):
        return 1
    return 3 if any(r.state == SKIPPED for r in rows) else 0


def format_rows(rows: list[Row]) -> str:
    head = ("server", "role", "protocol", "endpoint", "result", "time")
    table = [head] + [
        (r.server, r.role, r.protocol, r.where, f"{r.state}: {r.detail}", f"{r.seconds:.2f}s") for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 2)]
    lines = []
    for row in table:
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=False)]
        lines.append("  ".join([*cells, row[5].rjust(6), row[4]]))
    return "\n".join(lines)
