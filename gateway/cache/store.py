"""Where cached answers live: `RedisStore` (every replica shares it) or `MemoryStore` (one process, the
embedded default), behind one protocol, `CacheStore`.

Redis layout (plain Redis 7, no modules; `p` is redis.prefix followed by `{c}:`, one hash tag, so that on
Redis Cluster the whole cache lives in one slot and the put script's keys always share it):

    {p}e:{key}             STRING  the answer (orjson blob), expires with its intent's TTL
    {p}x:{intent}          ZSET    exact keys of an intent, scored by expiry (ms): entry count, flush, bound
    {p}v:{intent}:{ctx}    HASH    entry key -> packed (expiry, question text, float16 vector)
    {p}z:{intent}:{ctx}    ZSET    the same keys by expiry: the oldest are evicted past max_entries
    {p}n:{intent}:{ctx}    STRING  version of the partition: a value of the global {p}seq at its last change
    {p}s:{intent}          HASH    counters: hits_exact, hits_semantic, misses, stores, saved_tokens, saved_usd
    {p}seq                 STRING  global sequence (never flushed, so a re-created partition gets new versions)

One `put` is one round trip: a Lua script writes the answer, indexes it, drops what expired or is past the
bound, bumps the version. On a request's path the cache uses `put_later`: the same write as a background
task, so the answer goes back without waiting for it; the entry is visible to this replica's own lookups at
once (a dict of writes in flight, the mirror), and past `max_pending` writes in flight the caller waits for
the oldest (bounded). Each replica keeps a local mirror of a partition (a float32 matrix) and checks the
partition's version (one GET) at most once per `reload_s`, reloading it (one HGETALL) when the version has
changed: a miss's only Redis round trip is then its exact GET (its own stores reach its mirror at once; a
partition found empty is remembered as empty until the next check).

Fail open: a Redis error or timeout raises `StoreUnavailable` (the two reads on a request's path, the exact
GET and the partition's version, wait at most cache.redis_timeout_ms; the rest, redis.timeout_ms), and
opens a short circuit (0.25 s, doubling to 5 s while failures go on) during which calls fail at once
without touching Redis; the caller serves the request without the cache and counts the error.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

import numpy as np

from gateway.cache.semantic import Candidates
from gateway.redisio import RedisIO, RedisUnavailable, RedisUse

__all__ = ["CacheStore", "VectorRow", "MemoryStore", "RedisStore", "StoreUnavailable", "STAT_FIELDS"]

STAT_FIELDS = ("hits_exact", "hits_semantic", "misses", "stores", "saved_tokens", "saved_usd")
_LOOKUPS = frozenset({"get", "version", "vectors"})  # on a request's path: their failures open the circuit
ADMIN_TIMEOUT_S = 60.0  # stats and flush scan the keyspace: an admin waits, a request never does
EXACT_BOUND_FACTOR = 10  # exact entries per intent: at most this many times max_entries_per_intent


class StoreUnavailable(Exception):
    """The store could not answer (Redis down, slow, or its circuit open): serve without the cache."""


@dataclass(frozen=True, slots=True)
class VectorRow:
    """A question to index for semantic lookup, in the partition (intent, context)."""

    intent: str
    context: str
    text: str
    vector: np.ndarray


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, blob: bytes, intent: str, ttl_s: int, row: VectorRow | None) -> None: ...

    async def put_later(
        self,
        key: str,
        blob: bytes,
        intent: str,
        ttl_s: int,
        row: VectorRow | None,
        on_error: Callable[[StoreUnavailable], None] | None = None,
    ) -> None:
        """`put` off the caller's path where the store allows it; errors go to `on_error`."""

    async def candidates(self, intent: str, context: str) -> Candidates | None:
        """The live questions of a partition; payloads are entry keys."""

    async def count(self, counts: dict[str, dict[str, float]]) -> None: ...

    async def stats(self, intents: list[str]) -> dict[str, dict[str, float]]: ...

    async def flush(self, intent: str | None = None) -> int: ...

    async def close(self) -> None: ...


class _Mirror:
    """A partition's questions in process: a growing float32 matrix, oldest rows first."""

    def __init__(self, version: bytes | None = None) -> None:
        self.version = version
        self.loaded_at = time.monotonic()
        self._vectors: np.ndarray | None = None
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._expiries: list[float] = []
        self._start = 0  # rows before it were evicted
        self._min_expiry = math.inf
        self._view: Candidates | None = None

    def __len__(self) -> int:
        return len(self._ids) - self._start

    def add(self, key: str, text: str, vector: np.ndarray, expiry: float, limit: int) -> None:
        vector = np.asarray(vector, dtype=np.float32)
        n = len(self._ids)
        if self._vectors is None:
            self._vectors = np.empty((16, vector.shape[0]), dtype=np.float32)
        elif self._vectors.shape[1] != vector.shape[0]:
            return  # another embedding model wrote this partition
        elif n == self._vectors.shape[0]:
            grown = np.empty((2 * n, self._vectors.shape[1]), dtype=np.float32)
            grown[:n] = self._vectors
            self._vectors = grown
        self._vectors[n] = vector
        self._ids.append(key)
        self._texts.append(text)
        self._expiries.append(expiry)
        self._min_expiry = min(self._min_expiry, expiry)
        self._view = None
        if len(self) > limit:
            self._start = len(self._ids) - limit
            if self._start > max(16, limit // 4):
                self._compact(lambda i: True)

    def _compact(self, keep: Callable[[int], bool]) -> None:
        rows = [i for i in range(self._start, len(self._ids)) if keep(i)]
        if self._vectors is not None:
            self._vectors = np.ascontiguousarray(self._vectors[rows]) if rows else None
        self._ids = [self._ids[i] for i in rows]
        self._texts = [self._texts[i] for i in rows]
        self._expiries = [self._expiries[i] for i in rows]
        self._start = 0
        self._min_expiry = min(self._expiries, default=math.inf)
        self._view = None

    def __contains__(self, key: str) -> bool:
        return key in self._ids[self._start :]

    def discard(self, key: str) -> None:
        if key in self:
            self._compact(lambda i: self._ids[i] != key)

    def candidates(self, now: float) -> Candidates | None:
        if now >= self._min_expiry:
            self._compact(lambda i: self._expiries[i] > now)
        if not len(self):
            return None
        if self._view is None:
            start, end = self._start, len(self._ids)
            self._view = Candidates(self._vectors[start:end], self._texts[start:end], self._ids[start:end])
        return self._view


def _pack(expiry: float, text: str, vector: np.ndarray) -> bytes:
    encoded = text.encode()
    return struct.pack("<dI", expiry, len(encoded)) + encoded + np.asarray(vector, dtype=np.float16).tobytes()


def _unpack(raw: bytes) -> tuple[float, str, np.ndarray]:
    expiry, size = struct.unpack_from("<dI", raw)
    text = raw[12 : 12 + size].decode()
    return expiry, text, np.frombuffer(raw[12 + size :], dtype=np.float16).astype(np.float32)


class MemoryStore:
    """One process: plain dicts and mirrors. The embedded default (demo, tests, a single worker)."""

    def __init__(self, max_entries_per_intent: int = 2000) -> None:
        self.max_entries = max_entries_per_intent
        self._entries: dict[str, tuple[float, bytes, str]] = {}  # key -> (expiry, blob, intent)
        self._by_intent: dict[str, dict[str, float]] = defaultdict(dict)  # insertion ordered
        self._partitions: dict[tuple[str, str], _Mirror] = {}
        self._stats: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(STAT_FIELDS, 0))

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.time():
            self._drop(key)
            return None
        return entry[1]

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._by_intent[entry[2]].pop(key, None)

    async def put(self, key: str, blob: bytes, intent: str, ttl_s: int, row: VectorRow | None) -> None:
        expiry = time.time() + ttl_s
        self._drop(key)
        self._entries[key] = (expiry, blob, intent)
        keys = self._by_intent[intent]
        keys[key] = expiry
        while len(keys) > self.max_entries * EXACT_BOUND_FACTOR:
            self._drop(next(iter(keys)))
        self._stats[intent]["stores"] += 1
        if row is not None:
            mirror = self._partitions.setdefault((row.intent, row.context), _Mirror())
            mirror.discard(key)
            mirror.add(key, row.text, row.vector, expiry, self.max_entries)

    async def put_later(
        self,
        key: str,
        blob: bytes,
        intent: str,
        ttl_s: int,
        row: VectorRow | None,
        on_error: Callable[[StoreUnavailable], None] | None = None,
    ) -> None:
        await self.put(key, blob, intent, ttl_s, row)  # no I/O: nothing to move off the path

    async def candidates(self, intent: str, context: str) -> Candidates | None:
        mirror = self._partitions.get((intent, context))
        return mirror.candidates(time.time()) if mirror is not None else None

    async def count(self, counts: dict[str, dict[str, float]]) -> None:
        for intent, fields in counts.items():
            stats = self._stats[intent]
            for name, value in fields.items():
                stats[name] += value

    async def stats(self, intents: list[str]) -> dict[str, dict[str, float]]:
        now = time.time()
        out = {}
        for intent in dict.fromkeys([*intents, *self._stats]):
            entries = sum(1 for expiry in self._by_intent.get(intent, {}).values() if expiry > now)
            vectors = sum(len(m) for (i, _), m in self._partitions.items() if i == intent)
            out[intent] = {**self._stats[intent], "entries": entries, "vectors": vectors}
        return out

    async def flush(self, intent: str | None = None) -> int:
        if intent is None:
            removed = len(self._entries)
            self._entries.clear()
            self._by_intent.clear()
            self._partitions.clear()
            return removed
        keys = list(self._by_intent.pop(intent, {}))
        for key in keys:
            self._entries.pop(key, None)
        for partition in [p for p in self._partitions if p[0] == intent]:
            del self._partitions[partition]
        return len(keys)

    async def close(self) -> None:
        return None


_PUT = """
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[3])
local expiry = now + ttl
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5])
if over > 0 then
  local old = redis.call('ZRANGE', KEYS[2], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
  for i = 1, #old do redis.call('DEL', ARGV[9] .. old[i]) end
end
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('HINCRBY', KEYS[6], 'stores', 1)
if ARGV[6] ~= '1' then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[7])
redis.call('ZADD', KEYS[4], expiry, ARGV[1])
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
local extra = redis.call('ZCARD', KEYS[4]) - #gone - tonumber(ARGV[8])
if extra > 0 then
  local old = redis.call('ZRANGE', KEYS[4], #gone, #gone + extra - 1)
  for i = 1, #old do gone[#gone + 1] = old[i] end
end
for i = 1, #gone do
  redis.call('HDEL', KEYS[3], gone[i])
  redis.call('ZREM', KEYS[4], gone[i])
end
local version = redis.call('INCR', KEYS[7])
redis.call('SET', KEYS[5], version, 'PX', ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
return version
"""


class RedisStore:
    """Shared by every replica, through the "cache" use of gateway.redisio."""

    def __init__(
        self,
        redis: Any,
        prefix: str = "gw:",
        max_entries_per_intent: int = 2000,
        *,
        lookup_timeout_s: float | None = None,
        reload_s: float = 1.0,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        max_pending: int = 256,
    ) -> None:
        # `redis`: the app's gateway.redisio use, or a bare client (CLI, tests), wrapped the same way
        self._use = (
            redis
            if isinstance(redis, RedisUse)
            else RedisIO.wrap(redis, prefix).use("cache", fallback="serving without the cache")
        )
        self.redis = self._use.client
        self._write_use = self._use.io.use(self._use.name + "_write", fallback="the entry is not stored")
        self.lookup_timeout_s = lookup_timeout_s  # the two reads on a request's path; others: redis.timeout_ms
        self.max_entries = max_entries_per_intent
        self.reload_s = reload_s
        self._p = prefix + "{c}:"  # one hash tag: the put script's keys share a slot on Redis Cluster
        self._put = self._use.script(_PUT)
        self._mirrors: dict[tuple[str, str], _Mirror] = {}
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._failures = 0
        self._open_until = 0.0
        self.max_pending = max_pending
        self._connected = False
        self._writing: dict[str, bytes] = {}  # entry key -> answer, while its put_later is in flight
        self._writes: dict[asyncio.Task, None] = {}  # in flight, oldest first

    # ------------------------------------------------------------------------------------ fail open
    async def _call(self, make: Callable[[], Awaitable[Any]], timeout_s: float | None = None, op: str = "call") -> Any:
        if self._open_until and time.monotonic() < self._open_until:
            raise StoreUnavailable("redis circuit open: not trying before the backoff ends")
        lookup = op in _LOOKUPS
        try:  # a timeout stops the wait, not the command: the connection stays usable (gateway.redisio)
            result = await (self._use if lookup else self._write_use).call(op, make, timeout_s)
        except RedisUnavailable as exc:  # redis errors, timeouts, connection refused: all fail open
            if not lookup:  # a slow write (stats, a put) does not switch the lookups off
                raise StoreUnavailable(f"redis: {exc}") from exc
            self._failures += 1
            backoff = min(self._max_backoff_s, self._backoff_s * 2 ** (self._failures - 1))
            self._open_until = time.monotonic() + backoff
            raise StoreUnavailable(f"redis: {exc}") from exc
        if self._failures:
            self._failures, self._open_until = 0, 0.0
        return result

    @property
    def circuit_open(self) -> bool:
        return time.monotonic() < self._open_until

    # ----------------------------------------------------------------------------------- the protocol
    async def get(self, key: str) -> bytes | None:
        writing = self._writing.get(key)
        if writing is not None:
            return writing
        # the first read opens the connection: it may take longer than a lookup is allowed on a busy host
        timeout_s = self.lookup_timeout_s if self._connected else None
        blob = await self._call(lambda: self.redis.get(self._p + "e:" + key), timeout_s, "get")
        self._connected = True
        return blob

    def _partition_keys(self, intent: str, context: str) -> tuple[str, str, str]:
        tail = f"{intent}:{context}"
        return self._p + "v:" + tail, self._p + "z:" + tail, self._p + "n:" + tail

    async def put(self, key: str, blob: bytes, intent: str, ttl_s: int, row: VectorRow | None) -> None:
        now = time.time()
        ttl_ms = int(ttl_s * 1000)
        vkey, zkey, nkey = self._partition_keys(row.intent, row.context) if row else ("", "", "")
        packed = _pack(now + ttl_s, row.text, row.vector) if row else b""
        keys = [
            self._p + "e:" + key,
            self._p + "x:" + intent,
            vkey or self._p + "none",
            zkey or self._p + "none",
            nkey or self._p + "none",
            self._p + "s:" + intent,
            self._p + "seq",
        ]
        args = [
            key,
            blob,
            ttl_ms,
            int(now * 1000),
            self.max_entries * EXACT_BOUND_FACTOR,
            "1" if row else "0",
            packed,
            self.max_entries,
            self._p + "e:",
        ]
        await self._call(lambda: self._put(keys=keys, args=args, client=self.redis), op="put")
        self._mirror_own(key, row, now + ttl_s)

    def _mirror_own(self, key: str, row: VectorRow | None, expiry: float) -> None:
        if row is not None:
            mirror = self._mirrors.get((row.intent, row.context))
            if mirror is not None:  # our own store is visible to us at once
                mirror.discard(key)
                mirror.add(key, row.text, row.vector, expiry, self.max_entries)

    async def put_later(
        self,
        key: str,
        blob: bytes,
        intent: str,
        ttl_s: int,
        row: VectorRow | None,
        on_error: Callable[[StoreUnavailable], None] | None = None,
    ) -> None:
        self._writing[key] = blob
        self._mirror_own(key, row, time.time() + ttl_s)
        task = asyncio.get_running_loop().create_task(self._write(key, blob, intent, ttl_s, row, on_error))
        self._writes[task] = None
        task.add_done_callback(self._writes.pop)
        if len(self._writes) > self.max_pending:  # bounded: the caller waits for the oldest write
            await asyncio.wait([next(iter(self._writes))])

    async def _write(
        self,
        key: str,
        blob: bytes,
        intent: str,
        ttl_s: int,
        row: VectorRow | None,
        on_error: Callable[[StoreUnavailable], None] | None,
    ) -> None:
        try:
            await self.put(key, blob, intent, ttl_s, row)
        except StoreUnavailable as exc:
            if on_error is not None:
                on_error(exc)
        finally:
            if self._writing.get(key) is blob:
                del self._writing[key]

    async def drain(self) -> None:
        """Wait for the writes in flight (shutdown, tests)."""
        while self._writes:
            await asyncio.wait(list(self._writes))

    async def candidates(self, intent: str, context: str) -> Candidates | None:
        mirror = self._mirrors.get((intent, context))
        now = time.monotonic()
        if mirror is not None and now - mirror.loaded_at < self.reload_s:
            return mirror.candidates(time.time())  # checked lately: no round trip
        vkey, _, nkey = self._partition_keys(intent, context)
        version = await self._call(lambda: self.redis.get(nkey), self.lookup_timeout_s, "version")
        if mirror is not None and mirror.version == version:
            mirror.loaded_at = now
            return mirror.candidates(time.time())
        mirror = _Mirror(version)  # an absent partition is remembered empty until the next check
        if version is not None:
            raw = await self._call(lambda: self.redis.hgetall(vkey), op="vectors")
            rows = sorted((_unpack(packed) + (key.decode(),) for key, packed in raw.items()), key=lambda r: r[0])
            for expiry, text, vector, key in rows:
                mirror.add(key, text, vector, expiry, self.max_entries)
        if len(self._mirrors) > 4096:
            self._mirrors.clear()
        self._mirrors[(intent, context)] = mirror
        return mirror.candidates(time.time())

    def forget(self, intent: str, context: str, key: str) -> None:
        """A semantic match whose answer is gone (expired, evicted, flushed): drop it from our mirror."""
        mirror = self._mirrors.get((intent, context))
        if mirror is not None:
            mirror.discard(key)

    async def count(self, counts: dict[str, dict[str, float]]) -> None:
        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                for intent, fields in counts.items():
                    for name, value in fields.items():
                        if name == "saved_usd":
                            pipe.hincrbyfloat(self._p + "s:" + intent, name, value)
                        else:
                            pipe.hincrby(self._p + "s:" + intent, name, int(value))
                await pipe.execute()

        await self._call(write, op="count")

    async def stats(self, intents: list[str]) -> dict[str, dict[str, float]]:
        async def read() -> dict[str, dict[str, float]]:
            names = list(intents)
            async for raw in self.redis.scan_iter(match=_glob(self._p) + "s:*", count=500):
                name = raw.decode()[len(self._p) + 2 :]
                if name not in names:
                    names.append(name)
            now_ms = int(time.time() * 1000)
            out = {}
            for intent in names:
                fields = await self.redis.hgetall(self._p + "s:" + intent)
                row: dict[str, float] = dict.fromkeys(STAT_FIELDS, 0)
                for name, value in fields.items():
                    row[name.decode()] = float(value) if name == b"saved_usd" else int(value)
                row["entries"] = await self.redis.zcount(self._p + "x:" + intent, now_ms, "+inf")
                vectors = 0
                async for vkey in self.redis.scan_iter(match=_glob(self._p) + "v:" + intent + ":*", count=500):
                    vectors += await self.redis.hlen(vkey)
                row["vectors"] = vectors
                out[intent] = row
            return out

        return await self._call(read, ADMIN_TIMEOUT_S, "stats")

    async def flush(self, intent: str | None = None) -> int:
        await self.drain()  # a write still in flight would outlive the flush

        async def run() -> int:
            removed = 0
            if intent is None:
                batch = []
                async for key in self.redis.scan_iter(match=_glob(self._p) + "*", count=1000):
                    if key.decode().startswith(self._p + "e:"):
                        removed += 1
                    if key.decode() not in (self._p + "seq",) and not key.decode().startswith(self._p + "s:"):
                        batch.append(key)
                    if len(batch) >= 500:
                        await self.redis.delete(*batch)
                        batch = []
                if batch:
                    await self.redis.delete(*batch)
                return removed
            members = await self.redis.zrange(self._p + "x:" + intent, 0, -1)
            for start in range(0, len(members), 500):
                part = members[start : start + 500]
                removed += await self.redis.delete(*[self._p + "e:" + m.decode() for m in part])
            keys = [self._p + "x:" + intent]
            for kind in ("v", "z", "n"):
                async for key in self.redis.scan_iter(match=f"{_glob(self._p)}{kind}:{intent}:*", count=1000):
                    keys.append(key)
            await self.redis.delete(*keys)
            return removed

        removed = await self._call(run, ADMIN_TIMEOUT_S, "flush")
        self._mirrors = {p: m for p, m in self._mirrors.items() if intent is not None and p[0] != intent}
        return removed

    async def close(self) -> None:
        await self.drain()  # the client belongs to the app, which closes it


def _glob(prefix: str) -> str:
    """A key prefix as a SCAN pattern: glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
