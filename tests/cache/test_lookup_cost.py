"""The semantic lookup's shortcuts give the answers of the slow path they replace, on the project's pools:
`semantic._fold` against every step run on every text, the language detector's n-gram rows against
`_grams`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

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
    texts = _texts()
    rng = random.Random(7)
    queries = [v for t in texts for v in _variants(t, rng)]
    rng.shuffle(queries)
    return texts, queries


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

    texts, queries = setup
    extra = ["Can't log in", "Je n'arrive plus à me connecter", "pick up at 5pm", "2FA à l'étranger", "ÉTÉ\u00a0’s"]
    for text in texts + queries[:1000] + extra:
        assert _fold(text) == _reference_fold(text), text


def test_language_rows_are_the_grams_rows(setup):
    from itertools import repeat

    from gateway.cache.language import LanguageDetector, _grams, _normalise

    detector = LanguageDetector.load()
    texts, queries = setup
    for text in texts + queries[:1000] + ["", "a", "Привет, как дела?", "l'été 2024 à Paris"]:
        norm = _normalise(text)
        grams = _grams(norm)
        expected = list(map(detector._index.get, grams, repeat(detector._unknown, len(grams))))
        assert detector._rows(norm).tolist() == expected, text


def test_features_content_words_come_without_the_rest_and_the_rest_is_the_same_either_way(setup):
    from gateway.cache import semantic

    texts, queries = setup
    sample = list(dict.fromkeys(texts[:300] + queries[:300]))
    semantic.features.cache_clear()
    content_first = []
    for text in sample:
        found = semantic.features(text)
        assert found.content == found.content and found._rest is None  # content, wording, codes: no guards yet
        content_first.append(found.as_tuple())
    semantic.features.cache_clear()
    assert [semantic.features(text).as_tuple() for text in sample] == content_first
    with pytest.raises(AttributeError):
        semantic.features(sample[0]).content = ()  # type: ignore[misc]
