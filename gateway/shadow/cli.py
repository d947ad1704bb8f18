"""Commands for the registry, shadow traffic and promotions.

    gateway models list | show NAME                      the model registry of a running gateway
    gateway shadow report [MODEL]                        win / tie / loss, p95, error rate, cost per side
    gateway shadow replay GOLDEN.jsonl --model ALIAS [--candidate DEPLOYMENT] [--config F]
                                                         a golden set through both sides, judged, locally
    gateway canary promote MODEL | status [MODEL] | stop MODEL     the staged, gated promotion

The commands that read a running gateway use its admin API (--url, --admin-key or $GATEWAY_ADMIN_KEY).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import orjson


def _admin(args: argparse.Namespace, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
    import httpx

    headers = {"authorization": f"Bearer {args.admin_key}"} if args.admin_key else {}
    headers["x-gateway-actor"] = os.environ.get("USER", "cli")
    try:
        response = httpx.request(method, f"{args.url.rstrip('/')}{path}", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise SystemExit(f"could not reach the gateway at {args.url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        raise SystemExit(f"the gateway answered {response.status_code} with a body that is not JSON") from None
    if response.status_code >= 400:
        message = data.get("error", {}).get("message", data) if isinstance(data, dict) else data
        print(f"error {response.status_code}: {message}", file=sys.stderr)
    return response.status_code, data


def _models(args: argparse.Namespace) -> int:
    path = "/admin/models" if args.models_command == "list" else f"/admin/models/{args.name}"
    status, data = _admin(args, "GET", path)
    if status != 200:
        return 1
    if args.json:
        print(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return 0
    if args.models_command == "show":
        for field, value in data.items():
            print(f"{field:16} {value if value not in (None, {}) else '-'}")
        return 0
    print(f"{'deployment':18} {'model':40} {'version':10} {'promoted':26} owner")
    for entry in data["data"]:
        print(
            f"{entry['deployment']:18} {entry['model'][:40]:40} {entry['version'] or '-':10} "
            f"{entry['promoted'] or '-':26} {entry['owner'] or '-'}"
        )
    return 0


def _shadow_report(args: argparse.Namespace) -> int:
    from gateway.shadow.report import render

    status, data = _admin(args, "GET", "/admin/shadow" if args.model is None else f"/admin/shadow/{args.model}")
    if status != 200:
        return 1
    summaries = data["models"] if args.model is None else {args.model: data}
    if args.json:
        print(orjson.dumps(summaries, option=orjson.OPT_INDENT_2).decode())
        return 0
    for alias, summary in summaries.items():
        print(
            f"{render(alias, summary)}\n  candidate {summary['candidate']}, sampling {summary['percent']:g}%, "
            f"spent today ${summary['spent_usd_today']:.4f}"
        )
    return 0


def _replay(args: argparse.Namespace) -> int:
    return asyncio.run(_replay_async(args))


async def _replay_async(args: argparse.Namespace) -> int:
    from gateway.config import load_config
    from gateway.metrics import Metrics
    from gateway.pricing import Pricing
    from gateway.recorder import Recorder
    from gateway.shadow.mirror import ShadowMirror, ShadowStore
    from gateway.shadow.report import render, summarise
    from gateway.upstream.client import make_transport

    config = load_config(args.config)
    route = config.models.get(args.model)
    if route is None or route.shadow is None:
        print(f"{config.source}: models.{args.model}.shadow is not configured", file=sys.stderr)
        return 2
    if args.candidate is not None and args.candidate not in config.deployments:
        print(f"unknown deployment {args.candidate!r}; known: {', '.join(config.deployments)}", file=sys.stderr)
        return 2
    lines = _golden(args.file)
    metrics = Metrics()
    transport = make_transport(config.server.upstream_client, 64)
    store = ShadowStore()
    mirror = ShadowMirror(config, transport, Recorder(config, metrics, Pricing(config.pricing)).cost_of, store, metrics)
    try:
        for done, (body, intent) in enumerate(lines, 1):
            await mirror.replay(args.model, body, intent, candidate=args.candidate)
            if done % 10 == 0 or done == len(lines):
                print(f"\r  {done}/{len(lines)} pairs judged", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        await transport.aclose()
    summary = summarise(await store.pairs(args.model), ties_win=route.promotion.promote_on_ties)
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() if args.json else render(args.model, summary))
    return 0


def _golden(path: str) -> list[tuple[dict[str, Any], str]]:
    lines = []
    try:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise SystemExit(f"{path}:{number}: not JSON") from None
                if isinstance(row.get("messages"), list):
                    body = {"messages": row["messages"]}
                elif isinstance(row.get("prompt"), str):
                    body = {"messages": [{"role": "user", "content": row["prompt"]}]}
                else:
                    raise SystemExit(f'{path}:{number}: needs "prompt" or "messages"')
                lines.append((body, str(row.get("intent", "other"))))
    except OSError as exc:
        raise SystemExit(f"{path}: {exc.strerror}") from None
    return lines


def _promote(args: argparse.Namespace) -> int:
    path = f"/admin/promotions/{args.model}"
    if args.canary_command == "promote":
        status, plan = _admin(args, "POST", path, {"why": args.why or ""})
    elif args.canary_command == "stop":
        status, plan = _admin(args, "DELETE", path)
    else:
        status, plan = _admin(args, "GET", path)
    if status >= 400:
        return 1
    print(render_plan(plan))
    return 0


def render_plan(plan: dict[str, Any]) -> str:
    if plan.get("status") == "none":
        return f"{plan['alias']}: no promotion (plan: {' -> '.join(plan['stages'])})"
    marks = []
    for i, stage in enumerate(plan["stages"]):
        label = stage if stage == "shadow" else f"{stage}%"
        marks.append(f"[{label}]" if i == plan["stage"] and plan["status"] == "running" else label)
    lines = [f"{plan['alias']}: promoting {plan['candidate']}: {plan['status']}  {' -> '.join(marks)}"]
    if plan.get("waiting"):
        lines.append(f"  waiting for {plan['waiting']}")
    if plan.get("reason"):
        lines.append(f"  reason: {plan['reason']}")
    quality = (plan.get("gates") or {}).get("win_rate")
    if quality:
        lines.append(
            f"  win rate {quality['win_rate'] if quality['win_rate'] is not None else '-'} "
            f"(95% lower bound {quality['low']:.3f}) over {quality['n']} pairs"
        )
    lines.extend(f"  {e['at']} {e['who']}: {e['event']} at {e['stage']}: {e['detail']}" for e in plan["history"])
    return "\n".join(lines)


def _remote(command: argparse.ArgumentParser) -> None:
    command.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
    command.add_argument("--admin-key", default=os.environ.get("GATEWAY_ADMIN_KEY"), help="default: $GATEWAY_ADMIN_KEY")


def register_cli(sub) -> None:
    models = sub.add_parser("models", help="the model registry of a running gateway")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    list_ = models_sub.add_parser("list", help="every deployment's registry entry")
    show = models_sub.add_parser("show", help="one deployment's registry entry")
    show.add_argument("name")
    for command in (list_, show):
        _remote(command)
        command.add_argument("--json", action="store_true")
        command.set_defaults(func=_models)

    shadow = sub.add_parser("shadow", help="shadow traffic: side-by-side reports and golden-set replays")
    shadow_sub = shadow.add_subparsers(dest="shadow_command", required=True)
    report = shadow_sub.add_parser("report", help="win / tie / loss and each side's p95, errors and cost")
    report.add_argument("model", nargs="?")
    report.add_argument("--json", action="store_true")
    _remote(report)
    report.set_defaults(func=_shadow_report)
    replay = shadow_sub.add_parser("replay", help="run a golden set (JSONL: prompt or messages) through both sides")
    replay.add_argument("file")
    replay.add_argument("--model", required=True, help="the alias whose shadow settings (judge, candidate) apply")
    replay.add_argument("--candidate", help="a deployment to compare instead of the alias's shadow candidate")
    replay.add_argument("--config", help="config file (default: $GATEWAY_CONFIG or config/gateway.yaml)")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(func=_replay)


def register_canary(canary_sub) -> None:
    """`gateway canary promote|status|stop`, beside get and set."""
    for name, help_ in (
        ("promote", "walk the staged, gated plan: shadow, then the canary stages"),
        ("status", "the promotion plan, its gates and history"),
        ("stop", "stop a running promotion and roll the canary back"),
    ):
        command = canary_sub.add_parser(name, help=help_)
        command.add_argument("model")
        _remote(command)
        command.set_defaults(func=_promote)
    canary_sub.choices["promote"].add_argument("--why", help="kept in the plan's history")
