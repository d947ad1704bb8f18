"""`gateway batches list | show ID [--watch]`: a running gateway's batches, through its Batch API.

gateway batches list --url http://gateway:8080 --api-key sk-...
gateway batches show batch_abc --watch          a progress bar until the batch ends
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

TERMINAL = ("completed", "failed", "expired", "cancelled")


def _get(args: argparse.Namespace, path: str) -> dict[str, Any]:
    import httpx

    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        response = httpx.get(f"{args.url.rstrip('/')}/v1{path}", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise SystemExit(f"could not reach the gateway at {args.url}: {exc}") from None
    data = response.json()
    if response.status_code != 200:
        raise SystemExit(f"error {response.status_code}: {data.get('error', {}).get('message', data)}")
    return data


def bar(batch: dict[str, Any], width: int = 30) -> str:
    counts = batch["request_counts"]
    total, done = counts["total"], counts["completed"] + counts["failed"]
    filled = int(width * done / total) if total else width
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}  completed {counts['completed']}  "
        f"failed {counts['failed']}  {batch['status']}"
    )


def _list(args: argparse.Namespace) -> int:
    data = _get(args, f"/batches?limit={args.limit}")
    if not data["data"]:
        print("no batches")
    for batch in data["data"]:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(batch["created_at"]))
        print(f"{batch['id']}  {created}  {batch['endpoint']:22} {bar(batch, 20)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    while True:
        batch = _get(args, f"/batches/{args.id}")
        line = bar(batch)
        if not args.watch or batch["status"] in TERMINAL:
            break
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
        time.sleep(args.every)
    if args.watch:
        print(file=sys.stderr)
    print(f"{batch['id']}  {batch['endpoint']}  window {batch['completion_window']}\n  {line}")
    for name in ("input_file_id", "output_file_id", "error_file_id"):
        if batch.get(name):
            print(f"  {name:15} {batch[name]}")
    for error in (batch.get("errors") or {}).get("data", []):
        print(f"  line {error['line']}: {error['code']}: {error['message']}")
    return 0


def register_cli(sub) -> None:
    batches = sub.add_parser("batches", help="batch jobs of a running gateway (the OpenAI Batch API)")
    batches_sub = batches.add_subparsers(dest="batches_command", required=True)
    list_ = batches_sub.add_parser("list", help="the batches of a key, newest first, with progress")
    list_.add_argument("--limit", type=int, default=20)
    list_.set_defaults(func=_list)
    show = batches_sub.add_parser("show", help="one batch: counts, progress, files, errors")
    show.add_argument("id")
    show.add_argument("--watch", action="store_true", help="refresh a progress bar until the batch ends")
    show.add_argument("--every", type=float, default=2.0, help=argparse.SUPPRESS)
    show.set_defaults(func=_show)
    for command in (list_, show):
        command.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8080"))
        command.add_argument(
            "--api-key",
            default=os.environ.get("OPENAI_API_KEY"),
            help="the client key that made the batches (default: $OPENAI_API_KEY)",
        )
