"""`gateway route ...`: look at, evaluate, calibrate and retrain the difficulty scorer.

    gateway route explain "PROMPT" [--threshold T]      score, tier (light/heavy) and reasons
    gateway route eval FILE.jsonl [--threshold T]       accuracy, hard precision/recall, AUC, heavy share, cost
    gateway route calibrate FILE.jsonl [--target-recall R | --target-heavy-share S]
    gateway route train [FILE.jsonl ...] [--output PATH | --overwrite]
                                                        refit both models; writes ./difficulty_model.new.json
                                                        unless told where (--overwrite: the shipped weights)

Every command takes `--config FILE` (default: $GATEWAY_CONFIG or config/gateway.yaml when it loads) and
`--model ALIAS` (default "support"): the default threshold is that alias's `difficulty_threshold`, and prices
come from the config's pricing table for the alias's first light and first heavy deployment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.embeddings import Embedder
    from gateway.pricing import Pricing
    from gateway.routing.difficulty import DifficultyScorer, DifficultySettings

DEFAULT_THRESHOLD = 0.5
PROMPT_TOKENS_PER_CHAR = 0.25  # ~4 characters a token
COMPLETION_TOKENS = 150  # a typical support answer
NEW_WEIGHTS = "difficulty_model.new.json"
# USD per million tokens (input, output) when no config is at hand: config/pricing.yaml's figures for the
# fine-tuned gpt-3.5 (light) and gpt-4o (heavy).
DEFAULT_LIGHT_PRICE = (3.00, 6.00)
DEFAULT_HEAVY_PRICE = (2.50, 10.00)

CostFn = Callable[[int, int], float]  # (prompt_tokens, completion_tokens) -> USD


def register_cli(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="gateway config (threshold, prices, difficulty settings)")
    common.add_argument("--model", default="support", help="model alias whose threshold and tiers apply")
    common.add_argument("--no-embedding", action="store_true", help="score with the features-only model")
    common.add_argument(
        "--embedding",
        choices=("static", "usem3"),
        help="embedding model whose vectors are scored (default: the config's embedding.model, static)",
    )
    common.add_argument(
        "--no-second-opinion",
        action="store_true",
        help="keep scores near the threshold as they are (default: difficulty.second_opinion, usem3, looks again)",
    )

    parser = subparsers.add_parser("route", help="difficulty routing tools")
    commands = parser.add_subparsers(dest="route_command", metavar="COMMAND", required=True)

    explain = commands.add_parser("explain", parents=[common], help="score one prompt and say why")
    explain.add_argument("prompt")
    explain.add_argument("--threshold", type=float)
    explain.set_defaults(func=run_explain)

    evaluate = commands.add_parser("eval", parents=[common], help="quality and cost on labelled prompts (JSONL)")
    evaluate.add_argument("file", metavar="FILE.jsonl")
    evaluate.add_argument("--threshold", type=float)
    evaluate.add_argument("-v", "--verbose", action="store_true", help="list every misrouted prompt")
    evaluate.set_defaults(func=run_eval)

    calibrate = commands.add_parser("calibrate", parents=[common], help="choose a threshold on labelled prompts")
    calibrate.add_argument("file", metavar="FILE.jsonl")
    target = calibrate.add_mutually_exclusive_group()
    target.add_argument("--target-recall", type=float, help="lowest acceptable recall of hard prompts")
    target.add_argument("--target-heavy-share", type=float, help="share of requests to send heavy")
    calibrate.set_defaults(func=run_calibrate)

    train = commands.add_parser("train", parents=[common], help="refit the scorer and write its weights")
    train.add_argument(
        "files", nargs="*", metavar="FILE.jsonl", help="labelled prompts (default: the shipped training files)"
    )
    train.add_argument(
        "--output",
        "--out",
        dest="output",
        help=f"weights file to write (default: {NEW_WEIGHTS}; the shipped weights are left alone)",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="write over the shipped weights (or over an existing --output file)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=run_train)
    return commands


# --- config --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    threshold: float
    light_cost: CostFn
    heavy_cost: CostFn
    light_name: str
    heavy_name: str
    settings: DifficultySettings
    embedding_enabled: bool
    source: str
    embedding_model: str = "static"


def _price_fn(price: tuple[float, float]) -> CostFn:
    return lambda p, c: (p * price[0] + c * price[1]) / 1_000_000


def _priced(pricing: Pricing, model: str) -> CostFn:
    return lambda p, c: pricing.cost(model, p, c)


def _context(args: argparse.Namespace) -> _Context:
    from gateway.routing.difficulty import DifficultySettings

    ctx = _Context(
        DEFAULT_THRESHOLD,
        _price_fn(DEFAULT_LIGHT_PRICE),
        _price_fn(DEFAULT_HEAVY_PRICE),
        "light (default prices)",
        "heavy (default prices)",
        DifficultySettings(),
        True,
        "defaults",
    )
    cfg = None
    try:
        from gateway.config import load_config

        cfg = load_config(args.config)
    except Exception as exc:  # no config is fine for offline tools, unless one was asked for
        if args.config:
            raise SystemExit(f"error: cannot load config {args.config}: {exc}") from exc
    if cfg is not None:
        ctx.source = getattr(cfg, "source", "config")
        route = cfg.models.get(args.model)
        if route is not None:
            if route.difficulty_threshold is not None:
                ctx.threshold = route.difficulty_threshold
            from gateway.pricing import Pricing

            pricing = Pricing(cfg.pricing)
            light = cfg.deployments[route.deployments[0]].pricing_key
            heavy = cfg.deployments[(route.heavy or route.deployments)[0]].pricing_key
            if pricing.known(light) and pricing.known(heavy):
                ctx.light_cost = _priced(pricing, light)
                ctx.heavy_cost = _priced(pricing, heavy)
                ctx.light_name, ctx.heavy_name = light, heavy
        if cfg.difficulty:
            ctx.settings = DifficultySettings(**cfg.difficulty)
        ctx.embedding_enabled = cfg.embedding.enabled
        ctx.embedding_model = cfg.embedding.model
    if getattr(args, "embedding", None):
        ctx.embedding_model = args.embedding
    if args.no_embedding:
        ctx.embedding_enabled = False
    ctx.settings = ctx.settings.model_copy(
        update={"use_embedding": ctx.embedding_enabled and ctx.settings.use_embedding}
    )
    if getattr(args, "no_second_opinion", False) or ctx.settings.second_opinion == ctx.embedding_model:
        ctx.settings = ctx.settings.model_copy(update={"second_opinion": None})
    return ctx


def _second(ctx: _Context, scorer: DifficultyScorer):
    """The gateway's second opinion on uncertain scores, as configured (None when off)."""
    from gateway.routing.second_opinion import SecondOpinion

    if ctx.settings.second_opinion is None:
        return None
    second = SecondOpinion(scorer, ctx.settings.second_opinion, ctx.settings.second_opinion_band)
    return second if second.usable else None


def _load(ctx: _Context) -> tuple[DifficultyScorer, Embedder]:
    """The scorer and the embedding model the gateway would give it (the config's `embedding.model`)."""
    from gateway.embeddings import Embedder
    from gateway.routing.difficulty import DifficultyScorer

    scorer = DifficultyScorer.load(ctx.settings)
    embedder = Embedder.load(enabled=scorer.uses_embedding, model=ctx.embedding_model)
    return scorer, embedder


# --- cost ----------------------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) * PROMPT_TOKENS_PER_CHAR))


def routed_cost_ratio(
    prompt_tokens: list[int],
    heavy: list[bool],
    light_cost: CostFn,
    heavy_cost: CostFn,
    completion_tokens: int = COMPLETION_TOKENS,
) -> tuple[float, float, float]:
    """(cost of the routed mix, cost of sending everything heavy, their ratio)."""
    routed = sum((heavy_cost if h else light_cost)(p, completion_tokens) for p, h in zip(prompt_tokens, heavy))
    all_heavy = sum(heavy_cost(p, completion_tokens) for p in prompt_tokens)
    return routed, all_heavy, (routed / all_heavy if all_heavy else float("nan"))


def cost_per_1000(
    prompt_tokens: list[int],
    heavy: list[bool],
    light_cost: CostFn,
    heavy_cost: CostFn,
    completion_tokens: int = COMPLETION_TOKENS,
) -> dict[str, float]:
    """USD per 1,000 requests of this mix: all light, all heavy, and routed as `heavy` says."""
    n = len(prompt_tokens)
    if n == 0:
        return {"all_light": 0.0, "all_heavy": 0.0, "routed": 0.0}
    light = [light_cost(p, completion_tokens) for p in prompt_tokens]
    heavy_prices = [heavy_cost(p, completion_tokens) for p in prompt_tokens]
    routed = [hp if h else lp for lp, hp, h in zip(light, heavy_prices, heavy)]
    return {
        "all_light": 1000 * sum(light) / n,
        "all_heavy": 1000 * sum(heavy_prices) / n,
        "routed": 1000 * sum(routed) / n,
    }


def _print_cost_table(rows: list[dict[str, Any]], heavy: list[bool], m: dict[str, Any], ctx: _Context) -> None:
    from gateway.routing.difficulty import last_user_text
    from gateway.routing.train import row_messages

    tokens = [estimate_tokens(last_user_text(row_messages(r))) for r in rows]
    cost = cost_per_1000(tokens, heavy, ctx.light_cost, ctx.heavy_cost)
    print(f"cost per 1,000 requests ({ctx.light_name} / {ctx.heavy_name}, ~chars/4 in, {COMPLETION_TOKENS} out):")
    print(f"  all light  {cost['all_light']:8.4f} USD  hard recall 0.000")
    print(f"  all heavy  {cost['all_heavy']:8.4f} USD  hard recall 1.000")
    print(
        f"  routed     {cost['routed']:8.4f} USD  hard recall {m['hard_recall']:.3f}  heavy share "
        f"{m['heavy_share']:.3f}  ({cost['routed'] / cost['all_heavy']:.2f} of all heavy)"
    )


# --- commands ------------------------------------------------------------------------------------------


def run_explain(args: argparse.Namespace) -> int:
    from gateway.routing.difficulty import tier_for

    ctx = _context(args)
    threshold = ctx.threshold if args.threshold is None else args.threshold
    scorer, embedder = _load(ctx)
    vector = embedder.encode([args.prompt])[0] if embedder.available else None
    messages = [{"role": "user", "content": args.prompt}]
    result = scorer.score(messages, vector)
    second = _second(ctx, scorer)
    if second is not None and second.wanted(result, threshold):
        first = result.score
        result = second.rescore_now(messages, args.prompt) or result
        print(f"first score {first:.3f}: near the threshold, scored again on {second.model}")
    print(
        f"score {result.score:.3f}  tier {tier_for(result.score, threshold)}  (threshold {threshold:g}, "
        f"method {result.method})"
    )
    print("signals that decided (share of the log-odds against an average request; + pushes heavy):")
    shown = [(label, c) for label, c in result.signals if abs(c) >= 0.05][:10]
    for label, c in shown:
        print(f"  {c:+6.2f}  {label}")
    if not shown:
        print("  none stands out: an average request")
    for reason in result.reasons:
        if reason.startswith(("embedding classifier", "features-only")):
            print(f"  ({reason})")
    return 0


def _read(path: str) -> list[dict[str, Any]]:
    from gateway.routing.train import read_rows

    try:
        return read_rows(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from exc


def run_eval(args: argparse.Namespace) -> int:
    from gateway.routing.difficulty import last_user_text
    from gateway.routing.train import evaluate, row_messages

    ctx = _context(args)
    threshold = ctx.threshold if args.threshold is None else args.threshold
    rows = _read(args.file)
    scorer, embedder = _load(ctx)
    result = evaluate(scorer, rows, threshold, embedder, _second(ctx, scorer))
    scores = result["scores"]
    heavy = [s >= threshold for s in scores]
    tokens = [estimate_tokens(last_user_text(row_messages(r))) for r in rows]
    routed, all_heavy, ratio = routed_cost_ratio(tokens, heavy, ctx.light_cost, ctx.heavy_cost)
    if args.verbose:
        for row, score, h in zip(rows, scores, heavy):
            if h != (row["label"] == "hard"):
                text = last_user_text(row_messages(row)).replace("\n", " ")
                print(f"  {row['label']:4s} scored {score:.2f}: {text[:100]}")
    print(f"{result['n']} prompts, method {result['method']}, threshold {threshold:g} ({ctx.source})")
    print(
        f"hard precision {result['hard_precision']:.3f}  recall {result['hard_recall']:.3f}  "
        f"(tp {result['tp']} fp {result['fp']} fn {result['fn']} tn {result['tn']})"
    )
    print(
        f"cost {routed:.4f} USD routed vs {all_heavy:.4f} all heavy ({ctx.light_name} / {ctx.heavy_name}, "
        f"~chars/4 in, {COMPLETION_TOKENS} out): ratio {ratio:.3f}"
    )
    _print_cost_table(rows, heavy, result, ctx)
    print(
        f"accuracy {result['accuracy']:.3f} hard_recall {result['hard_recall']:.3f} auc {result['auc']:.3f} "
        f"heavy_share {result['heavy_share']:.3f}"
    )
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from gateway.routing.train import _labels, calibrate, metrics, score_rows

    ctx = _context(args)
    rows = _read(args.file)
    scorer, embedder = _load(ctx)
    scores, method = score_rows(scorer, rows, embedder, _second(ctx, scorer), ctx.threshold)
    labels = _labels(rows)
    try:
        threshold = calibrate(
            scores, labels, target_recall=args.target_recall, target_heavy_share=args.target_heavy_share
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = metrics(scores, labels, threshold)
    goal = (
        f"target recall {args.target_recall}"
        if args.target_recall is not None
        else f"target heavy share {args.target_heavy_share}"
        if args.target_heavy_share is not None
        else "best accuracy"
    )
    print(f"{len(rows)} prompts, method {method}, {goal}")
    print(
        f"at this threshold: accuracy {m['accuracy']:.3f} hard_recall {m['hard_recall']:.3f} "
        f"expected heavy share {m['heavy_share']:.3f}"
    )
    _print_cost_table(rows, [s >= threshold for s in scores], m, ctx)
    print(f"set models.{args.model}.difficulty_threshold: {threshold:.4f}")
    print(f"threshold {threshold:.4f}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.embeddings import Embedder
    from gateway.routing.difficulty import DEFAULT_MODEL_PATH
    from gateway.routing.train import DEFAULT_TRAIN_PATHS, train

    out = args.output or (DEFAULT_MODEL_PATH if args.overwrite else NEW_WEIGHTS)
    if Path(out).exists() and not args.overwrite:
        print(f"error: {out} exists; give --overwrite to replace it, or another --output", file=sys.stderr)
        return 2
    files = args.files or list(DEFAULT_TRAIN_PATHS)
    rows = [row for path in files for row in _read(path)]
    print(f"training on {', '.join(files)}", flush=True)
    # One head per embedding model the gateway may run with (or only --embedding's): the scorer reads the one
    # whose dimension matches the request's vector.
    kinds = [args.embedding] if args.embedding else ["static", "usem3"]
    embedders = [] if args.no_embedding else [Embedder.load(model=kind) for kind in kinds]
    model = train(
        rows,
        [e for e in embedders if e.available],
        out,
        seed=args.seed,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    info = model["info"]
    print(f"trained on {info['trained_on']} prompts ({info['hard']} hard), seed {info['seed']}")
    parts = [("features model", info["features_model"])]
    parts += [(f"{part['embedder']} embedding model", part) for part in info["embedding_models"]]
    if not info["embedding_models"]:
        print("embedding models: none trained (no embedding model available)")
    for name, part in parts:
        m = part["oof_metrics"]
        print(
            f"{name}: penalty {part['chosen_penalty']}, out-of-fold accuracy {m['accuracy']:.3f} "
            f"hard_recall {m['hard_recall']:.3f} auc {m['auc']:.3f}, threshold {part['oof_threshold']:.3f} -> 0.5"
        )
    if out != DEFAULT_MODEL_PATH:
        print(f"to use it: difficulty.model_path: {Path(out).resolve()} (config), or --overwrite to ship it")
    return 0
