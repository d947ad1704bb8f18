"""The semantic lookup's shortcuts give the answers of the slow path they replace: `service.verify` against
`Verifier.best`, `semantic.content_words` against `features(...).content`, on the project's pools."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gateway.cache.semantic import Candidates, content_words, features
from gateway.cache.service import verify
from gateway.cache.verifier import Verifier, model_path
from gateway.embeddings import Embedder

ROOT = Path(__file__).resolve().parents[2]


def _texts() -> list[str]:
    texts = []
    for name in ("pool.jsonl", "pairs.jsonl", "pairs_adversarial.jsonl", "pairs_fresh.jsonl"):
        for line in (ROOT / "data/cache" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [row[k] for k in ("text", "a", "b") if isinstance(row.get(k), str)]
    return list(dict.fromkeys(texts))


def _variants(text: str, rng: random.Random) -> list[str]:
    """Rewordings a user makes that keep the content words (served) and some that do not."""
    words = text.split()
    out = [text.lower(), text.rstrip("?!. ") + " please?", "Hi, " + text, " ".join(words[::-1])]
    if len(words) > 2:
        out.append(" ".join(w for i, w in enumerate(words) if i != rng.randrange(len(words))))
    return out


@pytest.fixture(scope="module")
def setup():
    embedder = Embedder.load(model="static")
    if not embedder.available:
        pytest.skip("static embedding table absent")
    texts = _texts()
    rng = random.Random(7)
    queries = [v for t in texts for v in _variants(t, rng)]
    rng.shuffle(queries)
    vectors = embedder.encode(texts)
    return Verifier.load(model_path("static")), Candidates(vectors, texts, texts), queries, embedder


def test_verify_serves_what_the_verifier_serves(setup):
    verifier, candidates, queries, embedder = setup
    vectors = embedder.encode(queries)
    served = 0
    for query, vector in zip(queries, vectors):
        slow = verifier.best(query, vector, candidates)
        fast = verify(verifier, query, vector, candidates)
        assert (slow is None) == (fast is None), query
        if slow is not None and fast is not None:
            served += 1
            assert (fast.payload, fast.index, fast.text) == (slow.payload, slow.index, slow.text)
            assert fast.score == pytest.approx(slow.score, abs=1e-5)
            assert fast.probability == pytest.approx(slow.probability, abs=1e-6)
    assert served >= 50  # the check compared real hits, not only misses


def test_content_words_are_the_features_content(setup):
    _, candidates, queries, _ = setup
    for text in list(candidates.texts) + queries[:500] + ["", "  ", "n'est-ce pas ?", "ÉTÉ à l'étranger"]:
        assert content_words(text) == frozenset(features(text).content), text


def test_a_lookup_in_a_populated_partition_weighs_few_pairs(setup, monkeypatch):
    """Nearest neighbours with other content words are refused before their pair features."""
    import gateway.cache.verifier as verifier_module

    verifier, candidates, queries, embedder = setup
    calls = []
    real = verifier_module.pair_features
    monkeypatch.setattr(verifier_module, "pair_features", lambda *a: calls.append(a) or real(*a))
    vectors = embedder.encode(queries[:200])
    for query, vector in zip(queries[:200], vectors):
        verify(verifier, query, vector, candidates)
    fast = len(calls)
    calls.clear()
    for query, vector in zip(queries[:200], vectors):
        verifier.best(query, vector, candidates)
    slow = len(calls)  # Verifier.best checks its vetoes first too (cheapest first)
    assert fast <= slow and fast < 200 * 2, (fast, slow)  # of up to 8 nearest per lookup: ~1 weighed


def _reference_fold(text: str) -> str:
    """semantic._fold as it was before its shortcuts: every step on every text."""
    import re
    import unicodedata

    from gateway.cache import semantic

    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u00a0", " ")
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = semantic._CONTRACTIONS.sub(lambda m: semantic._CONTRACTION_MAP[m.group(0)], text)
    text = semantic._NT.sub(" not", text)
    text = semantic._ELISION.sub(lambda m: m.group(1) + "' ", text)
    for pattern, repl, _ in semantic._REWRITE_PATTERNS:
        text = re.compile(pattern.pattern).sub(repl, text)
    return text


def test_fold_shortcuts_change_nothing(setup):
    from gateway.cache.semantic import _fold

    _, candidates, queries, _ = setup
    extra = ["Can't log in", "Je n'arrive plus à me connecter", "pick up at 5pm", "2FA à l'étranger", "ÉTÉ\u00a0’s"]
    for text in list(candidates.texts) + queries[:1000] + extra:
        assert _fold(text) == _reference_fold(text), text


def test_language_rows_are_the_grams_rows(setup):
    from itertools import repeat

    from gateway.cache.language import LanguageDetector, _grams, _normalise

    detector = LanguageDetector.load()
    _, candidates, queries, _ = setup
    for text in list(candidates.texts) + queries[:1000] + ["", "a", "Привет, как дела?", "l'été 2024 à Paris"]:
        norm = _normalise(text)
        grams = _grams(norm)
        expected = list(map(detector._index.get, grams, repeat(detector._unknown, len(grams))))
        assert detector._rows(norm).tolist() == expected, text
