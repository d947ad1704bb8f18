"""`gateway cache stats` and `gateway cache flush`: the shared cache in Redis, from the command line.

    cache = register_cli(sub)          # gateway/cache/cli.py makes the `cache` parser
    add_commands(cache)                # adds `stats [--config F | --url U] [--json]`,
                                       # `flush [--intent I] [--config F | --url U] [--yes]`

Both read redis.url from the config (or $GATEWAY_CONFIG, or GATEWAY_REDIS__URL), or, with --url, ask a
running gateway's admin API (GET /admin/cache/stats, DELETE /admin/cache; --admin-key or
$GATEWAY_ADMIN_KEY): the only way to an in-memory cache. `flush` asks for confirmation unless --yes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import orjson

__all__ = ["add_commands", "run_stats", "run_flush"]


def add_commands(cache_subparsers: argparse._SubParsersAction) -> None:
    stats = cache_subparsers.add_parser("stats", help="per-intent entries, hits, misses, hit rate, saved cost")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=run_stats)
    flush = cache_subparsers.add_parser("flush", help="delete cached answers (one intent, or all)")
    flush.add_argument("--intent", default=None, help="only this intent's entries")
    flush.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    flush.set_defaults(func=run_flush)
    for command in (stats, flush):
        command.add_argument(
            "--config",
            metavar="FILE",
            default=None,
            help="read the cache from this config's Redis (default: $GATEWAY_CONFIG)",
        )
        command.add_argument(
            "--url", default=None, help="ask a running gateway instead (its admin API), e.g. http://127.0.0.1:8080"
        )
        command.add_argument(
            "--admin-key",
            default=os.environ.get("GATEWAY_ADMIN_KEY"),
            help="the admin key, for --url (default: $GATEWAY_ADMIN_KEY)",
        )


def _admin_call(args: argparse.Namespace, method: str, path: str, params: dict | None = None) -> dict | None:
    """The JSON of a running gateway's admin API, or None after printing why not."""
    import httpx

    headers = {"authorization": f"Bearer {args.admin_key}"} if args.admin_key else {}
    try:
        response = httpx.request(method, args.url.rstrip("/") + path, params=params, headers=headers, timeout=30)
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        print(f"error: could not reach the gateway's admin API at {args.url}: {exc}", file=sys.stderr)
        return None
    if response.status_code != 200:
        message = data.get("error", {}).get("message", data) if isinstance(data, dict) else data
        print(f"error {response.status_code} from {args.url}: {message}", file=sys.stderr)
        return None
    return data


def _confirmed(args: argparse.Namespace, where: str) -> bool:
    if args.yes:
        return True
    what = f"the cached answers of intent {args.intent!r}" if args.intent else "every cached answer"
    if not sys.stdin.isatty():
        print(f"refusing to delete {what} without confirmation: add --yes", file=sys.stderr)
        return False
    reply = input(f"delete {what} in {where}? [y/N] ")
    return reply.strip().lower() in ("y", "yes")


def _open(args: argparse.Namespace):
    """(cache, redis client) on the config's Redis, or None after printing why not."""
    from gateway.cache.service import build_cache
    from gateway.config import load_config
    from gateway.intents import IntentsConfig
    from gateway.metrics import Metrics
    from gateway.redisio import make_client

    config = load_config(args.config)
    if not config.redis.url:
        print(
            "no redis.url in the config: the cache is in the gateway's own memory; use "
            "GET /admin/cache/stats or DELETE /admin/cache on the running gateway",
            file=sys.stderr,
        )
        return None
    timeout = max(1.0, config.redis.timeout_ms / 1000)  # an admin command may wait longer than a request
    client = make_client(config.redis.url, socket_timeout_s=timeout, pool_size=4)[0]
    intents = IntentsConfig.model_validate(config.intents) if config.intents else None
    return build_cache(config, intents, client, Metrics()), client


def _run(args: argparse.Namespace, action) -> int:
    from gateway.cache.store import StoreUnavailable

    opened = _open(args)
    if opened is None:
        return 2
    cache, client = opened

    async def go():
        try:
            return await action(cache)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except StoreUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _print_stats(stats: dict, as_json: bool) -> None:
    if as_json:
        print(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())
        return
    print(
        f"{'intent':<22}{'entries':>8}{'vectors':>8}{'hits':>8}{'exact':>7}{'semantic':>9}"
        f"{'misses':>8}{'hit rate':>9}{'saved tokens':>13}{'saved $':>11}"
    )
    total = {"hits": 0, "misses": 0, "saved_usd": 0.0, "saved_tokens": 0, "entries": 0}
    for name, row in stats["intents"].items():
        print(
            f"{name:<22}{row['entries']:>8}{row['vectors']:>8}{row['hits']:>8}{row['hits_exact']:>7}"
            f"{row['hits_semantic']:>9}{row['misses']:>8}{row['hit_rate']:>9.1%}{row['saved_tokens']:>13}"
            f"{row['saved_usd']:>11.4f}"
        )
        for key in total:
            total[key] += row[key]
    asked = total["hits"] + total["misses"]
    print(
        f"total: {total['entries']} entries, hit rate {total['hits'] / asked if asked else 0:.1%}, "
        f"saved {total['saved_tokens']} tokens, ${total['saved_usd']:.4f}"
    )


def run_stats(args: argparse.Namespace) -> int:
    if args.url:
        data = _admin_call(args, "GET", "/admin/cache/stats")
        if data is None:
            return 1
        if not data.pop("enabled", True):
            print("the cache is off on this gateway", file=sys.stderr)
        _print_stats(data, args.json)
        return 0

    async def action(cache) -> int:
        _print_stats(await cache.stats(), args.json)
        return 0

    return _run(args, action)


def run_flush(args: argparse.Namespace) -> int:
    if args.url:
        if not _confirmed(args, f"the gateway at {args.url}"):
            return 1
        data = _admin_call(args, "DELETE", "/admin/cache", {"intent": args.intent} if args.intent else None)
        if data is None:
            return 1
        print(f"flushed {data.get('flushed', 0)} cached answers" + (f" of intent {args.intent}" if args.intent else ""))
        return 0

    async def action(cache) -> int:
        if args.intent is not None and args.intent not in cache.labels:
            print(f"error: unknown intent {args.intent!r} (known: {', '.join(sorted(cache.labels))})", file=sys.stderr)
            return 2
        if not _confirmed(args, "the shared cache in Redis"):
            return 1
        removed = await cache.flush(args.intent)
        print(f"flushed {removed} cached answers" + (f" of intent {args.intent}" if args.intent else ""))
        return 0

    return _run(args, action)
