"""`gateway cache stats` and `gateway cache flush`: the shared cache in Redis, from the command line.

    cache = register_cli(sub)          # gateway/cache/cli.py makes the `cache` parser
    add_commands(cache)                # adds `stats [--config F] [--json]`, `flush [--intent I] [--config F]`

Both read redis.url from the config (or $GATEWAY_CONFIG, or GATEWAY_REDIS__URL). Without a Redis URL the
cache lives inside the running gateway's process: use GET /admin/cache/stats and DELETE /admin/cache.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

__all__ = ["add_commands", "run_stats", "run_flush"]


def add_commands(cache_subparsers: argparse._SubParsersAction) -> None:
    stats = cache_subparsers.add_parser("stats", help="per-intent entries, hits, misses, hit rate, saved cost")
    stats.add_argument("--config", metavar="FILE", default=None)
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=run_stats)
    flush = cache_subparsers.add_parser("flush", help="delete cached answers (one intent, or all)")
    flush.add_argument("--intent", default=None, help="only this intent's entries")
    flush.add_argument("--config", metavar="FILE", default=None)
    flush.set_defaults(func=run_flush)


def _open(args: argparse.Namespace):
    """(cache, redis client) on the config's Redis, or None after printing why not."""
    import redis.asyncio as aioredis

    from gateway.cache.service import build_cache
    from gateway.config import load_config
    from gateway.intents import IntentsConfig
    from gateway.metrics import Metrics

    config = load_config(args.config)
    if not config.redis.url:
        print("no redis.url in the config: the cache is in the gateway's own memory; use "
              "GET /admin/cache/stats or DELETE /admin/cache on the running gateway", file=sys.stderr)
        return None
    timeout = max(1.0, config.redis.timeout_ms / 1000)  # an admin command may wait longer than a request
    client = aioredis.from_url(config.redis.url, socket_timeout=timeout, socket_connect_timeout=timeout)
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


def run_stats(args: argparse.Namespace) -> int:
    async def action(cache) -> int:
        stats = await cache.stats()
        if args.json:
            print(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode())
            return 0
        print(f"{'intent':<22}{'entries':>8}{'vectors':>8}{'hits':>8}{'exact':>7}{'semantic':>9}"
              f"{'misses':>8}{'hit rate':>9}{'saved tokens':>13}{'saved $':>11}")
        total = {"hits": 0, "misses": 0, "saved_usd": 0.0, "saved_tokens": 0, "entries": 0}
        for name, row in stats["intents"].items():
            print(f"{name:<22}{row['entries']:>8}{row['vectors']:>8}{row['hits']:>8}{row['hits_exact']:>7}"
                  f"{row['hits_semantic']:>9}{row['misses']:>8}{row['hit_rate']:>9.1%}{row['saved_tokens']:>13}"
                  f"{row['saved_usd']:>11.4f}")
            for key in total:
                total[key] += row[key]
        asked = total["hits"] + total["misses"]
        print(f"total: {total['entries']} entries, hit rate {total['hits'] / asked if asked else 0:.1%}, "
              f"saved {total['saved_tokens']} tokens, ${total['saved_usd']:.4f}")
        return 0

    return _run(args, action)


def run_flush(args: argparse.Namespace) -> int:
    async def action(cache) -> int:
        if args.intent is not None and args.intent not in cache.labels:
            print(f"error: unknown intent {args.intent!r} (known: {', '.join(sorted(cache.labels))})",
                  file=sys.stderr)
            return 2
        removed = await cache.flush(args.intent)
        print(f"flushed {removed} cached answers" + (f" of intent {args.intent}" if args.intent else ""))
        return 0

    return _run(args, action)
