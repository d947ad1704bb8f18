"""Batches of the OpenAI Batch API, kept durable in Redis so that any replica works them and a restart loses
nothing.

    create      the input file is checked line by line (custom_id unique, method POST, url = endpoint,
                body an object); a bad file fails the batch with OpenAI's `errors` list
    claim       a replica leases up to n items: first those whose lease ran out (their replica died),
                then fresh ones, atomically (one Lua script), so no two replicas hold one item
    finish      an item's result is written once (HSETNX): an item worked twice, after a lease ran out,
                still appears once in the output; a result that comes after the output was written
                (an item still running at expiry) is dropped, so the counts match the files
    finalize    when every item has a result, or the batch is cancelled or past its completion window,
                one replica (under a short lock) writes the output and error files; items never run are
                written to the error file (`batch_cancelled`, `batch_expired`), results so far are kept

Keys of one batch share a Redis Cluster hash slot (`{prefix}batch:{ID}:…`), so the scripts run on a cluster.
Without Redis the same logic runs in the process (the demo).
"""

from __future__ import annotations

import builtins
import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson

from gateway.batches.files import FileStore

if TYPE_CHECKING:
    from gateway.auth import ClientKey

ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/embeddings"})
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_ERRORS = 100
_WINDOW = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}

CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"in_progress"' then return {} end
local want = tonumber(ARGV[1])
local out = {}
for _, idx in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, want)) do
  if redis.call('HEXISTS', KEYS[3], idx) == 0 then
    redis.call('ZADD', KEYS[2], ARGV[3], idx)
    table.insert(out, idx)
  else
    redis.call('ZREM', KEYS[2], idx)
  end
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
while #out < want do
  local nxt = redis.call('HINCRBY', KEYS[1], 'next', 1) - 1
  if nxt >= total then
    redis.call('HSET', KEYS[1], 'next', total)
    break
  end
  redis.call('ZADD', KEYS[2], ARGV[3], nxt)
  table.insert(out, tostring(nxt))
end
return out
"""

FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= '"in_progress"' and status ~= '"cancelling"' then return 0 end
if redis.call('HSETNX', KEYS[3], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


class BatchError(ValueError):
    """A request the Batch API refuses: (message, param)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def window_seconds(window: str, allowed: tuple[str, ...]) -> int:
    """ "24h" (OpenAI's only value) and any of `batches.completion_windows` (e.g. "1h", "30s" in tests)."""
    match = _WINDOW.match(window) if isinstance(window, str) else None
    if match is None or window not in allowed:
        raise BatchError(f"completion_window must be one of {', '.join(allowed)}", "completion_window")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def parse_input(content: bytes, endpoint: str, max_items: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The items of an input file (each kept as compact JSON), and OpenAI-shaped errors per bad line."""
    items: list[bytes] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def bad(line: int, code: str, message: str, param: str | None = None) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append({"code": code, "message": message, "param": param, "line": line})

    for number, raw in enumerate(content.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad(number, "invalid_json_line", "this line is not valid JSON")
            continue
        if not isinstance(row, dict):
            bad(number, "invalid_json_line", "each line must be a JSON object")
            continue
        custom_id = row.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            bad(number, "missing_required_parameter", "custom_id is required (a string)", "custom_id")
        elif custom_id in seen:
            bad(number, "duplicate_custom_id", f"custom_id {custom_id!r} appears more than once", "custom_id")
        if row.get("method") != "POST":
            bad(number, "invalid_method", "method must be POST", "method")
        if row.get("url") != endpoint:
            bad(number, "mismatched_url", f"url must be {endpoint}, the batch's endpoint", "url")
        if not isinstance(row.get("body"), dict):
            bad(number, "invalid_body", "body must be a JSON object", "body")
        if isinstance(custom_id, str):
            seen.add(custom_id)
        items.append(orjson.dumps({"custom_id": custom_id, "body": row.get("body")}))
    if not items and not errors:
        errors.append({"code": "empty_file", "message": "the input file has no requests", "param": None, "line": None})
    if len(items) > max_items:
        errors.append(
            {
                "code": "too_many_requests",
                "message": f"a batch holds at most {max_items} requests",
                "param": None,
                "line": None,
            }
        )
    return items, errors


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class _RedisBackend:
    def __init__(self, redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._claim = redis.register_script(CLAIM)
        self._finish = redis.register_script(FINISH)

    def _key(self, batch_id: str, part: str) -> str:
        return f"{self.prefix}batch:{{{batch_id}}}:{part}"

    async def create(self, meta: dict[str, Any], items: list[bytes]) -> None:
        batch_id = meta["id"]
        async with self.redis.pipeline(transaction=True) as pipe:
            if items:
                pipe.rpush(self._key(batch_id, "items"), *items)
            pipe.hset(self._key(batch_id, "meta"), mapping={k: orjson.dumps(v) for k, v in meta.items()})
            await pipe.execute()
        await self.redis.zadd(f"{self.prefix}batches", {batch_id: meta["created_at"]})
        if meta["status"] == "in_progress":
            await self.redis.sadd(f"{self.prefix}batches:active", batch_id)

    async def meta(self, batch_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self._key(batch_id, "meta"))
        if not raw:
            return None
        return {_decode(k): orjson.loads(v) for k, v in raw.items()}

    async def update(self, batch_id: str, fields: dict[str, Any]) -> None:
        await self.redis.hset(self._key(batch_id, "meta"), mapping={k: orjson.dumps(v) for k, v in fields.items()})

    async def claim(self, batch_id: str, n: int, now: float, lease_until: float) -> list[tuple[int, bytes]]:
        keys = [self._key(batch_id, part) for part in ("meta", "leases", "results")]
        indices = [int(i) for i in await self._claim(keys=keys, args=[n, now, lease_until])]
        if not indices:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for index in indices:
                pipe.lindex(self._key(batch_id, "items"), index)
            items = await pipe.execute()
        return list(zip(indices, items))

    async def finish(self, batch_id: str, index: int, line: bytes, ok: bool) -> None:
        keys = [self._key(batch_id, part) for part in ("meta", "leases", "results")]
        await self._finish(keys=keys, args=[index, line, "completed" if ok else "failed"])

    async def leased(self, batch_id: str) -> int:
        return await self.redis.zcount(self._key(batch_id, "leases"), time.time(), "+inf")

    async def results(self, batch_id: str) -> dict[int, bytes]:
        return {int(k): v for k, v in (await self.redis.hgetall(self._key(batch_id, "results"))).items()}

    async def items(self, batch_id: str) -> list[bytes]:
        return await self.redis.lrange(self._key(batch_id, "items"), 0, -1)

    async def active(self) -> list[str]:
        return sorted(_decode(i) for i in await self.redis.smembers(f"{self.prefix}batches:active"))

    async def retire(self, batch_id: str) -> None:
        await self.redis.srem(f"{self.prefix}batches:active", batch_id)

    async def lock(self, batch_id: str, seconds: int) -> bool:
        return bool(await self.redis.set(self._key(batch_id, "finalize"), b"1", nx=True, ex=seconds))

    async def unlock(self, batch_id: str) -> None:
        await self.redis.delete(self._key(batch_id, "finalize"))

    async def ids(self) -> list[str]:
        return [_decode(i) for i in await self.redis.zrevrange(f"{self.prefix}batches", 0, -1)]


class _MemoryBackend:
    def __init__(self) -> None:
        self.batches: dict[str, dict[str, Any]] = {}

    async def create(self, meta: dict[str, Any], items: list[bytes]) -> None:
        self.batches[meta["id"]] = {
            "meta": dict(meta),
            "items": items,
            "leases": {},
            "results": {},
            "next": 0,
            "locked": False,
        }

    async def meta(self, batch_id: str) -> dict[str, Any] | None:
        found = self.batches.get(batch_id)
        return dict(found["meta"]) if found else None

    async def update(self, batch_id: str, fields: dict[str, Any]) -> None:
        self.batches[batch_id]["meta"].update(fields)

    async def claim(self, batch_id: str, n: int, now: float, lease_until: float) -> list[tuple[int, bytes]]:
        batch = self.batches[batch_id]
        if batch["meta"]["status"] != "in_progress":
            return []
        out = [i for i, until in batch["leases"].items() if until <= now and i not in batch["results"]][:n]
        while len(out) < n and batch["next"] < len(batch["items"]):
            out.append(batch["next"])
            batch["next"] += 1
        for index in out:
            batch["leases"][index] = lease_until
        return [(i, batch["items"][i]) for i in out]

    async def finish(self, batch_id: str, index: int, line: bytes, ok: bool) -> None:
        batch = self.batches[batch_id]
        if batch["meta"]["status"] not in ("in_progress", "cancelling"):
            return  # written after the output was: it would be in neither file
        if index not in batch["results"]:
            batch["results"][index] = line
            field = "completed" if ok else "failed"
            batch["meta"][field] += 1
        batch["leases"].pop(index, None)

    async def leased(self, batch_id: str) -> int:
        return sum(1 for until in self.batches[batch_id]["leases"].values() if until > time.time())

    async def results(self, batch_id: str) -> dict[int, bytes]:
        return dict(self.batches[batch_id]["results"])

    async def items(self, batch_id: str) -> list[bytes]:
        return list(self.batches[batch_id]["items"])

    async def active(self) -> list[str]:
        return [
            i for i, b in self.batches.items() if b["meta"]["status"] in ("in_progress", "cancelling", "finalizing")
        ]

    async def retire(self, batch_id: str) -> None:
        return None

    async def lock(self, batch_id: str, seconds: int) -> bool:
        batch = self.batches[batch_id]
        locked, batch["locked"] = batch["locked"], True
        return not locked

    async def unlock(self, batch_id: str) -> None:
        self.batches[batch_id]["locked"] = False

    async def ids(self) -> list[str]:
        return sorted(self.batches, key=lambda i: self.batches[i]["meta"]["created_at"], reverse=True)


class BatchStore:
    def __init__(self, files: FileStore, redis=None, prefix: str = "gw:") -> None:
        self.files = files
        self._backend = _RedisBackend(redis, prefix) if redis is not None else _MemoryBackend()

    async def create(
        self,
        key: ClientKey,
        input_file_id: str,
        endpoint: str,
        window: str,
        window_s: int,
        metadata: dict[str, str] | None,
        max_items: int,
    ) -> dict[str, Any]:
        """`key`: the creating client key (auth.ClientKey); its items run with its limits and budgets."""
        owner = key.name
        if endpoint not in ENDPOINTS:
            raise BatchError(f"endpoint must be one of {', '.join(sorted(ENDPOINTS))}", "endpoint")
        info = await self.files.info(input_file_id)
        if info is None or info.owner != owner:
            raise BatchError(f"no file {input_file_id!r}", "input_file_id")
        if info.purpose != "batch":
            raise BatchError("the input file must be uploaded with purpose 'batch'", "input_file_id")
        items, errors = parse_input(await self.files.content(input_file_id) or b"", endpoint, max_items)
        now = int(time.time())
        meta: dict[str, Any] = {
            "id": "batch_" + os.urandom(12).hex(),
            "object": "batch",
            "endpoint": endpoint,
            "owner": owner,
            "key": {"name": key.name, "id": key.id, "rpm": key.rpm, "tpm": key.tpm, "team": key.team},
            "input_file_id": input_file_id,
            "completion_window": window,
            "created_at": now,
            "expires_at": now + window_s,
            "metadata": metadata or None,
            "total": len(items),
            "completed": 0,
            "failed": 0,
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "status": "in_progress",
            "in_progress_at": now,
        }
        for name in ("finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at"):
            meta[name] = None
        if errors:
            meta.update(
                status="failed", failed_at=now, in_progress_at=None, total=0, errors={"object": "list", "data": errors}
            )
            items = []
        await self._backend.create(meta, items)
        return openai_batch(meta)

    async def get(self, batch_id: str) -> dict[str, Any] | None:
        return await self._backend.meta(batch_id)

    async def list(self, owner: str, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        ids = await self._backend.ids()
        if after in ids:
            ids = ids[ids.index(after) + 1 :]
        found = []
        for batch_id in ids:
            meta = await self._backend.meta(batch_id)
            if meta is not None and meta["owner"] == owner:
                found.append(meta)
                if len(found) > limit:
                    break
        return found[:limit], len(found) > limit

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        meta = await self._known(batch_id)
        if meta["status"] in TERMINAL or meta["status"] == "cancelling":
            return meta
        await self._backend.update(batch_id, {"status": "cancelling", "cancelling_at": int(time.time())})
        await self.finalize(batch_id)
        return await self._known(batch_id)

    async def _known(self, batch_id: str) -> dict[str, Any]:
        meta = await self._backend.meta(batch_id)
        if meta is None:
            raise BatchError(f"no batch with id {batch_id!r}", "batch_id")
        return meta

    # builtins.list: in this class `list` is the method above
    async def active(self) -> builtins.list[str]:
        return await self._backend.active()

    async def claim(self, batch_id: str, n: int, lease_s: float) -> builtins.list[tuple[int, dict[str, Any]]]:
        now = time.time()
        return [(i, orjson.loads(raw)) for i, raw in await self._backend.claim(batch_id, n, now, now + lease_s)]

    async def finish(self, batch_id: str, index: int, line: dict[str, Any], ok: bool) -> None:
        await self._backend.finish(batch_id, index, orjson.dumps(line), ok)

    async def finalize(self, batch_id: str) -> dict[str, Any] | None:
        """Write the output if the batch is done, cancelled with nothing in flight, or past its window."""
        meta = await self._backend.meta(batch_id)
        if meta is None or meta["status"] in TERMINAL:
            return meta
        now = int(time.time())
        if meta["status"] == "finalizing":  # a replica died or failed while writing the output: write it again
            end = meta["ending"]
        elif meta["status"] == "in_progress" and now >= meta["expires_at"]:
            end = "expired"
        elif meta["status"] == "cancelling" and not await self._backend.leased(batch_id):  # live leases only
            end = "cancelled"
        elif meta["status"] == "in_progress" and meta["completed"] + meta["failed"] >= meta["total"]:
            end = "completed"
        else:
            return meta
        if not await self._backend.lock(batch_id, 60):
            return meta
        try:
            return await self._write_output(batch_id, meta, end, now)
        except BaseException:
            await self._backend.unlock(batch_id)  # the next poll, here or on another replica, tries again
            raise

    async def _write_output(self, batch_id: str, meta: dict[str, Any], end: str, now: int) -> dict[str, Any] | None:
        await self._backend.update(batch_id, {"status": "finalizing", "finalizing_at": now, "ending": end})
        results = await self._backend.results(batch_id)
        output, errors = [], []
        for index, raw in enumerate(await self._backend.items(batch_id)):
            line = results.get(index)
            if line is None:
                item = orjson.loads(raw)
                code = "batch_expired" if end == "expired" else "batch_cancelled"
                errors.append(
                    orjson.dumps(
                        {
                            "id": f"batch_req_{batch_id[6:]}_{index}",
                            "custom_id": item["custom_id"],
                            "response": None,
                            "error": {"code": code, "message": f"the batch was {end} before this request ran"},
                        }
                    )
                )
            elif orjson.loads(line).get("error") is None and orjson.loads(line)["response"]["status_code"] == 200:
                output.append(line)
            else:
                errors.append(line)
        fields: dict[str, Any] = {"status": end, f"{end}_at": int(time.time())}
        if output:
            fields["output_file_id"] = (
                await self.files.put(
                    b"\n".join(output) + b"\n", f"{batch_id}_output.jsonl", "batch_output", meta["owner"]
                )
            ).id
        if errors:
            fields["error_file_id"] = (
                await self.files.put(
                    b"\n".join(errors) + b"\n", f"{batch_id}_error.jsonl", "batch_output", meta["owner"]
                )
            ).id
        await self._backend.update(batch_id, fields)
        await self._backend.retire(batch_id)
        return await self._backend.meta(batch_id)


def openai_batch(meta: dict[str, Any]) -> dict[str, Any]:
    """A batch as the OpenAI API shows it."""
    out = {k: v for k, v in meta.items() if k not in ("owner", "key", "total", "completed", "failed", "next", "ending")}
    out["request_counts"] = {"total": meta["total"], "completed": meta["completed"], "failed": meta["failed"]}
    return out
