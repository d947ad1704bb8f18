"""`gateway cache ...` commands. `register_cli(subparsers)` adds the `cache` parser and returns its
sub-parsers so later commands (`cache stats`, `cache flush`) are one `add_parser` call each:

    cache = register_cli(sub)
    flush = cache.add_parser("flush", help="...")
    flush.set_defaults(func=run_flush)
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register_cli"]


def register_cli(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    parser = subparsers.add_parser("cache", help="semantic cache tools")
    commands = parser.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)

    evaluate = commands.add_parser("eval", help="precision/recall of the guarded semantic match on "
                                                "labelled pairs (JSON Lines: a, b, same)")
    evaluate.add_argument("pairs", metavar="PAIRS.jsonl")
    evaluate.add_argument("--threshold", type=float, default=None,
                          help="cosine threshold (default: the semantic cache default)")
    evaluate.add_argument("--intents", metavar="FILE", default=None,
                          help="also require both questions to get the same configured intent")
    evaluate.add_argument("-v", "--verbose", action="store_true", help="list every false hit and miss")
    evaluate.set_defaults(func=run_eval)

    from gateway.cache.commands import add_commands

    add_commands(commands)  # stats, flush
    return commands


def run_eval(args: argparse.Namespace) -> int:
    from gateway.cache.evaluate import evaluate_pairs, load_pairs
    from gateway.cache.semantic import SemanticSettings
    from gateway.embeddings import Embedder

    try:
        rows = load_pairs(args.pairs)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    embedder = Embedder.load()
    if not embedder.available:
        print("error: the embedding model is unavailable; the semantic cache is off without it",
              file=sys.stderr)
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

    report = evaluate_pairs(rows, embedder, settings, detector)
    same = report["tp"] + report["fn"]
    print(f"pairs {report['pairs']} (same {same}, different {report['pairs'] - same})  "
          f"threshold {report['threshold']:.2f}" + ("  intents required" if detector else ""))
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
