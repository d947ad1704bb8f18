"""The model registry: what each deployment is (version, base model, fine-tune job, dataset hash, evaluation
scores, dates, owner, intended use).

Entries start from config (`deployments.NAME.registry`) and change at run time through the admin API or a
promotion; changes live in Redis (`{prefix}registry`, one JSON per deployment) so every replica sees them,
and each one is audited (`{prefix}registry:audit`: who, when, what changed, why; the last 1,000 kept).
Without Redis both live in the process.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from gateway.config import GatewayConfig, RegistryInfo

log = logging.getLogger("gateway.registry")

AUDIT_KEEP = 1000
FIELDS = tuple(RegistryInfo.model_fields)


def model_entry(config: GatewayConfig, alias: str) -> dict[str, Any]:
    """An alias in GET /v1/models: `created` and `owned_by` from the registry entry of its first deployment
    (OpenAI's model object has no room for the rest; GET /admin/models has it all)."""
    info = config.deployments[config.models[alias].deployments[0]].registry
    created = 0
    if info.created:
        try:
            created = int(datetime.fromisoformat(info.created).replace(tzinfo=UTC).timestamp())
        except ValueError:
            pass
    return {"id": alias, "object": "model", "created": created, "owned_by": info.owner or "gateway"}


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class RegistryError(ValueError):
    """A change the registry refuses (unknown deployment or field, wrong type)."""


class ModelRegistry:
    def __init__(self, config: GatewayConfig, redis=None, prefix: str = "gw:") -> None:
        self._config = {name: d.registry.model_dump() for name, d in config.deployments.items()}
        self._models = {name: d.model for name, d in config.deployments.items()}
        self._redis = redis
        self._key = f"{prefix}registry"
        self._local: dict[str, dict[str, Any]] = {}
        self._audit: list[dict[str, Any]] = []

    @property
    def names(self) -> list[str]:
        return list(self._config)

    async def get(self, name: str) -> dict[str, Any]:
        if name not in self._config:
            raise KeyError(name)
        changes = await self._changes(name)
        return {"deployment": name, "model": self._models[name], **self._config[name], **changes}

    async def all(self) -> list[dict[str, Any]]:
        return [await self.get(name) for name in self._config]

    async def update(self, name: str, changes: dict[str, Any], *, who: str, why: str) -> dict[str, Any]:
        if name not in self._config:
            raise RegistryError(f"unknown deployment {name!r}")
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise RegistryError(f"unknown registry field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
        current = await self.get(name)
        merged = {field: current[field] for field in FIELDS} | changes
        try:
            RegistryInfo.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RegistryError(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        stored = {**await self._changes(name), **changes}
        entry = {
            "at": utc_now(),
            "ts": time.time(),
            "who": who,
            "deployment": name,
            "why": why,
            "changes": {field: {"from": current[field], "to": value} for field, value in changes.items()},
        }
        if self._redis is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key, name, orjson.dumps(stored))
                pipe.lpush(f"{self._key}:audit", orjson.dumps(entry))
                pipe.ltrim(f"{self._key}:audit", 0, AUDIT_KEEP - 1)
                await pipe.execute()
        else:
            self._local[name] = stored
            self._audit.insert(0, entry)
            del self._audit[AUDIT_KEEP:]
        log.warning("registry: %s changed by %s (%s): %s", name, who, why, ", ".join(changes))
        return await self.get(name)

    async def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        if self._redis is None:
            return self._audit[:limit]
        return [orjson.loads(raw) for raw in await self._redis.lrange(f"{self._key}:audit", 0, limit - 1)]

    async def _changes(self, name: str) -> dict[str, Any]:
        if self._redis is None:
            return self._local.get(name, {})
        raw = await self._redis.hget(self._key, name)
        return orjson.loads(raw) if raw else {}
