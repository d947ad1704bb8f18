"""The `gateway` command (also `python -m gateway`).

gateway serve [--config F] [--host H] [--port N] [--workers N]
gateway demo [--port N]               mock upstreams + gateway on the demo config, in-memory, open auth
gateway mock-upstream [...]           the built-in OpenAI-compatible upstream
gateway config check [FILE]           validate a config and say what it would serve
gateway keys hash KEY                 the sha256 to put in auth.keys
gateway keys create NAME | rotate NAME [--grace 1h] | revoke NAME|ID|PREFIX | list
                                      client keys kept in Redis (auth.redis_keys)
gateway canary get [MODEL] | set MODEL PERCENT   on a running gateway (admin API)
gateway cache eval|stats|flush ...    the intent cache
gateway route explain|eval|calibrate|train ...
gateway report [--url URL]            latency, cost per intent, hit rate, heavy share of a running gateway
"""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import sys


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.config import load_config
    from gateway.logs import dict_config

    if args.config:
        os.environ["GATEWAY_CONFIG"] = str(args.config)
    config = load_config(args.config)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    workers = args.workers or config.server.workers
    busy = _cannot_listen(host, port)
    if busy:
        print(
            f"gateway serve: cannot listen on {host}:{port}: {busy}; choose another with --port N "
            "(or server.port, GATEWAY_SERVER__PORT)",
            file=sys.stderr,
        )
        return 1
    temp_metrics_dir = _prepare_multiproc_dir(workers)
    log_config = dict_config(config.server.log_level, config.server.log_format)
    logging.config.dictConfig(log_config)
    try:  # uvicorn applies log_config in every worker: the same format with --workers N
        uvicorn.run(
            "gateway.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=log_config,
            log_level=config.server.log_level,
            timeout_graceful_shutdown=config.server.shutdown_grace_s,  # type: ignore[arg-type]  # a float works
            lifespan="on",
        )
    finally:
        if temp_metrics_dir:
            import shutil

            shutil.rmtree(temp_metrics_dir, ignore_errors=True)
    return 0


def _cannot_listen(host: str, port: int) -> str | None:
    """Why the address cannot be bound, checked before anything starts (uvicorn would say "ready" first)."""
    import socket

    if port == 0:
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return str(exc)
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _prepare_multiproc_dir(workers: int) -> str | None:
    """prometheus-client's multiprocess mode: PROMETHEUS_MULTIPROC_DIR must exist and start empty (files
    left by an earlier run would be added to this run's counters). With several workers and no directory
    given, use a temporary one; returns it so that it is removed on exit."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
        return None
    if workers > 1:
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gateway-metrics-")
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    return None


def _demo(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from gateway.app import create_app
    from gateway.config import load_config
    from gateway.logs import dict_config
    from gateway.mock_upstream import MockServerThread, MockSettings

    # Take the port first: a busy one fails here, before anything says "listening".
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        print(
            f"gateway demo: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}; "
            "choose another port: gateway demo --port N (or make demo PORT=N)",
            file=sys.stderr,
        )
        return 1
    port = sock.getsockname()[1]
    for variable in ("LIGHT_API_KEY", "HEAVY_API_KEY"):  # the mocks take any key; the demo config names these
        os.environ.setdefault(variable, "demo-upstream-key")
    logging.config.dictConfig(dict_config("info"))
    light = MockServerThread(
        MockSettings(served_model="ft:gpt-3.5-turbo-0125:acme:support:v3", latency_ms=40, tokens_per_second=200)
    )
    heavy = MockServerThread(MockSettings(served_model="gpt-4o", latency_ms=120, tokens_per_second=80))
    with sock, light, heavy:
        env = {"LIGHT_URL": light.url, "HEAVY_URL": heavy.url, "GATEWAY_REDIS__URL": "", "GATEWAY_AUTH__OPEN": "true"}
        config = load_config(args.config, environ={**os.environ, **env})
        url = f"http://127.0.0.1:{port}"
        print(DEMO_HELP.format(url=url, light=light.url, heavy=heavy.url), flush=True)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                loop="uvloop",
                http="httptools",
                access_log=False,
                log_config=None,
                log_level="warning",
            )
        )
        server.run(sockets=[sock])
    return 0


DEMO_HELP = """
  gateway demo: listening on {url}  (light mock {light}, heavy mock {heavy}; in-memory cache, open auth)

  curl:
    curl -s {url}/v1/chat/completions -H 'content-type: application/json' \\
      -d '{{"model":"support","messages":[{{"role":"user","content":"Where is my refund?"}}]}}' -D -

  openai SDK:
    from openai import OpenAI
    client = OpenAI(base_url="{url}/v1", api_key="demo")
    answer = client.chat.completions.create(model="support",
        messages=[{{"role": "user", "content": "Prove that the square root of 2 is irrational."}}])
    print(answer.model, answer.choices[0].message.content)     # a hard question: served by the heavy model

  metrics: {url}/metrics    readiness: {url}/readyz    stop: Ctrl-C
"""


def _config_check(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.pricing import Pricing

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    pricing = Pricing(config.pricing)
    print(f"{config.source}: valid")
    for alias, route in config.models.items():
        tiers = f"light {route.deployments + route.fallbacks}" + (f", heavy {route.heavy}" if route.heavy else "")
        threshold = (
            "" if route.difficulty_threshold is None else f", heavy above difficulty {route.difficulty_threshold}"
        )
        print(f"  model {alias}: {tiers}{threshold}")
    from gateway.upstream.providers import make_provider

    for name, deployment in config.deployments.items():
        notes = _key_problems(deployment)
        if not pricing.known(deployment.pricing_key):
            notes.append(f"no price for {deployment.pricing_key!r}: its cost counts as 0")
        keys = len(deployment.api_keys) + bool(deployment.api_key_env)
        url = make_provider(deployment).url("/chat/completions")
        print(
            f"  deployment {name}: {deployment.provider} POST {url} (model {deployment.model}, "
            f"{keys or 'no'} key source{'s' * (keys != 1)})" + (f"  warning: {'; '.join(notes)}" if notes else "")
        )
    auth = "OPEN" if config.auth.open else f"{len(config.auth.keys)} keys"
    print(f"  redis: {config.redis.url or 'none (in-memory stores)'}; auth: {auth}")
    return 0


def _key_problems(deployment) -> list[str]:
    """Key sources that give no key now (named, never the key's value)."""
    problems = []
    variables = [deployment.api_key_env] if deployment.api_key_env else []
    variables += [source.env for source in deployment.api_keys if source.env]
    problems += [f"env {variable} is not set" for variable in variables if not os.environ.get(variable)]
    for source in deployment.api_keys:
        if source.file and not os.access(source.file, os.R_OK):
            problems.append(f"key file {source.file} cannot be read")
    return problems


def _keys_hash(args: argparse.Namespace) -> int:
    from gateway.auth import hash_key

    print(hash_key(args.key))
    return 0


def _key_store(args: argparse.Namespace):
    """The config's Redis (sync client) as a KeyStore, for the key commands."""
    from gateway.client_keys import KeyStore
    from gateway.config import load_config
    from gateway.redisio import make_sync_client

    config = load_config(args.config)
    if not config.redis.url:
        raise SystemExit(f"{config.source}: redis.url is not set; keys in Redis need a shared Redis")
    if not config.auth.redis_keys:
        print(f"note: {config.source} has auth.redis_keys off: the gateway will not read these keys", file=sys.stderr)
    return KeyStore(make_sync_client(config.redis.url), config.redis.prefix)


def _keys_create(args: argparse.Namespace) -> int:
    key, record = _key_store(args).create(args.name, rpm=args.rpm, tpm=args.tpm, allow_force_tier=args.allow_force_tier)
    print(key)
    print(
        f"key '{record.name}' (id {record.id}, {record.prefix}…) stored as its sha256; this is the only time "
        "it is shown",
        file=sys.stderr,
    )
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    revoked = _key_store(args).revoke(args.key)
    for record in revoked:
        print(f"revoked {record.name} (id {record.id}, {record.prefix}…)")
    print("replicas forget revoked keys within auth.redis_keys_ttl_s", file=sys.stderr)
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from gateway.upstream.retry import parse_duration

    grace = parse_duration(args.grace)
    if grace is None:
        print(f"--grace {args.grace!r}: expected a duration such as 1h, 30m, 90s or 0", file=sys.stderr)
        return 2
    key, record, old = _key_store(args).rotate(args.name, grace)
    print(key)
    until = "stop working now" if grace == 0 else f"keep working for {args.grace}"
    print(
        f"key '{record.name}' (id {record.id}) rotated: new secret {record.prefix}…; the old one(s) "
        f"({', '.join(r.prefix + '…' for r in old)}) {until}. The new key is shown only this once.",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    records = _key_store(args).records()
    if not records:
        print("no client keys in Redis", file=sys.stderr)
    for r in records:
        limits = ", ".join(f"{k} {v}" for k, v in (("rpm", r.rpm), ("tpm", r.tpm)) if v) or "no limits"
        expiry = f"  rotated out, works {_duration(r.expires_in_s)} more" if r.expires_in_s else ""
        print(f"{r.name:24} {r.id:16} {r.prefix}…  {limits}{expiry}")
    return 0


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m" if seconds >= 60 else f"{seconds:.0f}s"


def _canary(args: argparse.Namespace) -> int:
    """Talks to a running gateway's admin API, so every replica picks the change up (through Redis)."""
    import httpx

    headers = {"authorization": f"Bearer {args.admin_key}"} if args.admin_key else {}
    url = f"{args.url.rstrip('/')}/admin/canary"
    try:
        if args.canary_command == "set":
            response = httpx.put(f"{url}/{args.model}", json={"percent": args.percent}, headers=headers, timeout=10)
        else:
            response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"could not reach the gateway at {args.url}: {exc}", file=sys.stderr)
        return 1
    data = response.json()
    if response.status_code != 200:
        print(f"error {response.status_code}: {data.get('error', {}).get('message', data)}", file=sys.stderr)
        return 1
    for alias, canary in data["models"].items():
        if getattr(args, "model", None) in (None, alias):
            print(f"{alias}: {canary['percent']:g}% to {', '.join(canary['deployments'])} (version {data['version']})")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gateway")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible inference gateway")
    parser.add_argument("--version", action="version", version=f"gateway {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="config file (default: $GATEWAY_CONFIG or config/gateway.yaml)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=_serve)

    demo = sub.add_parser("demo", help="mock upstreams + the gateway on the demo config")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--config", help=argparse.SUPPRESS)
    demo.set_defaults(func=_demo)

    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", help="validate a config file")
    check.add_argument("file", nargs="?")
    check.set_defaults(func=_config_check)

    keys = sub.add_parser("keys", help="client keys").add_subparsers(dest="keys_command", required=True)
    hash_ = keys.add_parser("hash", help="print the sha256 of a key, for auth.keys")
    hash_.add_argument("key")
    hash_.set_defaults(func=_keys_hash)
    create = keys.add_parser("create", help="make a new client key, stored (hashed) in the config's Redis")
    create.add_argument("name")
    create.add_argument("--rpm", type=int)
    create.add_argument("--tpm", type=int)
    create.add_argument("--allow-force-tier", action="store_true")
    create.set_defaults(func=_keys_create)
    revoke = keys.add_parser(
        "revoke",
        help="delete a client key from Redis: by name, id, the hash prefix "
        "`keys list` shows, the key itself or its sha256",
    )
    revoke.add_argument("key", help="name, id, listed hash prefix (6+ characters), key or sha256")
    revoke.set_defaults(func=_keys_revoke)
    rotate = keys.add_parser("rotate", help="give a key a new secret; the old one works until the grace ends")
    rotate.add_argument("name", help="the key's name or id")
    rotate.add_argument("--grace", default="1h", help="how long the old secret keeps working (1h, 30m, 0; default 1h)")
    rotate.set_defaults(func=_keys_rotate)
    list_ = keys.add_parser("list", help="the client keys in Redis (names, ids, hash prefixes, limits)")
    list_.set_defaults(func=_keys_list)
    for command in (create, revoke, rotate, list_):
        command.add_argument("--config", help="config file (default: $GATEWAY_CONFIG or config/gateway.yaml)")

    canary = sub.add_parser("canary", help="read or change canary percentages on a running gateway")
    canary_sub = canary.add_subparsers(dest="canary_command", required=True)
    for name, help_ in (("get", "show the canary percentages"), ("set", "change a model's canary percentage")):
        command = canary_sub.add_parser(name, help=help_)
        command.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
        command.add_argument(
            "--admin-key", default=os.environ.get("GATEWAY_ADMIN_KEY"), help="default: $GATEWAY_ADMIN_KEY"
        )
        command.set_defaults(func=_canary)
    canary_sub.choices["get"].add_argument("model", nargs="?")
    canary_sub.choices["set"].add_argument("model")
    canary_sub.choices["set"].add_argument("percent", type=float)
    from gateway.shadow import cli as shadow_cli

    shadow_cli.register_canary(canary_sub)

    from gateway import mock_upstream, report
    from gateway.batches import cli as batches_cli
    from gateway.cache import cli as cache_cli
    from gateway.routing import cli as route_cli

    for module in (mock_upstream, cache_cli, route_cli, report, shadow_cli, batches_cli):
        module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from gateway.masking import RedactingStream

    streams = sys.stdout, sys.stderr  # every line printed below (help and errors too) has its secrets masked
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = streams


def _run(argv: list[str] | None) -> int:
    """Every failure ends in one line on stderr and an exit status, never a traceback (GATEWAY_DEBUG=1
    shows it), including a closed pipe (`gateway cache stats --json | head`)."""
    from gateway.client_keys import KeyStoreError
    from gateway.config import ConfigError

    try:
        args = build_parser().parse_args(argv)
        status = args.func(args) or 0
        sys.stdout.flush()  # a reader that went away shows up here, not at exit
        return status
    except (ConfigError, KeyStoreError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 141
    except Exception as exc:
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        print(f"error: {_explain(exc)} (GATEWAY_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


def _explain(exc: Exception) -> str:
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, RedisConnectionError):
        return f"cannot reach Redis: {exc}"
    if isinstance(exc, RedisError):
        return f"Redis: {exc}"
    return f"{type(exc).__name__}: {exc}"
