"""Counting many word patterns over a text cheaply: one pass over its words, memoised per word.

Each named pattern is an alternation of cues. A cue that cannot match whitespace ("\\ballerg", "\\bsql\\b", "%")
matches inside one whitespace-delimited word, and `\\b` at a word's edge means the same inside the word as in the
text (its neighbour in the text is a space), so the counts of these cues over the text are the sums of their
counts over its words. Those are computed once per distinct word and remembered (`_MEMO_SIZE` words): a request
costs a dictionary lookup per word. A cue that spans words ("who is responsible") is tried only at the words
that start with its literal first word ("who"); the few without one (line starts, "x = 3") are searched over
the whole text, those that start with a digit only in text with digits.

Counts agree with one `finditer` per pattern except where two cues of a pattern overlap (both are counted).
Measured on a loaded 2-core machine (prompts of 10-40 words, warm memo): ~32 µs for the 38 patterns of the
difficulty features, against ~130 µs for one `finditer` per pattern; a word seen the first time costs ~10 µs.
"""

from __future__ import annotations

import re

__all__ = ["WordPatterns", "rx", "split_top"]

_MEMO_SIZE = 50_000  # ~8 MB when full (measured); then cleared
# A cue containing one of these may match whitespace (conservative: "\\." is counted too, which only costs speed).
_SPANS_WORDS = (" ", "\\s", ".", "[^", "\\W", "\\D", "^", "$", "\\n", "\\t", "\\B")
_SPECIAL = frozenset("\\()[]{}?*+|.^$")
_NON_SPACE = re.compile(r"\S+")
_WORD_START = re.compile(r"\b\w")
_DIGIT = re.compile(r"\d")
# A cue whose match starts with a digit (after an optional \b and look-behind): skipped for text without digits.
_NUMERIC_CUE = re.compile(r"(?:\\b)?(?:\(\?<[=!](?:[^()]|\([^()]*\))*\))?\\d")


def split_top(pattern: str) -> list[str]:
    """Top-level alternatives of a regex (not inside a group or a class)."""
    parts, depth, in_class, start, i = [], 0, False, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def rx(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """Compile, hoisting a shared leading \\b out of the alternatives: `\\b(?:a|b)` only tries the branches at
    word boundaries, several times faster than `\\ba|\\bb` on long text (the bounded branches are tried first)."""
    parts = split_top(pattern)
    bounded = [p[2:] for p in parts if p.startswith("\\b")]
    others = [p for p in parts if not p.startswith("\\b")]
    if len(bounded) > 1:
        pattern = "|".join([r"\b(?:" + "|".join(bounded) + ")"] + others)
    return re.compile(pattern, flags)


def _group_end(pattern: str, start: int) -> int:
    """Index of the ")" closing the group that opens at `start`."""
    depth, i = 0, start
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced group in {pattern!r}")


def _leads(cue: str) -> list[str] | None:
    """The literal word beginnings a match of `cue` must start with ("explain (?:why|what)" -> ["explain "]),
    or None when it has none we can read (then the cue is searched over the whole text)."""
    if not cue.startswith("\\b"):
        return None
    rest = cue[2:]
    if rest.startswith("(?:"):
        end = _group_end(rest, 0)
        if end + 1 < len(rest) and rest[end + 1] in "?*{":
            return None
        leads = []
        for alternative in split_top(rest[3:end]):
            found = _leads("\\b" + alternative + rest[end + 1 :])
            if found is None:
                return None
            leads += found
        return leads
    out = []
    for i, ch in enumerate(rest):
        if ch in _SPECIAL or (i + 1 < len(rest) and rest[i + 1] in "?*{"):
            break
        out.append(ch)
    lead = "".join(out).split(" ")[0]  # what the first word starts with
    return [lead] if lead[:1].isalnum() else None


def _lower(text: str) -> str:
    """`text.lower()`, keeping the few characters whose lower case is two characters ("İ") as they are, so
    that positions in both agree."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(ch if len(ch.lower()) != 1 else ch.lower() for ch in text)


def _count(pattern: re.Pattern[str] | None, text: str) -> int:
    if pattern is None:
        return 0
    n = 0
    for _ in pattern.finditer(text):
        n += 1
    return n


# (word count hits, phrase starts: (offset in the word, pattern index, cased, pattern))
_Entry = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int, bool, re.Pattern[str]], ...]]


class WordPatterns:
    """Named patterns, each read on the original text (`cased`) or the lower-cased text; `count` gives the
    number of matches of each, in the order given."""

    def __init__(self, patterns: dict[str, str], *, cased: frozenset[str] = frozenset()) -> None:
        self.names = tuple(patterns)
        self._word: list[tuple[int, bool, re.Pattern[str]]] = []
        self._anywhere: list[tuple[int, bool, re.Pattern[str]]] = []
        self._numeric: list[tuple[int, bool, re.Pattern[str]]] = []  # cues that start with a digit
        # word beginning -> [(pattern index, cased, the cues that start with it)]
        starts: dict[str, dict[tuple[int, bool], list[str]]] = {}
        for i, (name, pattern) in enumerate(patterns.items()):
            is_cased = name in cased
            local: list[str] = []
            anywhere: list[str] = []
            numeric: list[str] = []
            for cue in split_top(pattern):
                if not any(s in cue for s in _SPANS_WORDS):
                    local.append(cue)
                    continue
                leads = _leads(cue)
                if leads is None:
                    (numeric if _NUMERIC_CUE.match(cue) else anywhere).append(cue)
                    continue
                for lead in leads:
                    starts.setdefault(lead, {}).setdefault((i, is_cased), []).append(cue)
            if local:
                self._word.append((i, is_cased, rx("|".join(local))))
            if anywhere:
                self._anywhere.append((i, is_cased, rx("|".join(anywhere), re.M)))
            if numeric:
                self._numeric.append((i, is_cased, rx("|".join(numeric), re.M)))
        # by the lead's first character, for the words seen the first time
        self._starts: dict[str, list[tuple[str, int, bool, re.Pattern[str]]]] = {}
        for lead, groups in starts.items():
            for (i, c), cues in groups.items():
                self._starts.setdefault(lead[0], []).append((lead, i, c, re.compile("|".join(cues), re.M)))
        # whether a word holds any one-word cue at all (most new words hold none)
        self._any_cased = self._any([p for i, c, p in self._word if c])
        self._any_lower = self._any([p for i, c, p in self._word if not c])
        self._memo: dict[str, _Entry] = {}

    @staticmethod
    def _any(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns)) if patterns else None

    def _entry(self, word: str) -> _Entry:
        lower = _lower(word)
        hits = []
        any_cased = self._any_cased is not None and self._any_cased.search(word)
        any_lower = self._any_lower is not None and self._any_lower.search(lower)
        if any_cased or any_lower:
            for i, cased, pattern in self._word:
                if any_cased if cased else any_lower:
                    n = _count(pattern, word if cased else lower)
                    if n:
                        hits.append((i, n))
        phrases = []
        for m in _WORD_START.finditer(word):
            at = m.start()
            for initial in {word[at], lower[at]}:
                for lead, i, cased, pattern in self._starts.get(initial, ()):
                    seen = word if cased else lower
                    if seen[at] == initial and seen.startswith(lead, at):
                        phrases.append((at, i, cased, pattern))
        entry = (tuple(hits), tuple(phrases))
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[word] = entry
        return entry

    def count(self, text: str, lower: str | None = None) -> list[int]:
        """Matches of each pattern in `text` (`lower`: its lower-cased form, when the caller has it)."""
        counts = [0] * len(self.names)
        if lower is None or len(lower) != len(text):
            lower = _lower(text)
        memo = self._memo
        for m in _NON_SPACE.finditer(text):
            word = m.group()
            entry = memo.get(word)
            if entry is None:
                entry = self._entry(word)
            hits, phrases = entry
            for i, n in hits:
                counts[i] += n
            if phrases:
                start = m.start()
                for at, i, cased, pattern in phrases:
                    if pattern.match(text if cased else lower, start + at):
                        counts[i] += 1
        for i, cased, pattern in self._anywhere:
            counts[i] += _count(pattern, text if cased else lower)
        if self._numeric and _DIGIT.search(text):
            for i, cased, pattern in self._numeric:
                counts[i] += _count(pattern, text if cased else lower)
        return counts
