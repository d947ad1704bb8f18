"""The gateway's configuration: pydantic models of config/gateway.yaml, validated once at start.

`load_config(path)` reads YAML, expands `${VAR}` / `${VAR:-default}` in strings, applies `GATEWAY_*`
environment overrides (`GATEWAY_SERVER__PORT=9000` sets server.port), reads the pricing and intents files
named in it (relative to the config file), and validates. Any error raises `ConfigError` naming the file
and the dotted path of the bad field.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "gateway.yaml"


class ConfigError(Exception):
    """A configuration that cannot start the gateway; the message names the file and the field."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(1_048_576, gt=0)
    upstream_client: Literal["aiohttp", "httpx", "httpx-aiohttp"] = "aiohttp"
    max_connections: int = Field(1000, gt=0)
    shutdown_grace_s: float = Field(20.0, ge=0)
    log_level: str = "info"


class RedisConfig(Section):
    url: str | None = None  # None or empty: in-memory stores (single process)
    prefix: str = "gw:"
    timeout_ms: int = Field(50, gt=0)

    @field_validator("url")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None


class ApiKey(Section):
    name: str
    sha256: str
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    allow_force_tier: bool = False

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64-character lowercase hex sha256 of the key")
        return value


class AuthConfig(Section):
    open: bool = False  # accept any or no key; only for the demo and local use
    keys: list[ApiKey] = []
    admin_key_sha256: str | None = None
    redis_keys: bool = False  # also accept keys stored in Redis under {prefix}keys:{sha256} (`gateway keys create`)
    redis_keys_ttl_s: float = Field(10.0, gt=0)  # how long a replica remembers a Redis key (or its absence)

    @model_validator(mode="after")
    def _some_way_in(self) -> "AuthConfig":
        if not self.open and not self.keys and not self.redis_keys:
            raise ValueError("no client keys configured: add auth.keys, set auth.redis_keys, or set auth.open: true")
        return self


class Timeouts(Section):
    connect: float = Field(3.0, gt=0)
    read: float = Field(60.0, gt=0)  # between bytes; for a stream, between chunks


class Deployment(Section):
    base_url: str
    model: str  # the upstream's model name
    api_key_env: str | None = None  # name of the env var holding the upstream key
    headers: dict[str, str] = {}
    timeout: Timeouts = Timeouts()
    rpm: int | None = Field(None, gt=0)  # provider quota: the gateway stays under it
    tpm: int | None = Field(None, gt=0)
    price_as: str | None = None  # pricing-table entry, when it differs from `model`

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"https?://[^/]+", value):
            raise ValueError(f"not an http(s) URL: {value!r}")
        return value.rstrip("/")

    @property
    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @property
    def pricing_key(self) -> str:
        return self.price_as or self.model


class CanaryConfig(Section):
    deployments: list[str] = Field(min_length=1)  # tried first by canary users, then the stable chain
    percent: float = Field(0.0, ge=0, le=100)  # the value at start; changed at run time (admin API, CLI)
    rollback_error_rate: float = Field(0.5, gt=0, le=1)  # over the last `rollback_window` canary requests
    rollback_window: int = Field(50, ge=5)


class ModelRoute(Section):
    """A public model alias: the deployments that serve it, by tier, in fallback order."""

    deployments: list[str] = Field(min_length=1)  # the light tier, in order
    fallbacks: list[str] = []  # the base model, tried after the light deployments
    heavy: list[str] = []  # the heavy tier; also the last fallback of the light tier
    difficulty_threshold: float | None = Field(None, ge=0, le=1)  # None: never route by difficulty
    sticky_heavy: bool = True  # a conversation that went heavy stays heavy
    canary: CanaryConfig | None = None  # a share of the light traffic tries these deployments first


class EmbeddingConfig(Section):
    enabled: bool = True  # off: intents by keywords, difficulty by features, no semantic cache


class CacheConfig(Section):
    enabled: bool = True
    max_temperature: float = Field(0.7, ge=0)  # above this an answer is too random to reuse
    semantic: bool = True
    max_entries_per_intent: int = Field(2000, gt=0)
    redis_timeout_ms: int = Field(10, gt=0)  # a cache lookup waits no longer on Redis, then serves without it
    default_ttl_s: int = Field(3600, gt=0)


class RetryConfig(Section):
    attempts: int = Field(3, ge=1)  # per deployment
    base_s: float = Field(0.1, ge=0)
    max_backoff_s: float = Field(5.0, ge=0)
    deadline_s: float = Field(30.0, gt=0)  # whole request, all retries and fallbacks
    budget_ratio: float = Field(0.2, ge=0, le=1)  # retries at most this share of requests


class BreakerConfig(Section):
    failures: int = Field(5, ge=1)
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(15.0, gt=0)


class ResilienceConfig(Section):
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    batch_reserve: float = Field(0.3, ge=0, le=1)  # batch traffic stops when less than this share of a budget is left
    normal_reserve: float = Field(0.1, ge=0, le=1)


class Price(Section):
    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


class GatewayConfig(Section):
    server: ServerConfig = ServerConfig()
    redis: RedisConfig = RedisConfig()
    auth: AuthConfig
    deployments: dict[str, Deployment]
    models: dict[str, ModelRoute]
    pricing: dict[str, Price] = {}
    embedding: EmbeddingConfig = EmbeddingConfig()
    cache: CacheConfig = CacheConfig()
    resilience: ResilienceConfig = ResilienceConfig()
    intents: dict[str, Any] = {}  # validated by gateway.intents
    difficulty: dict[str, Any] = {}  # validated by gateway.routing.difficulty
    source: str = "<dict>"

    @model_validator(mode="after")
    def _references(self) -> "GatewayConfig":
        for alias, route in self.models.items():
            names = {field: getattr(route, field) for field in ("deployments", "fallbacks", "heavy")}
            if route.canary is not None:
                names["canary.deployments"] = route.canary.deployments
            for field, listed in names.items():
                for name in listed:
                    if name not in self.deployments:
                        known = ", ".join(sorted(self.deployments))
                        raise ValueError(f"models.{alias}.{field}: unknown deployment {name!r} (known: {known})")
            if route.difficulty_threshold is not None and not route.heavy:
                raise ValueError(f"models.{alias}.difficulty_threshold is set but models.{alias}.heavy is empty")
        return self

    def chain(self, alias: str, tier: str) -> list[tuple[str, Deployment]]:
        """Deployments to try for a tier, in order: the tier's own, then its fallbacks."""
        route = self.models[alias]
        if tier == "heavy":
            names = route.heavy + route.deployments + route.fallbacks
        elif tier == "canary":
            names = route.canary.deployments + route.deployments + route.fallbacks + route.heavy
        else:
            names = route.deployments + route.fallbacks + route.heavy
        return [(name, self.deployments[name]) for name in dict.fromkeys(names)]


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, environ: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: environ.get(m.group(1)) or m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: _expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ) for v in value]
    return value


def _apply_env_overrides(data: dict, environ: dict[str, str]) -> None:
    for name, raw in environ.items():
        # Only SECTION__FIELD names: GATEWAY_CONFIG, GATEWAY_ADMIN_KEY or a Kubernetes service link such
        # as GATEWAY_PORT=tcp://... are not config fields.
        if not name.startswith("GATEWAY_") or "__" not in name:
            continue
        path = name[len("GATEWAY_"):].lower().split("__")
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment {name}: {'.'.join(path)} is not a section")
        node[path[-1]] = yaml.safe_load(raw) if raw else None


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def _format_validation(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def build_config(data: dict, source: str = "<dict>", base_dir: Path | None = None,
                 environ: dict[str, str] | None = None) -> GatewayConfig:
    """Validate a config mapping. `pricing_file` / `intents_file` (relative to base_dir) hold the whole
    `pricing` / `intents` section; keys given inline win over the file's."""
    data = _expand_env(dict(data), os.environ if environ is None else environ)
    base_dir = base_dir or CONFIG_DIR
    for key, target in (("pricing_file", "pricing"), ("intents_file", "intents")):
        if key in data:
            file = base_dir / data.pop(key)
            loaded = _read_yaml(file)
            data[target] = {**loaded, **data.get(target, {})}
    try:
        config = GatewayConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_validation(source, exc)) from None
    _validate_sections(config)
    return config


def _validate_sections(config: GatewayConfig) -> None:
    """Sections owned by other modules are validated by them, here, so a bad one stops the start too."""
    from gateway.intents import IntentsConfig
    from gateway.routing.difficulty import DifficultySettings

    for name, model, data in (("intents", IntentsConfig, config.intents),
                              ("difficulty", DifficultySettings, config.difficulty)):
        try:
            model.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_validation(f"{config.source} ({name})", exc)) from None


def load_config(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> GatewayConfig:
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)
    data = _read_yaml(path)
    _apply_env_overrides(data, dict(environ))
    return build_config(data, source=str(path), base_dir=path.parent, environ=environ)
