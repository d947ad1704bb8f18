"""Client keys kept in Redis, managed by id: what `gateway keys create|list|revoke|rotate` do.

    store = KeyStore(redis.Redis.from_url(url), prefix="gw:")
    key, record = store.create("team-a", rpm=60)     # the key is shown once; Redis keeps its sha256
    store.records()                                   # every key: id, name, hash prefix, limits, expiry
    store.revoke("team-a")                            # by name, id, listed hash prefix, the key or its hash
    new_key, record = store.rotate("team-a", grace_s=3600)   # the old key works until the grace ends

Layout: `{prefix}keys:{sha256}` a hash (id, name, rpm, tpm, allow_force_tier, created) — what the gateway
reads (gateway.auth) — and `{prefix}keynames:{name}` the id owning a name, taken with SET NX so two keys
cannot share a name. Limits are counted per id, so a rotated key keeps its counters and two keys never
share theirs. A rotated-out key's hash gets a Redis TTL: it stops working when the grace ends (replicas
that remember it stop within auth.redis_keys_ttl_s more).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from gateway.auth import hash_key, redis_key_name

__all__ = ["KeyRecord", "KeyStore", "KeyStoreError"]

MIN_PREFIX = 6  # a shorter hash prefix matches too easily


class KeyStoreError(Exception):
    """A key command that cannot be done (unknown or ambiguous key, name taken); the message says why."""


@dataclass(frozen=True)
class KeyRecord:
    digest: str
    id: str
    name: str
    rpm: int | None
    tpm: int | None
    allow_force_tier: bool
    expires_in_s: float | None  # set on a rotated-out key: its grace

    @property
    def prefix(self) -> str:
        return self.digest[:12]


class KeyStore:
    def __init__(self, redis, prefix: str = "gw:") -> None:
        self.redis = redis
        self.prefix = prefix

    def _name_key(self, name: str) -> str:
        return f"{self.prefix}keynames:{name}"

    def records(self) -> list[KeyRecord]:
        found = []
        for raw in self.redis.scan_iter(match=redis_key_name(self.prefix, "*"), count=500):
            name = raw.decode() if isinstance(raw, bytes) else raw
            digest = name.rsplit(":", 1)[-1]
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                continue
            fields = {k.decode(): v.decode() for k, v in self.redis.hgetall(name).items()}
            if not fields:
                continue
            ttl = self.redis.pttl(name)
            found.append(
                KeyRecord(
                    digest,
                    fields.get("id") or digest[:12],
                    fields.get("name") or digest[:8],
                    int(fields["rpm"]) if fields.get("rpm") else None,
                    int(fields["tpm"]) if fields.get("tpm") else None,
                    fields.get("allow_force_tier") in ("1", "true"),
                    ttl / 1000 if ttl and ttl > 0 else None,
                )
            )
        return sorted(found, key=lambda r: (r.name, r.expires_in_s is not None, r.digest))  # current key first

    def create(
        self, name: str, *, rpm: int | None = None, tpm: int | None = None, allow_force_tier: bool = False
    ) -> tuple[str, KeyRecord]:
        if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", name):
            raise KeyStoreError(f"invalid key name {name!r}: letters, digits, . _ @ - (64 at most)")
        key_id = "key_" + secrets.token_hex(6)
        taken = not self.redis.set(self._name_key(name), key_id, nx=True)
        if not taken and any(r.name == name for r in self.records()):  # a key made before names were indexed
            self.redis.delete(self._name_key(name))
            taken = True
        if taken:
            raise KeyStoreError(
                f"a key named {name!r} exists already; choose another name, or "
                f"`gateway keys rotate {name}` for a new secret"
            )
        return self._store(key_id, name, rpm, tpm, allow_force_tier)

    def _store(
        self, key_id: str, name: str, rpm: int | None, tpm: int | None, allow_force_tier: bool
    ) -> tuple[str, KeyRecord]:
        key = "sk-gw-" + secrets.token_urlsafe(32)
        digest = hash_key(key)
        fields = {
            "id": key_id,
            "name": name,
            "allow_force_tier": "1" if allow_force_tier else "0",
            "created": str(int(time.time())),
        }
        fields.update({field: str(value) for field, value in (("rpm", rpm), ("tpm", tpm)) if value})
        self.redis.hset(redis_key_name(self.prefix, digest), mapping=fields)
        return key, KeyRecord(digest, key_id, name, rpm, tpm, allow_force_tier, None)

    def find(self, ref: str) -> list[KeyRecord]:
        """The records `ref` names: a name or id (every key of it, rotated-out ones included), the key
        itself, its sha256, or a hash prefix as `keys list` shows it."""
        records = self.records()
        ref = ref.strip()
        by_identity = [r for r in records if ref in (r.name, r.id)]
        if by_identity:
            return by_identity
        digest = hash_key(ref)
        exact = [r for r in records if r.digest in (ref, digest)]
        if exact:
            return exact
        hex_prefix = ref.rstrip("…").rstrip(".")
        if re.fullmatch(r"[0-9a-f]+", hex_prefix) and len(hex_prefix) >= MIN_PREFIX:
            matches = [r for r in records if r.digest.startswith(hex_prefix)]
            if len({r.id for r in matches}) > 1:
                listed = ", ".join(f"{r.name} ({r.prefix}…)" for r in matches)
                raise KeyStoreError(f"{hex_prefix!r} matches several keys: {listed}; give more of the hash")
            return matches
        return []

    def revoke(self, ref: str) -> list[KeyRecord]:
        records = self.find(ref)
        if not records:
            raise KeyStoreError(
                f"no key matches {ref!r} (a name, an id, a hash prefix from `gateway keys list` "
                "of at least 6 characters, the key or its sha256)"
            )
        for record in records:
            self.redis.delete(redis_key_name(self.prefix, record.digest))
        for record in records:
            if not any(r.id == record.id for r in self.records()):
                # the whole key is gone: free its name (only if the name still points at it)
                if (self.redis.get(self._name_key(record.name)) or b"").decode() == record.id:
                    self.redis.delete(self._name_key(record.name))
        return records

    def rotate(self, ref: str, grace_s: float) -> tuple[str, KeyRecord, list[KeyRecord]]:
        """A new secret for the key; its current secrets keep working for `grace_s` (0: stop at once)."""
        records = [r for r in self.find(ref) if r.expires_in_s is None] or self.find(ref)
        ids = {r.id for r in records}
        if not records:
            raise KeyStoreError(f"no key matches {ref!r}")
        if len(ids) > 1:
            raise KeyStoreError(f"{ref!r} matches several keys ({', '.join(sorted(ids))}): rotate one id")
        current = records[0]
        key, record = self._store(current.id, current.name, current.rpm, current.tpm, current.allow_force_tier)
        for old in records:
            name = redis_key_name(self.prefix, old.digest)
            if grace_s > 0:
                self.redis.pexpire(name, max(1, int(grace_s * 1000)))
            else:
                self.redis.delete(name)
        return key, record, records
