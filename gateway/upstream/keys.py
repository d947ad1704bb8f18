"""The upstream API keys of one deployment, read from their sources and rotated.

    ring = KeyRing(deployment, headers_for=provider.headers)
    key = ring.pick()                  # round robin over the keys in service; key.headers is ready to send
    ring.set_aside(key)                # the upstream refused it (401/403): the others carry on
    ring.candidates(after=key)         # the other keys to try for this request, best first

Sources are `api_key_env` (one key) and `api_keys` (several: `env` or `file`, a file holding one key per
line). They are read again every `keys_refresh_s`, so a rotated secret (a new value in a mounted file)
is used without a restart. A key set aside comes back after `key_aside_s`, or at once when its value
changes. When every key is aside the ring still hands one out (the one aside longest): the upstream then
says whether it works again, and the client gets the upstream's refusal rather than nothing.

Keys never reach logs: a key is named by its id (the variable or file name, or the configured `id`) and
the first 8 hex digits of its sha256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from gateway.config import Deployment

__all__ = ["KeyRing", "LiveKey"]

log = logging.getLogger("gateway.upstream.keys")


@dataclass(eq=False, slots=True)
class LiveKey:
    id: str
    secret: str | None  # None: a deployment without a key (a local vLLM, the mock)
    headers: dict[str, str]
    rpm: int | None = None  # this key's own quota, when it has one
    tpm: int | None = None
    aside_until: float = 0.0
    fingerprint: str = field(default="")
    limited: bool = field(default=False)  # has its own quota

    def __post_init__(self) -> None:
        if self.secret and not self.fingerprint:
            self.fingerprint = hashlib.sha256(self.secret.encode()).hexdigest()[:8]
        self.limited = self.rpm is not None or self.tpm is not None

    def __str__(self) -> str:
        return f"{self.id} (sha256 {self.fingerprint}…)" if self.secret else self.id


class KeyRing:
    def __init__(
        self,
        deployment: Deployment,
        headers_for: Callable[[str | None], dict[str, str]],
        *,
        name: str = "",
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._deployment = deployment
        self._headers_for = headers_for
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._refresh_s = deployment.keys_refresh_s
        self._aside_s = deployment.key_aside_s
        self._keyless = not deployment.api_key_env and not deployment.api_keys
        self._keys: list[LiveKey] = []
        self._in_service: list[LiveKey] = []
        self._cursor = 0
        self._problems: dict[str, str] = {}  # source -> last problem logged, so it is logged once
        self._next_refresh = 0.0
        self.refresh()

    @property
    def keys(self) -> list[LiveKey]:
        return list(self._keys)

    def refresh(self) -> None:
        """Read every source again; keys whose value did not change keep their state."""
        now = self._clock()
        self._next_refresh = now + self._refresh_s
        if self._keyless:
            if not self._keys:
                self._keys = [LiveKey("none", None, self._headers_for(None))]
                self._in_service = list(self._keys)
            return
        known = {(k.id, k.secret): k for k in self._keys}
        fresh: list[LiveKey] = []
        for key_id, secret, rpm, tpm in self._read_sources():
            fresh.append(known.get((key_id, secret)) or LiveKey(key_id, secret, self._headers_for(secret), rpm, tpm))
        if not fresh and self._keys:
            fresh = self._keys  # every source failed to read: keep what worked last
        elif not fresh:
            fresh = [LiveKey("none", None, self._headers_for(None))]
        if [(k.id, k.secret) for k in fresh] != [(k.id, k.secret) for k in self._keys] and self._keys:
            log.info("deployment %s: upstream keys reloaded: %s", self.name, ", ".join(map(str, fresh)))
        self._keys = fresh
        self._in_service = [k for k in fresh if k.aside_until <= now]

    def _read_sources(self) -> list[tuple[str, str, int | None, int | None]]:
        d = self._deployment
        found: list[tuple[str, str, int | None, int | None]] = []
        if d.api_key_env:
            value = self._read_env(d.api_key_env)
            if value:
                found.append((d.api_key_env, value, None, None))
        for source in d.api_keys:
            if source.env:
                value = self._read_env(source.env)
                if value:
                    found.append((source.name, value, source.rpm, source.tpm))
                continue
            assert source.file is not None  # exactly one of env and file (UpstreamKey's validator)
            lines = self._read_file(source.file)
            for n, line in enumerate(lines):
                found.append(
                    (source.name if len(lines) == 1 else f"{source.name}#{n + 1}", line, source.rpm, source.tpm)
                )
        return found

    def _read_env(self, variable: str) -> str | None:
        value = (self._environ.get(variable) or "").strip()
        self._note(variable, None if value else f"environment variable {variable} is not set or empty")
        return value or None

    def _read_file(self, path: str) -> list[str]:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self._note(path, f"cannot read key file {path}: {getattr(exc, 'strerror', None) or exc}")
            return []
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        self._note(path, None if lines else f"key file {path} holds no key")
        return lines

    def _note(self, source: str, problem: str | None) -> None:
        if problem and self._problems.get(source) != problem:
            log.warning("deployment %s: %s", self.name, problem)
        if problem:
            self._problems[source] = problem
        else:
            self._problems.pop(source, None)

    def pick(self) -> LiveKey:
        """The next key in service (round robin); the one aside longest when none is."""
        now = self._clock()
        if now >= self._next_refresh:
            self.refresh()
        keys = self._in_service
        if len(keys) == 1:
            return keys[0]
        if not keys:
            return self._back_in_service(now)
        self._cursor = (self._cursor + 1) % len(keys)
        return keys[self._cursor]

    def _back_in_service(self, now: float) -> LiveKey:
        keys = [k for k in self._keys if k.aside_until <= now]
        if keys:
            self._in_service = keys
            return keys[0]
        return min(self._keys, key=lambda k: k.aside_until)

    def candidates(self, after: LiveKey) -> list[LiveKey]:
        """The keys to try once `after` failed: the others in service, from the next one on."""
        keys = [k for k in self._in_service if k is not after]
        if after in self._in_service:
            start = self._in_service.index(after)
            keys = self._in_service[start + 1 :] + self._in_service[:start]
        return keys

    def set_aside(self, key: LiveKey, status: int) -> None:
        if key.secret is None:
            return
        now = self._clock()
        was_aside, key.aside_until = key.aside_until > now, now + self._aside_s
        self._in_service = [k for k in self._in_service if k is not key]
        if not was_aside:
            log.warning(
                "deployment %s: the upstream refused key %s with %d; set aside for %.0fs, %d other key(s) in service",
                self.name,
                key,
                status,
                self._aside_s,
                len(self._in_service),
            )
