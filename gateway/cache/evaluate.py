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
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from gateway.cache.semantic import SemanticSettings, guard, language_part

if TYPE_CHECKING:
    from gateway.embeddings import Embedder
    from gateway.intents import IntentDetector

__all__ = ["answer_key", "load_pairs", "evaluate_pairs", "load_pool", "evaluate_pool", "evaluate_variants", "variants"]


def _read_jsonl(path: str | Path, valid: Callable[[Any], bool], expected: str) -> list[dict]:
    """The rows of a JSON Lines file, each checked by `valid`; errors name the file and line."""
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
            if not isinstance(row, dict) or not valid(row):
                raise ValueError(f"{path}:{number}: expected {expected}")
            rows.append(row)
    return rows


def load_pairs(path: str | Path) -> list[dict]:
    """Read a JSON Lines file of pairs `{"a", "b", "same"}`."""
    return _read_jsonl(
        path,
        lambda row: all(isinstance(row.get(k), t) for k, t in (("a", str), ("b", str), ("same", bool))),
        '{"a": str, "b": str, "same": bool}',
    )


def _verifier_reason(verifier, language, a: str, b: str, vectors: dict, score: float) -> str | None:
    """Why the cache (language partition, then the verifier) would not serve A's answer to B, or None."""
    from gateway.cache.semantic import Candidates

    if language is not None:
        lang_a, lang_b = language.detect_message(a, language_part(a)), language.detect_message(b, language_part(b))
        if lang_a != lang_b or lang_b == "?":
            return "language"
    if score < verifier.floor:
        return "below floor"
    candidates = Candidates.from_rows([(a, vectors[a], 0)])
    return None if verifier.best(b, vectors[b], candidates) is not None else "verifier"


def evaluate_pairs(
    rows: Iterable[dict],
    embedder: "Embedder",
    settings: SemanticSettings,
    detector: "IntentDetector | None" = None,
    verifier=None,
    language=None,
) -> dict:
    """With `verifier` (and `language`): the gateway's decision (same language, verified); without: the
    cosine threshold and guards alone."""
    rows = list(rows)
    result: dict[str, Any] = {
        "pairs": len(rows),
        "threshold": settings.threshold,
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "tn": 0,
        "false_hits": [],
        "misses": [],
        "rejections": {},
    }
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
        elif verifier is not None:
            reason = _verifier_reason(verifier, language, a, b, vectors, score)
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


# ------------------------------------------------------------------------------------------ pooled eval


def _refusals(cache, text: str, same_answer: list[str], vectors: dict) -> list[str]:
    """Why a question missed although its answer was cached: what refuses the stored question of the same
    answer nearest to it: the language partition, the floor, every veto that fires, else the verifier's
    probability; "outranked" when that question passes (another candidate was picked, or none checked)."""
    verifier, vector = cache.verifier, vectors.get(text)
    if vector is None:
        return ["no embedding"]
    score, nearest = max((float(np.dot(vector, vectors[other])), other) for other in same_answer)
    if cache.language.detect_message(nearest, language_part(nearest)) != cache.language.detect_message(
        text, language_part(text)
    ):
        return ["language"]
    if score < verifier.floor:
        return ["below floor"]
    fired = [name for name in verifier.veto_order if verifier.vetoed(text, nearest, only=(name,))]
    if fired:
        return fired
    return ["probability" if verifier.probability(text, nearest, score) < verifier.threshold else "outranked"]


def answer_key(row: dict) -> str:
    """The answer a pool row expects: one per (group, lang), and per shop when the row names one."""
    return f"{row['shop']}/{row['group']}|{row['lang']}" if row.get("shop") else f"{row['group']}|{row['lang']}"


def _messages(row: dict) -> list[dict]:
    """A row's request: its question, after the system prompt of its shop when it names one (each business
    its own assistant, so its own cache partition, as in production)."""
    user = {"role": "user", "content": row["text"]}
    if not row.get("shop"):
        return [user]
    return [{"role": "system", "content": f"You are the customer support assistant of {row['shop']}."}, user]


async def _ask(cache, row: dict, vectors: dict, detector: "IntentDetector | None", alias: str):
    """(request, what the cache served or None) for a pool row: the exact lookup, then the embedding, the
    intent and the semantic lookup, as the gateway does."""
    from gateway.request import ChatRequest

    req = ChatRequest(body={"model": alias, "messages": _messages(row)}, alias=alias, headers={})
    found = await cache.lookup_exact(req)
    if found is None:
        req.vector = vectors.get(row["text"])
        req.intent = detector.detect(row["text"], req.vector) if detector is not None else "other"
        found = await cache.lookup_semantic(req)
    return req, found


async def _store_answer(cache, req, key: str, alias: str) -> None:
    """Store the answer `key` for a missed request, as the upstream's would be."""
    answer = {"role": "assistant", "content": key}
    await cache.store(req, {"model": alias, "choices": [{"index": 0, "finish_reason": "stop", "message": answer}]})


def load_pool(path: str | Path) -> list[dict]:
    """Read a JSON Lines pool `{"group", "lang", "text"}`."""
    return _read_jsonl(
        path,
        lambda row: all(isinstance(row.get(k), str) and row.get(k) for k in ("group", "lang", "text")),
        '{"group": str, "lang": str, "text": str}',
    )


async def evaluate_pool(
    rows: list[dict],
    cache,
    embedder: "Embedder",
    detector: "IntentDetector | None",
    *,
    seed: int = 0,
    alias: str = "support",
) -> dict:
    """Send every question once, in a seeded shuffle, through the real cache logic (`cache` is an
    IntentCache on a fresh MemoryStore): exact lookup, embedding, intent, semantic lookup, and on a miss
    an answer "group|lang" stored as the upstream's would be. A hit on another (group, lang) is a false
    hit. recall = true hits / (true hits + misses whose (group, lang) was already cached)."""
    import random

    order = list(rows)
    random.Random(seed).shuffle(order)
    texts = list(dict.fromkeys(row["text"] for row in order))
    vectors = dict(zip(texts, embedder.encode(texts))) if embedder is not None and embedder.available else {}
    cached_keys: dict[str, list[str]] = {}  # key -> its stored questions
    result: dict[str, Any] = {
        "questions": len(order),
        "seed": seed,
        "true_hits": 0,
        "false_hits": [],
        "misses_cached": 0,
        "misses": 0,
        "missed": [],
        "miss_reasons": Counter(),
    }
    for row in order:
        key = answer_key(row)
        req, found = await _ask(cache, row, vectors, detector, alias)
        if found is not None:
            served = found.message.get("content")
            if served == key:
                result["true_hits"] += 1
            else:
                match = req.cache_match
                result["false_hits"].append(
                    {
                        "text": row["text"],
                        "key": key,
                        "served": served,
                        "matched": {"text": match.text, "score": match.score}
                        if match is not None and match.text
                        else None,
                    }
                )
            continue
        result["misses"] += 1
        if key in cached_keys:
            result["misses_cached"] += 1
            reasons = _refusals(cache, row["text"], cached_keys[key], vectors)
            result["miss_reasons"].update(reasons)
            result["missed"].append({"text": row["text"], "key": key, "reasons": reasons})
        await _store_answer(cache, req, key, alias)
        cached_keys.setdefault(key, []).append(row["text"])
    hits = result["true_hits"] + len(result["false_hits"])
    result["hits"] = hits
    result["precision"] = result["true_hits"] / hits if hits else 1.0
    reachable = result["true_hits"] + result["misses_cached"]
    result["recall"] = result["true_hits"] / reachable if reachable else 0.0
    return result


# ------------------------------------------------------------------------------------- near duplicates

# openers and closers customers write around a question; data/cache/manners_test.json (written by someone who
# never saw the formulas cache/semantic.py strips) replaces these when given (`gateway cache eval --manners`)
MANNERS = {
    "en_openers": ["Hi,", "Hello!"],
    "fr_openers": ["Bonjour,", "Salut !"],
    "en_closers": ["Thanks!", "Cheers"],
    "fr_closers": ["Merci !", "Merci d'avance."],
}
_PLEASE = {"en": " please", "fr": " svp"}
_LETTERS_ONLY = re.compile(r"[^\W\d_]{6,}")


def _swap_letters(text: str, rng) -> str:
    """Two neighbouring letters of one word of 6 letters or more swapped, the commonest typing slip."""
    words = list(_LETTERS_ONLY.finditer(text))
    if not words:
        return text
    word = rng.choice(words)
    i = word.start() + rng.randrange(1, len(word.group(0)) - 2)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def variants(text: str, lang: str, rng, manners: dict | None = None) -> dict[str, str]:
    """The same question as users re-ask it: after an opener (also typed as in a chat window: all in lower case,
    no punctuation), before a closer (`MANNERS`), with a typo, in lower case without punctuation, in capitals,
    without accents, with "please", as a text message. Only those that change the text."""
    manners = manners or MANNERS
    lang = lang if lang in ("en", "fr") else "en"
    opener = rng.choice(manners[f"{lang}_openers"])
    opened = opener + " " + (text[:1].lower() + text[1:] if opener[-1:] in ",:" else text)
    out = {
        "opener": opened,
        "opener, chat-typed": " ".join(re.sub(r"[?!.,;:]", "", opened.lower()).split()),
        "closer": text.rstrip() + " " + rng.choice(manners[f"{lang}_closers"]),
        "typo": _swap_letters(text, rng),
        "lower case, no punctuation": re.sub(r"[?!.,;:]", "", text.lower()).strip(),
        "capitals": text.upper(),
        "no accents": _strip_accents(text),
        "please": re.sub(
            r"\s*([?!.])?\s*$",
            lambda m: _PLEASE[lang] + (" " if lang == "fr" and m.group(1) else "") + (m.group(1) or ""),
            text,
            count=1,
        ),
        "texting": _texting(text, lang),
    }
    return {name: variant for name, variant in out.items() if variant != text}


_TEXTING = {
    "en": ((r"\byou\b", "u"), (r"\bplease\b", "pls"), (r"\bare\b", "r"), (r"\bI\b", "i"), (r"\bthanks\b", "thx")),
    "fr": ((r"\bje suis\b", "chui"), (r"\bs'il vous plaît\b", "svp"), (r"\bj'ai\b", "jai"), (r"\bc'est\b", "c")),
}


def _texting(text: str, lang: str) -> str:
    """Written as a text message: u for you, pls, jai, c for c'est, ... and no final punctuation."""
    for pattern, short in _TEXTING[lang]:
        text = re.sub(pattern, short, text, flags=re.I)
    return text.rstrip(" ?!.")


async def evaluate_variants(
    rows: list[dict],
    cache,
    embedder: "Embedder",
    detector: "IntentDetector | None",
    *,
    seed: int = 0,
    alias: str = "support",
    manners: dict | None = None,
) -> dict:
    """Store every question of the pool (answer "group|lang"), then ask each again as users re-ask it
    (`variants`) through the real cache logic: served the right answer, another one (a false hit), or a miss,
    per kind of variant."""
    import random

    rng = random.Random(seed)
    asked = [
        ({**row, "text": text}, kind)
        for row in rows
        for kind, text in variants(row["text"], row["lang"], rng, manners).items()
    ]
    texts = list(dict.fromkeys([row["text"] for row in rows] + [row["text"] for row, _ in asked]))
    vectors = dict(zip(texts, embedder.encode(texts))) if embedder is not None and embedder.available else {}

    for row in rows:
        req, found = await _ask(cache, row, vectors, detector, alias)
        if found is None:
            await _store_answer(cache, req, answer_key(row), alias)
    result: dict[str, Any] = {"kinds": {}, "false_hits": [], "missed": []}
    for row, kind in asked:
        _, found = await _ask(cache, row, vectors, detector, alias)
        tally = result["kinds"].setdefault(kind, Counter())
        tally["asked"] += 1
        if found is None:
            tally["missed"] += 1
            result["missed"].append({"kind": kind, "text": row["text"], "key": answer_key(row)})
        elif found.message.get("content") == answer_key(row):
            tally["served"] += 1
        else:
            tally["wrong"] += 1
            result["false_hits"].append(
                {
                    "kind": kind,
                    "text": row["text"],
                    "key": answer_key(row),
                    "served": found.message.get("content"),
                }
            )
    return result
