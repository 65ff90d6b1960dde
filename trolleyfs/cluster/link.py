"""The connection to Redis: a redis-py client (``Redis``, or ``RedisCluster``
with ``cluster = true``), called from worker threads under a
:class:`trio.CapacityLimiter` (redis-py's own asyncio client does not run
under trio), each call under a deadline.

When Redis is down, slow, full or refuses us, the tier steps aside: the
failed call returns its default, one warning is logged, and no call is made
for a back-off period (5 s, doubling up to a minute); after that, one call
tries again.  Reads meanwhile go to the PACS as if there were no shared tier.
Messages name the servers, never a secret."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import trio

from .settings import SharedConfig

log = logging.getLogger("trolleyfs.cluster")

T = TypeVar("T")
BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 60.0


def build_client(config: SharedConfig) -> Any:
    """The redis-py client for ``config`` (not connected yet for a single
    server; a cluster client asks the start-up nodes for the slot map)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.cluster import ClusterNode, RedisCluster
    from redis.retry import Retry

    opts: dict[str, Any] = {
        "username": config.username,
        "password": config.password.get() if config.password else None,
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.timeout,
        "retry": Retry(NoBackoff(), 0),  # the tier backs off as a whole instead
        "max_connections": config.max_connections,
    }
    if config.tls:
        opts |= {
            "ssl_cert_reqs": "required" if config.verify else "none",
            "ssl_check_hostname": config.verify,
            "ssl_ca_certs": config.ca_bundle,
            "ssl_certfile": config.client_cert,
            "ssl_keyfile": config.client_key,
        }
    if not config.cluster:
        return redis.Redis.from_url(config.urls[0], **opts)
    nodes = []
    for url in config.urls:
        parts = urlsplit(url)
        nodes.append(ClusterNode(parts.hostname or "127.0.0.1", parts.port or 6379))  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, ssl=config.tls, **opts)


def describe(exc: BaseException) -> str:
    """A failure in one line: its kind and redis-py's message (which never
    holds the password)."""
    if isinstance(exc, trio.TooSlowError):
        return "no answer in time"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Breaker:
    """Whether to call Redis now: after a failure, not until a back-off has
    passed.  Logs one warning per outage and one line when it is over."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST_S
        self.outages = 0
        self.last_error = ""

    @property
    def up(self) -> bool:
        return self._down_since is None

    def allows(self) -> bool:
        return self._down_since is None or trio.current_time() >= self._retry_at

    def failed(self, why: str) -> None:
        now = trio.current_time()
        self.last_error = why
        if self._down_since is None:
            self._down_since, self._backoff = now, BACKOFF_FIRST_S
            self.outages += 1
            log.warning(
                "shared cache %s unavailable (%s): reading from the PACS; trying it again in %.0f s",
                self._where,
                why,
                self._backoff,
            )
        elif now >= self._retry_at:
            self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)
            log.debug("shared cache %s still unavailable (%s); next try in %.0f s", self._where, why, self._backoff)
        else:
            return  # a call that started before the outage was noticed
        self._retry_at = now + self._backoff

    def succeeded(self) -> None:
        if self._down_since is not None:
            log.info("shared cache %s is back after %.0f s", self._where, trio.current_time() - self._down_since)
            self._down_since = None


class Link:
    """Calls into the redis-py client, in worker threads, within deadlines,
    behind the :class:`Breaker`.  ``connect`` builds the client (in a worker
    thread, at the first call: a cluster client talks to Redis as it is built)."""

    def __init__(self, config: SharedConfig, connect: Callable[[SharedConfig], Any] = build_client) -> None:
        self.config = config
        self._connect = connect
        self._client: Any = None
        self._building = threading.Lock()
        self._limiter = trio.CapacityLimiter(config.max_connections)
        self.breaker = Breaker(config.where())
        self.deadline = config.timeout * 3  # a call may take a few round trips
        self.calls = 0
        self.failures = 0

    def _call(self, fn: Callable[[Any], T]) -> T:
        """In a worker thread: build the client if need be, then call ``fn``."""
        client = self._client
        if client is None:
            with self._building:
                if self._client is None:
                    self._client = self._connect(self.config)
                client = self._client
        return fn(client)

    async def run(self, fn: Callable[[Any], T], default: T) -> T:
        """``fn(client)`` in a worker thread; ``default`` if the tier is backing
        off or the call fails (which starts or extends a back-off)."""
        if not self.breaker.allows():
            return default
        self.calls += 1
        try:
            with trio.fail_after(self.deadline):
                result = await trio.to_thread.run_sync(self._call, fn, limiter=self._limiter, abandon_on_cancel=True)
        except Exception as exc:  # redis-py's errors, OSError, TooSlowError, cluster errors: the tier steps aside
            self.failures += 1
            self.breaker.failed(describe(exc))
            return default
        self.breaker.succeeded()
        return result

    async def check(self, fn: Callable[[Any], T]) -> T:
        """``fn(client)`` once, raising what goes wrong (for ``trolleyfs check``)."""
        with trio.fail_after(self.deadline):
            return await trio.to_thread.run_sync(self._call, fn, limiter=self._limiter, abandon_on_cancel=True)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await trio.to_thread.run_sync(client.close, limiter=self._limiter, abandon_on_cancel=True)
