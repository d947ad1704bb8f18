"""WordPatterns: the counts of one pass over the words agree with one regex search per pattern."""

from __future__ import annotations

import re

import pytest

from gateway.routing.scan import WordPatterns, rx, split_top

PATTERNS = {
    "medical": r"\ballerg|\bdoses?\b|\bblood (?:pressure|sugar)|\bsafe to (?:use|eat)",
    "judgement": r"\bwho(?:'s| is)? (?:responsible|liable)|\b(?:can|may) (?:they|we) (?:refuse|charge)|\bpeut-on\b",
    "starts": r"^(?:please )?(?:translate|traduis)",
    "numbers": r"(?<![\d#])\d{1,4}(?:[.,]\d+)?\s?(?:%|€)?(?![\d])",
    "ids": r"\b[A-Z]{2,}\d{2,}\b",
}
CASED = frozenset({"ids"})
TEXTS = [
    "Who is responsible if my son's allergy pills (dose 5 mg) arrive late? Can they refuse a refund?",
    "Please translate 'blood pressure' into French.",
    "translate this\nTraduis ceci, peut-on ? AB12 ab12 XY999",
    "Is it safe to use with high blood  sugar? 20 % off, 3,5€ each, #12345",
    "",
    "   ",
    "İstanbul: who's liable? Allergic reactions, doses.",
]


def regex_counts(text: str) -> list[int]:
    out = []
    for name, pattern in PATTERNS.items():
        seen = text if name in CASED else text.lower()
        out.append(sum(1 for _ in rx(pattern, re.M).finditer(seen)))
    return out


@pytest.mark.parametrize("text", TEXTS)
def test_counts_agree_with_one_search_per_pattern(text):
    scan = WordPatterns(PATTERNS, cased=CASED)
    assert scan.count(text) == regex_counts(text)
    assert scan.count(text) == regex_counts(text)  # again, from the memo


def test_words_are_remembered_and_the_memo_is_bounded(monkeypatch):
    import gateway.routing.scan as scan_module

    monkeypatch.setattr(scan_module, "_MEMO_SIZE", 3)
    scan = WordPatterns(PATTERNS, cased=CASED)
    scan.count("allergy allergy dose")
    assert set(scan._memo) == {"allergy", "dose"}
    scan.count("one two three four")
    assert len(scan._memo) <= 3


def test_cased_patterns_read_the_original_text():
    scan = WordPatterns(PATTERNS, cased=CASED)
    assert dict(zip(scan.names, scan.count("order AB12 and ab12")))["ids"] == 1


def test_split_top_ignores_groups_and_classes():
    assert split_top(r"a|b(c|d)|[|]|e\|f") == ["a", "b(c|d)", "[|]", r"e\|f"]
    assert rx(r"\bab|\bcd|ef").pattern == r"\b(?:ab|cd)|ef"


def test_the_factored_code_cue_matches_as_the_two_cues_it_replaced():
    """features._CODE reads `a.b(...)` and `a[i] =` with one `\\b\\w+`: same matches as the two cues before it."""
    import random

    from gateway.routing.features import _SCAN

    [factored] = [p for i, _, p in _SCAN._anywhere if _SCAN.names[i] == "code"]
    rest = factored.pattern.split("|", 2)[2]  # the cues after the factored one
    assert factored.pattern.startswith(r"\b\w+(?:\.\w+\([^)]*\)|\[\w*\]\s*=)|")
    before = re.compile(r"\b(?:\w+\.\w+\([^)]*\)|\w+\[\w*\]\s*=)|" + rest, factored.flags)
    rng = random.Random(5)
    alphabet = "ab_9é.[]()= \n\tx;{}`"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(20000)]
    texts += ["x = a.b(c) + d[1] = 2", "console.log(a.b(c))", "arr[] = f.g()", "déjà.vu(1)", "a.b.c(d)"]
    for text in texts:
        assert [m.span() for m in factored.finditer(text)] == [m.span() for m in before.finditer(text)], text
