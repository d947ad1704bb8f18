"""One Redis access layer for every component (cache store, key limits, upstream budgets, breaker, canary,
sticky tiers, Redis-stored keys): one client, one pool, one way to fail.

    io = RedisIO.from_config(config.redis, metrics)        # None when redis.url is not set
    await io.start()                                        # pool opened and scripts loaded before traffic
    limits = io.use("limits", timeout_s=0.05, fallback="counting a local share of each limit")
    result = await limits.call("take", lambda: script(keys=[...], args=[...]))   # or RedisUnavailable
    await io.close()

URLs: `redis://` / `rediss://` (one Redis), `redis+cluster://host:port[,host:port]` (Redis Cluster: every
script's keys carry one hash tag, `{...}`, so they share a slot), `redis+sentinel://host:port[,host:port]/
service[/db]` (the master that Sentinel names, followed on fail-over).

Why each piece:
- The pool is opened at start (`redis.pool_size` connections, and never more): a cold burst finds its
  connections ready instead of paying handshakes that push calls past their timeout.
- A caller's timeout does not cancel the command. The command runs in a task of its own; the caller stops
  waiting (`asyncio.wait`) and the command finishes in the background, so its connection goes back to the
  pool intact instead of being dropped mid-protocol (which cost a new handshake on the next call).
- Each use fails open its own way (its `fallback` is what the log says): the cache serves without itself,
  limits and budgets count a local share of each limit (limit / live replicas, see `replicas`), the breaker
  and canary keep their last known state. After a failure a use skips Redis for a short backoff (0.25 s,
  doubling to 5 s while failures go on), then one call probes: a slow Redis costs a request at most its
  timeout, once, not every request.
- Logs are throttled: one WARNING when a use starts failing, one per 30 s while it goes on (with the count),
  one INFO when it recovers. gateway_redis_seconds{operation} and gateway_redis_errors{operation,error}
  count every call.
- Replicas announce themselves every few seconds (`{prefix}replicas`, a sorted set by time); `replicas`
  is the live count last seen (at least 1), kept while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import unquote, urlsplit

__all__ = ["RedisIO", "RedisUnavailable", "RedisUse", "make_client", "make_sync_client"]

log = logging.getLogger("gateway.redis")

T = TypeVar("T")

BACKOFF_S = 0.25
MAX_BACKOFF_S = 5.0
LOG_EVERY_S = 30.0
HEARTBEAT_S = 2.0
REPLICA_TTL_S = 10.0  # a replica not heard from for this long is no longer counted


class RedisUnavailable(Exception):
    """Redis did not answer in time, failed, or is being skipped after recent failures: fail open."""


def _hosts(netloc: str, default_port: int) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """'user:pass@h1:p1,h2:p2' -> ([(h1, p1), (h2, p2)], user, password)."""
    user = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, _, password = auth.partition(":")
        user, password = unquote(user) or None, unquote(password) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        hosts.append((host or "127.0.0.1", int(port) if port else default_port))
    return hosts, user, password


def make_client(url: str, *, socket_timeout_s: float, pool_size: int):
    """A redis.asyncio client for a plain, cluster or sentinel URL; returns (client, kind)."""
    import redis.asyncio as aioredis

    common: dict[str, Any] = {
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "health_check_interval": 0,
    }
    parts = urlsplit(url)
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        hosts, user, password = _hosts(parts.netloc, 6379)
        client = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in hosts],
            username=user,
            password=password,
            ssl=parts.scheme.startswith("rediss"),
            max_connections=pool_size * 4,
            **common,
        )
        return client, "cluster"
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        from redis.asyncio.sentinel import Sentinel

        hosts, user, password = _hosts(parts.netloc, 26379)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("redis+sentinel:// URLs name the service: redis+sentinel://host:26379/mymaster[/db]")
        sentinel = Sentinel(
            hosts,
            sentinel_kwargs={"socket_timeout": socket_timeout_s},
            username=user,
            password=password,
            ssl=parts.scheme.startswith("rediss"),
            **common,
        )
        client = sentinel.master_for(path[0], db=int(path[1]) if len(path) > 1 else 0, max_connections=pool_size)
        return client, "sentinel"
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=pool_size, timeout=socket_timeout_s, **common)
    return aioredis.Redis.from_pool(pool), "single"


def make_sync_client(url: str, socket_timeout_s: float = 5.0):
    """A blocking client on the same URLs (the CLI's key and cache commands)."""
    import redis

    parts = urlsplit(url)
    if parts.scheme in ("redis+cluster", "rediss+cluster"):
        from redis.cluster import ClusterNode, RedisCluster

        hosts, user, password = _hosts(parts.netloc, 6379)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in hosts],
            username=user,
            password=password,
            ssl=parts.scheme.startswith("rediss"),
            socket_timeout=socket_timeout_s,
        )
    if parts.scheme in ("redis+sentinel", "rediss+sentinel"):
        from redis.sentinel import Sentinel

        hosts, user, password = _hosts(parts.netloc, 26379)
        path = [p for p in parts.path.split("/") if p]
        return Sentinel(hosts, username=user, password=password, socket_timeout=socket_timeout_s).master_for(
            path[0], db=int(path[1]) if len(path) > 1 else 0
        )
    return redis.Redis.from_url(url, socket_timeout=socket_timeout_s)


class _Health:
    """Failure state and log throttling of one use."""

    __slots__ = ("failures", "open_until", "probing", "unlogged", "logged_at")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.unlogged = 0
        self.logged_at = 0.0


class RedisUse:
    """Redis as one component uses it: its own timeout, its own fallback, its own failure state."""

    def __init__(self, io: "RedisIO", name: str, timeout_s: float, fallback: str) -> None:
        self.io = io
        self.name = name
        self.timeout_s = timeout_s
        self.fallback = fallback
        self.client = io.client
        self.prefix = io.prefix
        self._health = _Health()
        self._ops: dict[str, tuple[Any, Any]] = {}

    @property
    def replicas(self) -> int:
        return self.io.replicas

    @property
    def healthy(self) -> bool:
        return self._health.failures == 0

    def script(self, lua: str):
        return self.io.script(lua)

    def _metrics(self, op: str):
        pair = self._ops.get(op)
        if pair is None and self.io.metrics is not None:
            label = f"{self.name}.{op}"
            pair = self._ops[op] = (self.io.metrics.redis_seconds.labels(label), label)
        return pair

    async def call(self, op: str, make: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        """`await make()`, or RedisUnavailable once `timeout_s` (the use's by default) has passed, or at once
        while the use backs off after failures. The command is never cancelled by the timeout."""
        health = self._health
        if health.failures:
            now = time.monotonic()
            if now < health.open_until or health.probing:
                self._error(op, "skipped")
                raise RedisUnavailable(f"Redis skipped for {self.name} after {health.failures} failure(s)")
            health.probing = True
        started = time.perf_counter()
        timeout_s = timeout_s or self.timeout_s
        gate = self.io.gate
        task = asyncio.ensure_future(make() if gate is None else self.io.gated(make))
        try:
            finished, _ = await asyncio.wait((task,), timeout=timeout_s)
            done = bool(finished)
            if not done:
                # A busy process (a burst, a loaded machine) may have the answer in its socket already,
                # queued behind other requests' steps: let the loop turn a few times before giving up.
                # Idle, that costs microseconds; it is Redis that is timed, not this process.
                for _ in range(4):
                    await asyncio.sleep(0)
                    if task.done():
                        break
                if not task.done() and time.perf_counter() - started > 1.5 * timeout_s:
                    # The wait itself ended late: this process was not running (another thread held the
                    # interpreter, the machine was loaded). Give Redis its time once more.
                    await asyncio.wait((task,), timeout=timeout_s)
                done = task.done()
        except asyncio.CancelledError:
            self.io.detach(task)  # the caller went away; the command goes on, its connection survives
            health.probing = False
            raise
        if not done:
            self.io.detach(task)
            self._failed(op, "timeout", f"no answer within {timeout_s * 1000:.0f} ms")
            raise RedisUnavailable(f"Redis did not answer {self.name}.{op} in time")
        exc = task.exception()
        if exc is not None:
            kind = (
                "connection"
                if isinstance(exc, (ConnectionError, OSError)) or "Connection" in type(exc).__name__
                else "error"
            )
            self._failed(op, kind, f"{type(exc).__name__}: {exc}")
            raise RedisUnavailable(f"Redis failed on {self.name}.{op}: {type(exc).__name__}") from exc
        pair = self._metrics(op)
        if pair is not None:
            pair[0].observe(time.perf_counter() - started)
        if health.failures:
            self._recovered()
        return task.result()

    def _error(self, op: str, kind: str) -> None:
        if self.io.metrics is not None:
            self.io.metrics.redis_errors.labels(f"{self.name}.{op}", kind).inc()

    def _failed(self, op: str, kind: str, detail: str) -> None:
        health = self._health
        self._error(op, kind)
        health.failures += 1
        health.probing = False
        now = time.monotonic()
        health.open_until = now + min(MAX_BACKOFF_S, BACKOFF_S * 2 ** min(health.failures - 1, 10))
        health.unlogged += 1
        if health.failures == 1 or now - health.logged_at >= LOG_EVERY_S:
            log.warning(
                "Redis %s.%s: %s; %s (%d failure(s) since the last report)",
                self.name,
                op,
                detail,
                self.fallback,
                health.unlogged,
            )
            health.unlogged, health.logged_at = 0, now

    def _recovered(self) -> None:
        health = self._health
        log.info("Redis %s: answering again after %d failure(s)", self.name, health.failures)
        health.failures, health.open_until, health.probing, health.unlogged = 0, 0.0, False, 0


class RedisIO:
    def __init__(
        self,
        client,
        *,
        prefix: str = "gw:",
        kind: str = "single",
        pool_size: int = 32,
        timeout_s: float = 0.05,
        metrics=None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.prefix = prefix
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.replica_id = uuid.uuid4().hex[:12]
        self.replicas = 1
        self._scripts: dict[str, Any] = {}
        self._detached: set[asyncio.Task] = set()
        self._heartbeat: asyncio.Task | None = None
        self._uses: dict[str, RedisUse] = {}
        # redis-py's cluster client opens a connection for every command in flight on a node (and refuses one
        # past max_connections instead of queueing it): commands queue here instead, at most the pool size in
        # flight, so no node ever needs more connections than the pool opened at start.
        self.gate = asyncio.Semaphore(pool_size) if kind == "cluster" else None
        self._control = self.use("replicas", timeout_s=max(0.5, timeout_s), fallback="keeping the last count")
        self._health_use = self.use("health", timeout_s=1.0, fallback="reported by /readyz")
        self._on_reset: list[Callable[[], Awaitable[None]]] = []
        self._reset = False

    @classmethod
    def from_config(cls, config, metrics=None) -> "RedisIO | None":
        """From a RedisConfig; None when no URL is set."""
        if not config.url:
            return None
        timeout_s = config.timeout_ms / 1000
        # The socket's own timeout only ends commands that never answer: callers stop waiting much sooner.
        client, kind = make_client(config.url, socket_timeout_s=max(2.0, 20 * timeout_s), pool_size=config.pool_size)
        return cls(
            client, prefix=config.prefix, kind=kind, pool_size=config.pool_size, timeout_s=timeout_s, metrics=metrics
        )

    @classmethod
    def wrap(cls, client, prefix: str = "gw:") -> "RedisIO":
        """Around a bare client (the CLI, tests): callers wait as long as its socket timeout (else 1 s)."""
        pool = getattr(client, "connection_pool", None)
        if pool is None:  # a cluster client: no pool of its own, and a first command that learns the slots
            return cls(client, prefix=prefix, kind="cluster", timeout_s=2.0)
        timeout_s = (getattr(pool, "connection_kwargs", None) or {}).get("socket_timeout") or 1.0
        return cls(client, prefix=prefix, timeout_s=timeout_s)

    def use(self, name: str, *, timeout_s: float | None = None, fallback: str = "failing open") -> RedisUse:
        use = self._uses.get(name)
        if use is None:
            use = self._uses[name] = RedisUse(self, name, timeout_s or self.timeout_s, fallback)
        return use

    def script(self, lua: str):
        """One registered script object per source text (loaded on every node at start)."""
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self.client.register_script(lua)
        return script

    async def gated(self, make: Callable[[], Awaitable[T]]) -> T:
        assert self.gate is not None  # only called for a cluster client, which has one
        async with self.gate:
            return await make()

    def detach(self, task: asyncio.Task) -> None:
        """Let a command its caller stopped waiting for finish on its own; its outcome is dropped."""
        self._detached.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        self._detached.discard(task)
        if not task.cancelled():
            task.exception()

    async def start(self) -> None:
        """Open the pool and load the scripts before the first request; start the replica heartbeat.
        A Redis that is away at start is logged, not fatal: every use fails open until it answers."""
        try:
            await asyncio.wait_for(self._warm(), timeout=max(5.0, 20 * self.timeout_s))
        except Exception as exc:
            log.warning(
                "Redis not ready at start (%s: %s); serving without it until it answers", type(exc).__name__, exc
            )
        await self.beat()
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat_forever())

    async def _warm(self) -> None:
        for script in self._scripts.values():
            await self.client.script_load(script.script)
        if self.kind == "cluster":
            from redis.asyncio.cluster import RedisCluster

            await self.client.initialize()
            # concurrent pings: each holds a connection of its own on every master (sequential ones reuse one)
            await asyncio.gather(
                *(self.client.ping(target_nodes=RedisCluster.PRIMARIES) for _ in range(self.pool_size))
            )
            return
        pool = self.client.connection_pool
        connections = []
        try:
            for _ in range(self.pool_size):
                connections.append(await pool.get_connection())
        finally:
            for connection in connections:
                await pool.release(connection)

    async def ping(self) -> None:
        """Readiness and gauges: raises RedisUnavailable when Redis does not answer within a second."""
        await self._health_use.call("ping", self.client.ping, 1.0)

    async def beat(self) -> None:
        """Announce this replica and read how many are live."""
        key = f"{self.prefix}replicas"

        async def announce() -> int:
            now = time.time()
            if await self.client.set(f"{self.prefix}epoch", self.replica_id, nx=True):
                self._reset = True  # first start, or Redis restarted empty: write back what we know
            await self.client.zadd(key, {self.replica_id: now})
            await self.client.zremrangebyscore(key, "-inf", now - REPLICA_TTL_S)
            await self.client.expire(key, int(REPLICA_TTL_S * 3))
            return int(await self.client.zcard(key))

        try:
            self.replicas = max(1, await self._control.call("heartbeat", announce))
        except RedisUnavailable:
            return
        if self._reset:
            self._reset = False
            for reseed in self._on_reset:
                try:
                    await reseed()
                except Exception:  # one component failing to write back must not stop the others
                    log.exception("re-seeding Redis after a reset failed")

    def on_reset(self, reseed: Callable[[], Awaitable[None]]) -> None:
        """`reseed()` runs when Redis is found without this gateway's state (restarted empty)."""
        self._on_reset.append(reseed)

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self.beat()

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            try:
                await self._control.call("leave", lambda: self.client.zrem(f"{self.prefix}replicas", self.replica_id))
            except RedisUnavailable:
                pass
        if self._detached:
            await asyncio.wait(list(self._detached), timeout=1.0)
        await self.client.aclose()
