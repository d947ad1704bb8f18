"""Client keys: `Authorization: Bearer <key>` checked against sha256 hashes, never the keys themselves.

Keys come from the config (auth.keys) and, when auth.redis_keys is on, from Redis hashes at
`{prefix}keys:{sha256}` (fields: id, name, rpm, tpm, allow_force_tier) so keys can be added, rotated and
revoked without a deploy (`gateway keys create|rotate|revoke|list`, gateway.client_keys); a replica
remembers what it read (or that a key is unknown) for auth.redis_keys_ttl_s, so the hot path does not ask
Redis every time. Each key has an id (a config key: its name, unique in the config): limits are counted
per id, so two keys never share counters and a rotated key keeps its own.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

from gateway.config import AuthConfig
from gateway.errors import AuthenticationFailed, PermissionDenied
from gateway.redisio import RedisUnavailable

log = logging.getLogger("gateway.auth")


@dataclass(frozen=True, slots=True)
class ClientKey:
    name: str
    rpm: int | None = None
    tpm: int | None = None
    allow_force_tier: bool = False
    id: str = ""  # what limits are counted by; "" means the name
    team: str | None = None  # spend budgets of that team apply too (gateway/spend.py)

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.name)


OPEN_KEY = ClientKey(name="open", allow_force_tier=True)


def redis_key_name(prefix: str, digest: str) -> str:
    return f"{prefix}keys:{digest}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization")
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return headers.get("api-key")  # Azure-style clients


class Authenticator:
    def __init__(self, config: AuthConfig, redis=None) -> None:
        """`redis`: a gateway.redisio use (None: only the keys of the config)."""
        self.open = config.open
        self._keys = {k.sha256: ClientKey(k.name, k.rpm, k.tpm, k.allow_force_tier, team=k.team) for k in config.keys}
        self._admin = config.admin_key_sha256
        self._redis = redis if config.redis_keys else None
        self._prefix = redis.prefix if redis is not None else "gw:"
        self._ttl_s = config.redis_keys_ttl_s
        self._remembered: dict[str, tuple[float, ClientKey | None]] = {}

    async def check(self, headers: dict[str, str]) -> ClientKey:
        key = bearer(headers)
        if key is None:
            if self.open:
                return OPEN_KEY
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
        digest = hash_key(key)
        client = self._keys.get(digest) or await self._from_redis(digest)
        if client is not None:
            return client
        if self.open:
            return OPEN_KEY
        raise AuthenticationFailed("invalid API key")

    async def _from_redis(self, digest: str) -> ClientKey | None:
        if self._redis is None:
            return None
        now = time.monotonic()
        remembered = self._remembered.get(digest)
        if remembered and remembered[0] > now:
            return remembered[1]
        name = redis_key_name(self._prefix, digest)
        try:
            fields = await self._redis.call("read", lambda: self._redis.client.hgetall(name))
        except RedisUnavailable:  # keys we already know keep working (the use logs, throttled)
            return remembered[1] if remembered else None
        client = None
        if fields:
            get = lambda name: (fields.get(name.encode()) or b"").decode() or None  # noqa: E731
            rpm, tpm = get("rpm"), get("tpm")
            client = ClientKey(
                name=get("name") or digest[:8],
                id=get("id") or digest[:12],
                rpm=int(rpm) if rpm else None,
                tpm=int(tpm) if tpm else None,
                allow_force_tier=get("allow_force_tier") in ("1", "true"),
                team=get("team"),
            )
        if len(self._remembered) > 10_000:
            self._remembered.clear()
        self._remembered[digest] = (now + self._ttl_s, client)
        return client

    def check_admin(self, headers: dict[str, str]) -> None:
        key = bearer(headers)
        if self._admin is None:
            if self.open:
                return
            raise PermissionDenied("the admin API is disabled: set auth.admin_key_sha256")
        if key is None or hash_key(key) != self._admin:
            raise AuthenticationFailed("invalid admin key")
