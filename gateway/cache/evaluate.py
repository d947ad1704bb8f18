"""Offline evaluation of the semantic cache on labelled question pairs.

    rows = load_pairs("data/cache/pairs.jsonl")           # {"a": ..., "b": ..., "same": bool} per line
    report = evaluate_pairs(rows, embedder, SemanticSettings(threshold=0.65))
    report["precision"], report["recall"], report["false_hits"]

A pair "hits" when B, asked after A was answered and cached, would be served A's answer: cosine of the two
embeddings >= threshold and `guard(A, B)` passes, exactly the decision `find_match` makes for one
candidate. Intent partitioning is not part of the decision by default: the eval measures the matching
logic itself, on any support question, and stays comparable across intent-config changes. Pass a
`detector` to also require that both questions get the same (non-"other") intent, as the store does when
it keys entries by intent; that can only remove hits.

A positive is a hit; tp = hit on a same pair, fp = hit on a different pair (someone else's answer: the
number that must stay at zero). precision = tp / (tp + fp), 1.0 when nothing hits; recall = tp / same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from gateway.cache.semantic import SemanticSettings, guard

if TYPE_CHECKING:
    from gateway.embeddings import Embedder
    from gateway.intents import IntentDetector

__all__ = ["load_pairs", "evaluate_pairs"]


def load_pairs(path: str | Path) -> list[dict]:
    """Read a JSON Lines file of pairs; errors name the file and line."""
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("a"), str) \
                    or not isinstance(row.get("b"), str) or not isinstance(row.get("same"), bool):
                raise ValueError(f'{path}:{number}: expected {{"a": str, "b": str, "same": bool}}')
            rows.append(row)
    return rows


def evaluate_pairs(rows: Iterable[dict], embedder: "Embedder", settings: SemanticSettings,
                   detector: "IntentDetector | None" = None) -> dict:
    rows = list(rows)
    result = {"pairs": len(rows), "threshold": settings.threshold, "tp": 0, "fp": 0, "fn": 0, "tn": 0,
              "false_hits": [], "misses": [], "rejections": {}}
    if not rows:
        result.update(precision=1.0, recall=0.0)
        return result
    texts = list(dict.fromkeys(t for row in rows for t in (row["a"], row["b"])))
    vectors = dict(zip(texts, embedder.encode(texts)))
    for row in rows:
        a, b, same = row["a"], row["b"], row["same"]
        score = float(np.dot(vectors[a], vectors[b]))
        reason = None
        if not settings.enabled:
            reason = "disabled"
        elif score < settings.threshold:
            reason = "below threshold"
        else:
            reason = guard(a, b)
            if reason is None and detector is not None:
                ia, ib = detector.detect(a, vectors[a]), detector.detect(b, vectors[b])
                if ia != ib or ia == "other":
                    reason = f"intent {ia}/{ib}"
        hit = reason is None
        if reason is not None:
            key = reason if not reason.startswith("intent") else "intent"
            result["rejections"][key] = result["rejections"].get(key, 0) + 1
        detail = {"a": a, "b": b, "score": round(score, 3), "reason": reason}
        if hit and same:
            result["tp"] += 1
        elif hit:
            result["fp"] += 1
            result["false_hits"].append(detail)
        elif same:
            result["fn"] += 1
            result["misses"].append(detail)
        else:
            result["tn"] += 1
    hits = result["tp"] + result["fp"]
    positives = result["tp"] + result["fn"]
    result["precision"] = result["tp"] / hits if hits else 1.0
    result["recall"] = result["tp"] / positives if positives else 0.0
    return result
