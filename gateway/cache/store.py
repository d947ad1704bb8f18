"""Where cached answers live: `RedisStore` (every replica shares it) or `MemoryStore` (one process, the
embedded default), behind one protocol, `CacheStore`.

Redis layout (plain Redis 7, no modules; `p` is redis.prefix followed by `{c}:`, one hash tag, so that on
Redis Cluster the whole cache lives in one slot and the put script's keys always share it):

    {p}e:{key}             STRING  the answer (orjson blob), expires with its intent's TTL
    {p}x:{intent}          ZSET    exact keys of an intent, scored by expiry (ms): entry count, flush, bound
    {p}v:{intent}:{ctx}    HASH    entry key -> packed (expiry, question text, float16 vector)
    {p}z:{intent}:{ctx}    ZSET    the same keys by expiry: the oldest are evicted past max_entries
    {p}n:{intent}:{ctx}    STRING  version of the partition: a value of the global {p}seq at its last change
    {p}b:{intent}:{ctx}    STRING  birth of the partition: its version when it was created
    {p}l:{intent}:{ctx}    ZSET    the same keys by the version that wrote them (what changed since a version)
    {p}s:{intent}          HASH    counters: hits_exact, hits_semantic, misses, stores, saved_tokens, saved_usd
    {p}seq                 STRING  global sequence (never flushed, so a re-created partition gets new versions)

One `put` is one round trip: a Lua script writes the answer, indexes it, drops what expired or is past the
bound, bumps the version. On a request's path the cache uses `put_later`: the write is queued and the
answer goes back without waiting for it; one writer sends what was queued meanwhile as one call of the same
script (one round trip and one command for many answers); the entry is visible to this replica's own
lookups at once (a dict of writes in flight, the mirror), and past `max_pending` writes queued or in flight
the caller waits for a batch to end (bounded). The exact GETs of one turn of the event loop go as one MGET.
Each replica keeps a local mirror of a partition (a float32 matrix) and syncs it at
most once per `reload_s`, in one round trip (a script: the partition's version, then only the rows logged
since the mirror's version; the whole partition only for a new mirror or a re-created partition), one sync
per partition at a time whatever the number of lookups waiting: a miss's only Redis round trip is then its
exact GET (its own stores reach its mirror at once; a partition found empty is remembered as empty until
the next check).

Fail open: a Redis error or timeout raises `StoreUnavailable` (the two reads on a request's path, the exact
GET and a mirror's sync, wait at most cache.redis_timeout_ms; the rest, redis.timeout_ms), and
opens a short circuit (0.25 s, doubling to 5 s while failures go on) during which calls fail at once
without touching Redis; the caller serves the request without the cache and counts the error.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence

import numpy as np

from gateway.cache.semantic import Candidates
from gateway.redisio import RedisIO, RedisUnavailable, RedisUse

__all__ = ["CacheStore", "VectorRow", "MemoryStore", "RedisStore", "StoreUnavailable", "STAT_FIELDS"]

STAT_FIELDS = ("hits_exact", "hits_semantic", "misses", "stores", "saved_tokens", "saved_usd")
_LOOKUPS = frozenset({"get", "sync"})  # on a request's path: their failures open the circuit
ADMIN_TIMEOUT_S = 60.0  # stats and flush scan the keyspace: an admin waits, a request never does
EXACT_BOUND_FACTOR = 10  # exact entries per intent: at most this many times max_entries_per_intent
MAX_BATCH = 64  # put_later writes sent in one pipeline


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

    async def delete(self, key: str, intent: str | None = None, context: str | None = None) -> None: ...

    async def close(self) -> None: ...


class _Mirror:
    """A partition's questions in process: a growing float32 matrix, oldest rows first. `version` and `born`
    are the partition's in Redis at the last sync (RedisStore)."""

    def __init__(self, version: int = 0, born: int = 0) -> None:
        self.version = version
        self.born = born
        self.loaded_at = time.monotonic()
        self._vectors: np.ndarray | None = None
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._expiries: list[float] = []
        self._rows: dict[str, int] = {}  # live key -> its row
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
        self._rows[key] = n
        self._min_expiry = min(self._min_expiry, expiry)
        self._view = None
        while len(self) > limit:
            self._rows.pop(self._ids[self._start], None)
            self._start += 1
        if self._start > max(16, limit // 4):
            self._compact(lambda i: True)

    def refresh(self, key: str, text: str, vector: np.ndarray, expiry: float, limit: int) -> None:
        """A row read from Redis: added when new; a row already here (our own write, read back) keeps its
        place and takes the later expiry."""
        row = self._rows.get(key)
        if row is None:
            self.add(key, text, vector, expiry, limit)
        elif expiry > self._expiries[row]:
            self._expiries[row] = expiry

    def refresh_expiry(self, key: str, expiry: float) -> None:
        """`refresh` of a row already here: its text and vector are not needed (nor unpacked)."""
        row = self._rows.get(key)
        if row is not None and expiry > self._expiries[row]:
            self._expiries[row] = expiry

    def _compact(self, keep: Callable[[int], bool]) -> None:
        rows = [i for i in range(self._start, len(self._ids)) if keep(i)]
        if self._vectors is not None:
            self._vectors = np.ascontiguousarray(self._vectors[rows]) if rows else None
        self._ids = [self._ids[i] for i in rows]
        self._texts = [self._texts[i] for i in rows]
        self._expiries = [self._expiries[i] for i in rows]
        self._rows = {key: i for i, key in enumerate(self._ids)}
        self._start = 0
        self._min_expiry = min(self._expiries, default=math.inf)
        self._view = None

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    def discard(self, key: str) -> None:
        """O(1): the row is marked expired; the next `candidates` compacts."""
        row = self._rows.pop(key, None)
        if row is not None:
            self._expiries[row] = -math.inf
            self._min_expiry = -math.inf

    def candidates(self, now: float) -> Candidates | None:
        if now >= self._min_expiry:
            self._compact(lambda i: self._expiries[i] > now)
        if not len(self):
            return None
        if self._view is None:  # views, no copies: a new view after each add costs next to nothing
            start, end = self._start, len(self._ids)
            self._view = Candidates(
                self._vectors[start:end],  # type: ignore[index]
                _Window(self._texts, start, end),
                _Window(self._ids, start, end),
            )
        return self._view


class _Window(Sequence):
    """items[start:end] without the copy (the mirror's lists only grow at the end, or are replaced)."""

    __slots__ = ("_items", "_start", "_len")

    def __init__(self, items: list, start: int, end: int) -> None:
        self._items, self._start, self._len = items, start, end - start

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError(index)
        return self._items[self._start + index]


def _pack(expiry: float, text: str, vector: np.ndarray) -> bytes:
    encoded = text.encode()
    return struct.pack("<dI", expiry, len(encoded)) + encoded + np.asarray(vector, dtype=np.float16).tobytes()


_EXPIRY = struct.Struct("<d")  # a packed row's first field


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

    async def delete(self, key: str, intent: str | None = None, context: str | None = None) -> None:
        """One entry gone, exact and semantic (a self-check found its answer wrong for a paraphrase)."""
        self._drop(key)
        for mirror in self._partitions.values():
            mirror.discard(key)

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
local function put(K, A)
  local now, ttl = tonumber(A[4]), tonumber(A[3])
  local expiry = now + ttl
  redis.call('SET', K[1], A[2], 'PX', ttl)
  redis.call('ZADD', K[2], expiry, A[1])
  redis.call('ZREMRANGEBYSCORE', K[2], '-inf', now)
  local over = redis.call('ZCARD', K[2]) - tonumber(A[5])
  if over > 0 then
    local old = redis.call('ZRANGE', K[2], 0, over - 1)
    redis.call('ZREMRANGEBYRANK', K[2], 0, over - 1)
    for i = 1, #old do redis.call('DEL', A[9] .. old[i]) end
  end
  if redis.call('PTTL', K[2]) < ttl then redis.call('PEXPIRE', K[2], ttl) end
  redis.call('HINCRBY', K[6], 'stores', 1)
  if A[6] ~= '1' then return 0 end
  redis.call('HSET', K[3], A[1], A[7])
  redis.call('ZADD', K[4], expiry, A[1])
  local gone = redis.call('ZRANGEBYSCORE', K[4], '-inf', now)
  local extra = redis.call('ZCARD', K[4]) - #gone - tonumber(A[8])
  if extra > 0 then
    local old = redis.call('ZRANGE', K[4], #gone, #gone + extra - 1)
    for i = 1, #old do gone[#gone + 1] = old[i] end
  end
  for i = 1, #gone do
    redis.call('HDEL', K[3], gone[i])
    redis.call('ZREM', K[4], gone[i])
  end
  local version = redis.call('INCR', K[7])
  for i = 1, #gone do redis.call('ZREM', K[8], gone[i]) end
  redis.call('ZADD', K[8], version, A[1])
  local logged = redis.call('ZCARD', K[8]) - tonumber(A[8])
  if logged > 0 then redis.call('ZREMRANGEBYRANK', K[8], 0, logged - 1) end
  redis.call('SET', K[5], version, 'PX', ttl)
  if redis.call('SET', K[9], version, 'NX', 'PX', ttl) == false then redis.call('PEXPIRE', K[9], ttl) end
  redis.call('PEXPIRE', K[3], ttl)
  redis.call('PEXPIRE', K[4], ttl)
  redis.call('PEXPIRE', K[8], ttl)
  return version
end
local out = {}
for i = 0, #KEYS / 9 - 1 do
  local K, A = {}, {}
  for j = 1, 9 do K[j] = KEYS[i * 9 + j]; A[j] = ARGV[i * 9 + j] end
  out[#out + 1] = put(K, A)
end
return out
"""

# A replica's mirror follows its partition: the partition's version and birth (the version that created
# it: a flushed and re-created partition has another), then only the rows logged after the version the
# mirror has (O(new rows)); everything when the mirror is new or the partition was re-created.
_SYNC = """
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local born = tonumber(redis.call('GET', KEYS[2]) or '0')
local since, known = tonumber(ARGV[1]), tonumber(ARGV[2])
if version == 0 or (version == since and born == known) then return {version, born} end
if since == 0 or born ~= known or version < since then return {version, born, 1, redis.call('HGETALL', KEYS[4])} end
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')
local rows = {}
for i = 1, #ids do
  local packed = redis.call('HGET', KEYS[4], ids[i])
  if packed then rows[#rows + 1] = ids[i]; rows[#rows + 1] = packed end
end
return {version, born, 0, rows}
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
        self._sync_script = self._use.script(_SYNC)
        self._syncs: dict[tuple[str, str], asyncio.Future[_Mirror]] = {}
        self._mirrors: dict[tuple[str, str], _Mirror] = {}
        self._backoff_s, self._max_backoff_s = backoff_s, max_backoff_s
        self._failures = 0
        self._open_until = 0.0
        self.max_pending = max_pending
        self._connected = False
        self._writing: dict[str, bytes] = {}  # entry key -> answer, while its put_later is in flight
        # Our recent stores, numbered: a mirror synced meanwhile may have read Redis before they landed,
        # so a sync adds those made since it began, and those still in flight (at most max_pending)
        self._own_seq = 0
        self._own_log: deque[tuple[int, str, VectorRow, float]] = deque(maxlen=max(1024, 2 * max_pending))
        self._gets: list[tuple[str, asyncio.Future[bytes | None]]] = []  # the next MGET's keys and waiters
        self._reads: set[asyncio.Task] = set()
        self._queue: list[tuple[Any, ...]] = []  # put_later writes not sent yet, oldest first
        self._sending = 0  # writes of the batch in flight
        self._writer: asyncio.Task | None = None
        self._progress: asyncio.Future[None] | None = None  # resolved when a batch of writes ends

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
        if not self._connected:  # the first read opens the connection: it may take longer than a lookup may
            blob = await self._call(lambda: self.redis.get(self._p + "e:" + key), None, "get")
            self._connected = True
            return blob
        if self._open_until and time.monotonic() < self._open_until:
            raise StoreUnavailable("redis circuit open: not trying before the backoff ends")
        # The reads of one turn of the event loop go as one MGET: one round trip and one command for the
        # lookups of every request that reached this step meanwhile (~50 µs of CPU a command, ~3 µs a key).
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        self._gets.append((key, waiter))
        if len(self._gets) == 1:
            loop.call_soon(self._send_gets)
        return await waiter

    def _send_gets(self) -> None:
        batch, self._gets = self._gets, []
        task = asyncio.get_running_loop().create_task(self._mget(batch))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _mget(self, batch: list[tuple[str, asyncio.Future[bytes | None]]]) -> None:
        keys = [self._p + "e:" + key for key, _ in batch]
        try:
            blobs = await self._call(lambda: self.redis.mget(keys), self.lookup_timeout_s, "get")
        except Exception as exc:  # every read of the batch fails open; none is left waiting
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(StoreUnavailable(str(exc)))
            return
        for (_, waiter), blob in zip(batch, blobs):
            if not waiter.done():
                waiter.set_result(blob)

    def _partition_keys(self, intent: str, context: str) -> tuple[str, str, str, str, str]:
        """(vectors, expiries, version, log, birth) of a partition."""
        tail = f"{intent}:{context}"
        return tuple(self._p + kind + ":" + tail for kind in "vznlb")  # type: ignore[return-value]

    async def put(self, key: str, blob: bytes, intent: str, ttl_s: int, row: VectorRow | None) -> None:
        await self._put_now(key, blob, intent, ttl_s, row)
        self._mirror_own(key, row, time.time() + ttl_s)

    async def _put_now(self, key: str, blob: bytes, intent: str, ttl_s: int, row: VectorRow | None) -> None:
        keys, args = self._put_call(key, blob, intent, ttl_s, row)
        await self._call(lambda: self._put(keys=keys, args=args, client=self.redis), op="put")

    def _put_call(
        self, key: str, blob: bytes, intent: str, ttl_s: int, row: VectorRow | None
    ) -> tuple[list[str], list[Any]]:
        """The put script's keys and arguments."""
        now = time.time()
        ttl_ms = int(ttl_s * 1000)
        vkey, zkey, nkey, lkey, bkey = self._partition_keys(row.intent, row.context) if row else ("",) * 5
        packed = _pack(now + ttl_s, row.text, row.vector) if row else b""
        keys = [
            self._p + "e:" + key,
            self._p + "x:" + intent,
            vkey or self._p + "none",
            zkey or self._p + "none",
            nkey or self._p + "none",
            self._p + "s:" + intent,
            self._p + "seq",
            lkey or self._p + "none",
            bkey or self._p + "none",
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
        return keys, args

    def _mirror_own(self, key: str, row: VectorRow | None, expiry: float) -> None:
        if row is not None:
            self._own_seq += 1
            self._own_log.append((self._own_seq, key, row, expiry))
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
        self._queue.append((key, blob, intent, ttl_s, row, on_error))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())
        while self.pending > self.max_pending:  # bounded: the caller waits for a batch to end
            if self._progress is None or self._progress.done():
                self._progress = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._progress)

    @property
    def pending(self) -> int:
        """put_later writes not done yet."""
        return len(self._queue) + self._sending

    async def _write(self) -> None:
        """One writer: what was queued while a batch was in flight goes as the next batch, one call of the
        put script (one round trip, one command)."""
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._sending = len(batch)
            try:
                await self._put_batch(batch)
            except StoreUnavailable as exc:
                for *_, on_error in batch:
                    if on_error is not None:
                        on_error(exc)
            except Exception as exc:  # never lose the writer: the next writes go on
                for *_, on_error in batch:
                    if on_error is not None:
                        on_error(StoreUnavailable(f"{type(exc).__name__}: {exc}"))
            finally:
                self._sending = 0
                for key, blob, *_ in batch:
                    if self._writing.get(key) is blob:
                        del self._writing[key]
                if self._progress is not None and not self._progress.done():
                    self._progress.set_result(None)

    async def _put_batch(self, batch: list[tuple[Any, ...]]) -> None:
        keys: list[str] = []
        args: list[Any] = []
        for key, blob, intent, ttl_s, row, _ in batch:
            k, a = self._put_call(key, blob, intent, ttl_s, row)
            keys += k
            args += a
        await self._call(lambda: self._put(keys=keys, args=args, client=self.redis), op="put")

    async def drain(self) -> None:
        """Wait for the writes in flight (shutdown, tests)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    async def candidates(self, intent: str, context: str) -> Candidates | None:
        partition = (intent, context)
        mirror = self._mirrors.get(partition)
        if mirror is not None and time.monotonic() - mirror.loaded_at < self.reload_s:
            return mirror.candidates(time.time())  # checked lately: no round trip
        sync = self._syncs.get(partition)
        if sync is None:  # one sync per partition at a time: concurrent lookups wait on the same one
            sync = self._syncs[partition] = asyncio.ensure_future(self._sync(partition, mirror))
            sync.add_done_callback(lambda done: self._synced(partition, done))
        return (await asyncio.shield(sync)).candidates(time.time())

    def _synced(self, partition: tuple[str, str], sync: asyncio.Future) -> None:
        if self._syncs.get(partition) is sync:
            del self._syncs[partition]
        if not sync.cancelled():
            sync.exception()  # retrieved: every lookup that waited on it got it already

    async def _sync(self, partition: tuple[str, str], mirror: _Mirror | None) -> _Mirror:
        """Bring a partition's mirror up to date in one round trip: the rows written since its version, or
        every row when the mirror is new or the partition was re-created (an absent partition: empty)."""
        vkey, _, nkey, lkey, bkey = self._partition_keys(*partition)
        since, known = (mirror.version, mirror.born) if mirror is not None else (0, 0)
        started, mark = time.monotonic(), self._own_seq
        # a new mirror reads the whole partition: it may take longer than a lookup's short wait
        timeout_s = self.lookup_timeout_s if mirror is not None else None
        reply = await self._call(
            lambda: self._sync_script(keys=[nkey, bkey, lkey, vkey], args=[since, known], client=self.redis),
            timeout_s,
            "sync",
        )
        version, born = int(reply[0]), int(reply[1])
        if mirror is None or version == 0 or (len(reply) > 2 and int(reply[2])):
            fresh = _Mirror(version, born)
            if len(reply) > 2:
                rows = sorted(
                    (_unpack(packed) + (key.decode(),) for key, packed in _pairs(reply[3])), key=lambda r: r[0]
                )
                for expiry, text, vector, key in rows:
                    fresh.add(key, text, vector, expiry, self.max_entries)
            mirror = fresh
            if len(self._mirrors) > 4096:
                self._mirrors.clear()
            self._mirrors[partition] = mirror
        elif len(reply) > 2:
            for key, packed in _pairs(reply[3]):
                name = key.decode()
                if name in mirror:  # ours, or read before: only its expiry can have changed
                    mirror.refresh_expiry(name, _EXPIRY.unpack_from(packed)[0])
                    continue
                expiry, text, vector = _unpack(packed)
                mirror.refresh(name, text, vector, expiry, self.max_entries)
        for seq, key, row, expiry in self._own_log:  # ours that Redis may not have shown this sync
            if (seq > mark or key in self._writing) and key not in mirror:
                if (row.intent, row.context) == partition:
                    mirror.add(key, row.text, row.vector, expiry, self.max_entries)
        mirror.version, mirror.born, mirror.loaded_at = version, born, started
        return mirror

    async def delete(self, key: str, intent: str | None = None, context: str | None = None) -> None:
        """One entry gone for every replica: its answer, and its row in partition (intent, context) when
        given. A replica whose mirror still holds the row finds no answer behind it and forgets it (`forget`),
        as for an expired entry; a mirror loaded afterwards never has it."""
        self._writing.pop(key, None)
        for mirror in self._mirrors.values():
            mirror.discard(key)

        async def run() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._p + "e:" + key)
                if intent is not None and context is not None:
                    vkey, zkey, _, lkey, _ = self._partition_keys(intent, context)
                    pipe.hdel(vkey, key)
                    pipe.zrem(zkey, key)
                    pipe.zrem(lkey, key)
                await pipe.execute()

        await self._call(run, None, "delete")

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
            for kind in "vznlb":
                async for key in self.redis.scan_iter(match=f"{_glob(self._p)}{kind}:{intent}:*", count=1000):
                    keys.append(key)
            await self.redis.delete(*keys)
            return removed

        removed = await self._call(run, ADMIN_TIMEOUT_S, "flush")
        self._mirrors = {p: m for p, m in self._mirrors.items() if intent is not None and p[0] != intent}
        return removed

    async def close(self) -> None:
        await self.drain()  # the client belongs to the app, which closes it


def _pairs(flat: list) -> Any:
    """[k1, v1, k2, v2, ...] (a script's reply) or a dict (HGETALL through RESP3) as (key, value) pairs."""
    if isinstance(flat, dict):
        return flat.items()
    return zip(flat[::2], flat[1::2])


def _glob(prefix: str) -> str:
    """A key prefix as a SCAN pattern: glob characters escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
