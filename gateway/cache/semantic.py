"""Guarded semantic match: may a cached answer to question A be served for question B?

    settings = SemanticSettings(threshold=0.65)
    match = find_match(query_text, query_vec, candidates, threshold=settings.threshold)
    if match is not None: serve(match.payload)
    guard("Where is order 48213?", "Where is order 48231?")  # -> "number"

No embedding separates paraphrases from near-misses by cosine alone ("not", one digit of an order id or a
swapped pair of words all score 0.95+), so a hit needs (1) cosine >= threshold and (2) every guard below to
pass. The guards compare cheap surface features of both texts, computed once per text and memoised:

    number       numbers, amounts, quantities (digits and number words), their units and currencies,
                 dates (weekdays, months, today/tomorrow...) differ
    reference    order ids, tracking codes, invoice numbers, e-mails (tokens mixing letters and digits,
                 long digit runs) differ
    entity       a proper noun (capitalised word not at sentence start, or a known brand, carrier, city,
                 country) of one text is absent from the other (FR/EN names are aliased)
    negation     one text is negated (not, never, without, can't, ne...pas, jamais, sans...), the other not
    antonym      polar words differ (enable/disable, add/remove, cancel/renew, open/close, before/after,
                 upgrade/downgrade, more/less...; FR and EN stems map to the same classes)
    topic        each text names a support concept the other lacks (order vs subscription, refund vs
                 invoice, password vs e-mail): a substitution, not an addition
    substitution same language, the rest nearly identical, one content word swapped for an unknown other
    word order   same values or words in a different order (from A to B / from B to A)

Every guard is language-neutral where it can be: a French question and its English paraphrase share the
same numbers, names, polarity and concept classes, so they may hit; word-level checks run only when both
texts are in the same language. All regexes are compiled at import; everything here is pure, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise, takewhile
from re._constants import AT as _AT
from re._constants import BRANCH as _BRANCH
from re._constants import LITERAL as _LITERAL
from re._parser import parse as _sre_parse
from typing import Any, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from gateway.cache.lexicon import (
    ALIASES,
    ANTONYM_PAIRS,
    DATE_WORDS,
    EN_MARKERS,
    EXCLUSIVE,
    EXCLUSIVE_FAMILIES,
    FR_MARKERS,
    KNOWN_NAMES,
    MANNERS,
    MANNERS_FILLERS,
    NEGATIONS,
    NOT_NAMES,
    NUMBER_WORDS,
    POLAR,
    REWRITES,
    STOPWORDS,
    SYNONYMS,
    TOPICS,
    UNITS,
)
from gateway.cache.manners import CONTRACTED, is_manners, is_small_talk

__all__ = [
    "DEFAULT_THRESHOLD",
    "SemanticSettings",
    "Match",
    "Candidates",
    "find_match",
    "framed_by_manners",
    "guard",
    "features",
    "contains_personal_data",
]

DEFAULT_THRESHOLD = 0.65


class SemanticSettings(BaseModel):
    """Settings of the semantic cache (the store reads max_entries_per_intent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    max_entries_per_intent: int = Field(default=1000, gt=0)


def _fold(text: str) -> str:
    """Lower-case, strip accents, normalise apostrophes and contractions."""
    if text.isascii():  # no accents, no typographic apostrophes: NFKD and the filter below change nothing
        text = text.lower()
    else:
        text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u00a0", " ")
        text = unicodedata.normalize("NFKD", text.lower())
        if not text.isascii():
            text = text.translate(_NO_COMBINING)
    if "'" in text or "cannot" in text:
        text = _CONTRACTIONS.sub(lambda m: _CONTRACTION_MAP[m.group(0)], text)
        text = _NT.sub(" not", text)
        text = _ELISION.sub(lambda m: m.group(1) + "' ", text)
    present = {need for need in _REWRITE_NEEDS if need in text}
    for pattern, repl, needs in _REWRITE_PATTERNS:  # a pattern that needs a substring absent is not run
        if needs is None or not needs.isdisjoint(present):
            rewritten = pattern.sub(repl, text)
            if rewritten != text:
                text = rewritten
                present = {need for need in _REWRITE_NEEDS if need in text}
    return text


class _CombiningMarks(dict):
    """str.translate table: combining marks (accents once decomposed) deleted, every other character kept."""

    def __missing__(self, code: int) -> int | None:
        value = None if unicodedata.combining(chr(code)) else code
        self[code] = value
        return value


_NO_COMBINING = _CombiningMarks()


@lru_cache(maxsize=16384)
def _fold_word(word: str) -> str:
    return _fold(word)


_CONTRACTION_MAP = {
    "can't": "can not",
    "cannot": "can not",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "is not",
    "where's": "where is",
    "what's": "what is",
    "how's": "how is",
    "it's": "it is",
    "there's": "there is",
    "that's": "that is",
    "who's": "who is",
}
_CONTRACTIONS = re.compile(r"\b(" + "|".join(re.escape(k) for k in _CONTRACTION_MAP) + r")\b")
_NT = re.compile(r"n't\b")
_ELISION = re.compile(r"\b([ldjmnstc]|qu|jusqu|lorsqu|puisqu)'\s*")


def _needs(items: Any) -> list[str] | None:
    """Substrings one of which every match of the parsed pattern `items` contains (None: no such list
    found): its longest run of literal characters, or what each alternative of one of its alternations
    needs. Zero-width assertions (\\b) consume nothing: they do not break a run."""
    best, run, alternatives = "", "", None
    for op, arg in items:
        if op is _LITERAL:
            run += chr(arg)
            continue
        if op is not _AT:
            best, run = max(best, run, key=len), ""
        if op is _BRANCH:
            found = [_needs(branch) for branch in arg[1]]
            if all(found):
                alternatives = [need for need_list in found for need in need_list]  # type: ignore[union-attr]
    best = max(best, run, key=len)
    if best and (len(best) >= 3 or alternatives is None):
        return [best]
    return alternatives


def _rewrite(pattern: str, repl: Any) -> tuple[re.Pattern, Any, frozenset[str] | None]:
    compiled = re.compile(pattern)
    needs = None if compiled.flags & re.IGNORECASE else _needs(_sre_parse(pattern))
    return compiled, repl, None if needs is None else frozenset(needs)


_REWRITE_PATTERNS = [_rewrite(p, r) for p, r in REWRITES]  # (pattern, replacement, substrings it needs)
_REWRITE_NEEDS = sorted({need for _, _, needs in _REWRITE_PATTERNS for need in needs or ()})


def _compile_lexicon(lexicon: dict[str, list[str]]) -> list[tuple[str, re.Pattern]]:
    compiled = []
    for name, entries in lexicon.items():
        alts = []
        for entry in entries:
            if entry.endswith("*"):
                alts.append(re.escape(entry[:-1]) + r"[\w'-]*")
            else:
                alts.append(re.escape(entry) + r"(?![\w])")
        compiled.append((name, re.compile(r"(?<![\w])(?:" + "|".join(alts) + ")")))
    return compiled


# Every lexicon entry is matched where no word character precedes it, and starts with its own literal
# text: a class can only match a text in which one of its entries' first four characters (all of a
# shorter entry) stand at such a place. Checking that first spares nearly all of the searches.
_STARTS = re.compile(r"(?<![\w])(?=(.{1,4}))", re.S)
_HEAD = 4


def _heads(lexicon: dict[str, list[str]]) -> dict[str, list[int]]:
    """Head -> the classes (their index) with an entry starting so; "" (found at every place) for an empty entry."""
    index: dict[str, list[int]] = {}
    for i, entries in enumerate(lexicon.values()):
        for head in {(e[:-1] if e.endswith("*") else e)[:_HEAD] for e in entries}:
            index.setdefault(head, []).append(i)
    return index


def _places(text: str) -> set[str]:
    """Every head that stands in `text` where an entry may start."""
    ahead = _STARTS.findall(text)
    places = set(ahead)
    places.update([head[:1] for head in ahead])
    places.update([head[:2] for head in ahead])
    places.update([head[:3] for head in ahead])
    places.add("")
    return places


def _classes(
    text: str, compiled: list[tuple[str, re.Pattern]], heads: dict[str, list[int]], places: set[str]
) -> frozenset[str]:
    """The names of the lexicon classes found in `text`, as `rx.search` over every class would say.
    `heads`: head -> the classes with an entry that starts so."""
    maybe = {i for head in places.intersection(heads) for i in heads[head]}
    found = frozenset(compiled[i][0] for i in sorted(maybe) if compiled[i][1].search(text)) if maybe else None
    return found or _NONE


_POLAR_RX = _compile_lexicon(POLAR)
_EXCLUSIVE_RX = _compile_lexicon(EXCLUSIVE)
_TOPIC_RX = _compile_lexicon(TOPICS)
_POLAR_HEADS, _EXCLUSIVE_HEADS, _TOPIC_HEADS = _heads(POLAR), _heads(EXCLUSIVE), _heads(TOPICS)
_SYNONYM_RX = _compile_lexicon(SYNONYMS)
_NEGATION_RX = re.compile(
    r"(?<![\w])(?:"
    + "|".join(
        re.escape(n[:-1]) + r"\w*" if n.endswith("*") else re.escape(n) + (r"(?![\w])" if n[-1] != "'" else "")
        for n in NEGATIONS
    )
    + ")"
)
_KNOWN_RX = re.compile(
    r"(?<![\w])("
    + "|".join(re.escape(n) for n in sorted(set(KNOWN_NAMES) | set(ALIASES), key=len, reverse=True))
    + r")(?![\w])"
)

_NONE: frozenset = frozenset()  # one empty set shared by every text's features: memos hold fewer objects
_NEGATION_HEADS = frozenset((n[:-1] if n.endswith("*") else n)[:_HEAD] for n in NEGATIONS)
_KNOWN_HEADS = frozenset(name[:_HEAD] for name in set(KNOWN_NAMES) | set(ALIASES))
_TOKEN = re.compile(r"[\w][\w'-]*|[€$£%]")
_RAW_WORD = re.compile(r"[^\W\d_][\w'-]*|\d[\w-]*")
_ORDINAL = r"(?:st|nd|rd|th|er|ere|eme|e|re)"
_NUMBER = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)*)" + _ORDINAL + r"?(?![\w])")
_CODE = re.compile(
    r"(?<![\w-])#?(?!\d+" + _ORDINAL + r"(?![\w]))"
    r"((?=[\w-]*\d)(?=[\w-]*[a-z])[a-z0-9]+(?:[-_/][a-z0-9]+)*|\d{5,})(?![\w])"
)
_DIGIT = re.compile(r"\d")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")
_URL = re.compile(r"https?://\S+|www\.\S+")
_PHONE = re.compile(r"(?<![\w])(?:\+\d{1,3}[\s.-]?)?(?:\d[\s.-]?){9,12}\d(?![\w])")


FIELDS = (
    "lang",  # "en", "fr" or "?"
    "numbers",  # canonical numbers in order of appearance
    "units",  # (number, unit) when a unit follows the number
    "dates",  # canonical weekday / month / relative-day tokens, in order
    "codes",  # ids, tracking codes, e-mails, urls
    "names",  # canonical proper nouns, in order
    "words",  # every canonical word (to find a name written in lower case)
    "negated",
    "polar",
    "exclusive",
    "topics",
    "content",  # content words (synonyms mapped to their class), in order
    "wording",  # content words as written (stemmed), in order
)


@dataclass(frozen=True, slots=True)
class _Rest:
    """The second half of `features`: what only the guards need."""

    lang: str
    numbers: tuple[str, ...]
    units: frozenset[tuple[str, str]]
    dates: tuple[str, ...]
    names: tuple[str, ...]
    words: frozenset[str]
    negated: bool
    polar: frozenset[str]
    exclusive: frozenset[str]
    topics: frozenset[str]


class TextFeatures:
    """Surface features of one text (FIELDS), read-only. `content`, `wording` and `codes` are worked out
    at once (the content words are what most pair checks look at first); the rest on first use."""

    __slots__ = ("_text", "_words", "_rest")

    def __init__(self, text: str, words: "_Words") -> None:
        self._text, self._words = text, words
        self._rest: _Rest | None = None

    content = property(lambda self: self._words.content)
    wording = property(lambda self: self._words.wording)
    codes = property(lambda self: self._words.codes)
    lang = property(lambda self: self._more().lang)
    numbers = property(lambda self: self._more().numbers)
    units = property(lambda self: self._more().units)
    dates = property(lambda self: self._more().dates)
    names = property(lambda self: self._more().names)
    words = property(lambda self: self._more().words)
    negated = property(lambda self: self._more().negated)
    polar = property(lambda self: self._more().polar)
    exclusive = property(lambda self: self._more().exclusive)
    topics = property(lambda self: self._more().topics)

    def _more(self) -> _Rest:
        rest = self._rest
        if rest is None:
            rest = self._rest = _rest_of(self._text, self._words)
        return rest

    def as_tuple(self) -> tuple:
        return tuple(getattr(self, name) for name in FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextFeatures) and self.as_tuple() == other.as_tuple()

    def __hash__(self) -> int:
        return hash(self.as_tuple())

    def __repr__(self) -> str:
        return "TextFeatures(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS) + ")"


@dataclass(frozen=True, slots=True)
class _Words:
    """The first half of `features`: what the content words need."""

    scrubbed: str  # folded, e-mails and urls blanked
    codes: frozenset[str]
    tokens: tuple[str, ...]  # a tuple of strings: the garbage collector stops tracking it
    wording: tuple[str, ...]
    content: tuple[str, ...]


@lru_cache(maxsize=65536)
def _words(text: str) -> _Words:
    folded = _folded_question(text)  # the manners around the question dropped first (memoised: one pass)
    scrubbed = folded
    codes: set[str] = set()
    if "@" in folded:  # every e-mail has one
        codes.update(_EMAIL.findall(folded))
    if "http" in folded or "www." in folded:  # every url starts so
        codes.update(_URL.findall(folded))
    if codes:
        scrubbed = _URL.sub(" ", _EMAIL.sub(" ", folded))
    if _DIGIT.search(scrubbed):  # every code has a digit
        for match in _CODE.finditer(scrubbed):
            codes.add(match.group(1).replace("_", "-"))
    matches = list(_TOKEN.finditer(scrubbed))
    tokens = [match.group(0) for match in matches]
    for i in range(1, len(tokens)):  # grade B, size M, plan C: a lone letter right after a content word is a label
        letter = tokens[i]
        if (
            len(letter) == 1
            and letter not in _WORD_LETTERS
            and letter.isalpha()
            and _is_content(tokens[i - 1])
            and matches[i].start() == matches[i - 1].end() + 1  # one space between: "ticket, c combien" is texting
        ):
            codes.add(f"letter:{letter}")
    tokens = [t.rstrip("'") for t in tokens]
    kept = [info for info in map(_content_token, tokens) if info is not None]
    wording = tuple(stem for stem, _ in kept)
    content = tuple(word for _, word in kept)
    return _Words(scrubbed, frozenset(codes) if codes else _NONE, tuple(tokens), wording, content)


_WORD_LETTERS = frozenset("aiyur")  # one-letter words: a, I, y (French), and texting's u, r (you, are)

# Greetings, lead-ins and thanks at either end of a message ("Hi team, I was wondering: ...", "... Merci
# d'avance !") are manners, not part of the question: a closed class of formulas, stripped before a text is
# split, so a question asked with or without them is the same question to every check (its kind included:
# "Could you tell me where ..." asks where). Only whole formulas at the edges go; the same words inside a
# question stay ("payer d'avance", "thanks to your app, ..."). The patterns read folded text (no accents,
# "j' ai") and lower-cased text as written ("j'ai", "chère équipe") alike.
_OPENING = re.compile(
    r"^[\s\W]*+(?:(?:hi|hello|hey|hiya|howdy|greetings|(?:good )?(?:morning|afternoon|evening)|good day|"
    r"dear (?:support|team|sir|madam|sir or madam|customer service|all)|to whom it may concern|"
    r"bonjour|bonsoir|re ?bonjour|salut|coucou|allo|cher service client|ch[eè]re [eé]quipe|madame|monsieur|"
    r"sorry to bother you(?: again)?|excuse me|"
    r"excusez[- ]moi|pardon|"
    # lead-ins: a question is coming
    r"i was (?:just )?wondering(?: if| whether)?|i wonder(?: if| whether)?|just wondering|"
    r"i(?: have|'ve got| ve got| got) (?:a|one) (?:quick |small |little )?question(?: for you)?|"
    r"(?:a |one )?(?:quick|small|little) (?:question|one)|one question|"
    r"(?:can|could) you (?:please )?(?:tell|let) me(?: know)?(?: if| whether)?|do you know(?: if| whether)?|"
    r"i(?:'d| would| want| need) (?:like )?to know(?: if| whether)?|"
    r"je me demandais(?: si)?|(?:j' ?ai|jai) une (?:petite )?question|(?:une |petite )question|"
    r"(?:pouvez|pourriez)[- ]vous me dire(?: si)?|(?:peux|pourrais)[- ]tu me dire(?: si)?|"
    r"(?:vous pouvez|tu peux) me dire(?: si)?|savez[- ]vous(?: si)?|"
    r"(?:je voudrais|j' ?aimerais|je veux|je souhaiterais) savoir(?: si)?)"
    r"(?: (?:again|all|everyone|team|there|[aà] tous|[aà] vous|madame|monsieur))*(?![\w'-])[\s,!.:;-]*+)+"
)
_CLOSING = re.compile(  # a separator run starts a match only where it starts: linear time on "-" * 65536
    r"(?:(?<![\s,.!:;-])[\s,.!:;-]++|^)"
    r"(?:(?:thanks?(?: you)?(?: (?:so|very) much| a lot| in advance| again)?|many thanks|thx|ty|cheers|"
    r"regards|best regards|kind regards|best wishes|have a (?:nice|good|great) day|"
    r"merci(?: (?:beaucoup|bien|infiniment|encore))?(?: (?:d' ?avance|par avance|[aà] vous))?|"
    r"bonne (?:journ[eé]e|soir[eé]e)|cordialement|bien [aà] vous|svp|stp|s' ?il (?:vous|te) pla[iî]t|please)"
    r"(?![\w'-])[\s,.!:;)-]*)+$"
)


@lru_cache(maxsize=16384)
def question_part(text: str) -> str:
    """The text, lower-cased, without the manners around the question (see `_without_pleasantries`); accents
    kept, for the language detector. A sign-off glued to a question typed without its mark ("where do i put
    my voucher Warm regards, Priya") starts at the last capital after a lower-case word."""
    text = _without_glued_opener(text)
    glued = max(map(re.Match.start, _GLUED.finditer(text)), default=None)  # the last one
    if glued is not None:
        head, tail = _lower(text[:glued]), _lower(text[glued + 1 :])
        # all of the tail goes after a question: "0?" stands for one, and a number is never politeness
        if len(head.split()) >= 2 and _without_manners("0? " + tail) == "0?":
            return _without_pleasantries(head)
    return _without_pleasantries(_lower(text))


@lru_cache(maxsize=16384)
def _folded_question(text: str) -> str:
    """`question_part` folded (`_fold`): what the content words, the question's words and the roles read."""
    return _fold(question_part(text))


def _lower(text: str) -> str:
    return text.lower().replace("\u2019", "'")


_GLUED = re.compile(r"(?<=[^\W\d_])(?<![A-ZÀ-Ý]) (?=[A-ZÀ-Ý][a-zà-ÿ'])")  # "…voucher Warm …": no mark between


def _without_glued_opener(text: str) -> str:
    """`text` from the question that starts after a greeting typed with no mark between ("heyyy Can you cut a
    key?", "Salut la team Combien coûte ...", "Hi!! hope ur good How much ..."): a capitalised word that opens
    a question, after a lower-case one, within the first words; what comes before it goes only when it is all
    politeness (the word lists, then the learned model), so "I live in Lyon Do you deliver there?" keeps it."""
    for capital in _CAPITAL_AFTER_SPACE.finditer(text, 1, _OPENER_CHARS):  # cheaper than one regex of the words
        at = capital.start()
        word = _OPENER_TOKEN.match(text, at + 1, _OPENER_CHARS)
        if (text[at - 1].isalpha() or text[at - 1] in "!.)") and word is not None and word.group(0) in _OPENER_WORDS:
            return text[at + 1 :] if _all_manners(_lower(text[:at])) else text
    return _without_lower_case_opener(text)


def _without_lower_case_opener(text: str) -> str:
    """`text` from the question that starts after a greeting typed all in lower case, as in a chat window ("gud
    morning can i get a refund", "bonjour ça va comment annuler", "hello i hope you are well do you ..."). Only
    a text that opens with a politeness word is read. Of its first `_LOWER_CASE_CHECKS` words that may open a
    question, each one whose words since the last cut (the start, at first) are all politeness (`_polite_head`)
    is where it is cut: only the words since the last cut are read, so "hi | how do i" is cut before "how" and
    not after it, which "hi how" read as one clause would allow. Once cut before a word that asks ("how",
    "is"), the question has begun; a word after one that leads on ("merci de mettre fin à | mon abonnement") is
    no place to cut."""
    start = text[:_OPENER_CHARS]
    low = _lower(start)
    words = low.split(" ")
    if len(words) < 3 or len(low) != len(start) or not _greeting_word(_fold_word(words[0]).strip(_MARKS)):
        return text
    at, checks, cut = len(words[0]) + 1, 0, 0
    for before, word in pairwise(words[:-1]):  # the last word may be cut short
        last = before.strip(_MARKS)
        if cut and cut == at - len(before) - 1 and last in _ASKING_WORDS:  # the question begun at the cut
            break
        if word in _LOWER_CASE_OPENERS and last not in _LEADS_ON:
            if _polite_head(low[cut:at]):
                cut = at
            checks += 1
            if checks == _LOWER_CASE_CHECKS:
                break
        at += len(word) + 1
    return text[cut:]


@lru_cache(maxsize=4096)
def _greeting_word(word: str) -> bool:
    """A politeness word, or a slip for one: a word of 4 letters or more that the static table lacks, one letter
    added, dropped or changed ("helo", "bonjours", "boujour")."""
    if _polite_word(word):
        return True
    if len(word) < 4:
        return False
    from gateway.static_embedding import default_model

    model = default_model()
    if model is not None and word in model.index:
        return False
    return any(len(polite) >= 4 and _one_edit(word, polite) for polite in _POLITE_WORDS)


def _one_edit(a: str, b: str) -> bool:
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


@lru_cache(maxsize=4096)
def _polite_head(head: str) -> bool:
    """Whether all of `head`, the words before a question, is politeness: after its greeting words, if any,
    what is left must be politeness too, by the word lists or the model, and not only filler ("hello | if i
    order today ..." is not cut after "if")."""
    words = head.split()
    if not words:
        return False
    rest = " ".join(words[len(list(takewhile(_polite_word, (_fold_word(w).strip(_MARKS) for w in words)))) :])
    return (not rest or _has_polite_word(rest) or _learned_politeness(rest)) and _all_manners(head)


@lru_cache(maxsize=4096)
def _all_manners(head: str) -> bool:
    """Whether `_without_manners` takes all of `head` away, as the clauses before a question ("0?" stands for
    one, and a number is never politeness)."""
    return _without_manners(head.rstrip() + ". 0?") == "0?"


def _has_polite_word(text: str) -> bool:
    return any(_polite_word(_fold_word(word)) for word in _MANNER_WORD.findall(text))


# the words a question or a request opens with, capitalised: where a glued greeting ends
_OPENER_WORDS = frozenset(
    "How What What's Where When Why Which Who Can Could Would Will Is Are Do Does Did May Should Have Has"
    " Comment Combien Où Quand Pourquoi Quel Quelle Quels Quelles Qui Est-ce Puis-je Pouvez-vous Pouvez Peux Peut"
    " Peut-on Pourriez Pourrais Avez Avez-vous Vous Je J'ai Mon Ma Mes".split()
)
_CAPITAL_AFTER_SPACE = re.compile(r" (?=[A-ZÀ-Ý])")
_OPENER_TOKEN = re.compile(r"[\w'-]+")
_OPENER_CHARS = 80  # a greeting glued to the question is short
# the same words in lower case, with "i", "am" and French "on", "y" (y a-t-il), "ou" (où without its accent)
_LOWER_CASE_OPENERS = frozenset([word.lower() for word in _OPENER_WORDS] + "i am on y ou est".split())
_LOWER_CASE_CHECKS = 3
# the opening words that ask, not the pronouns and possessives a request may start with ("je", "my", "vous")
_ASKING_WORDS = _LOWER_CASE_OPENERS - frozenset("i je j'ai vous on y mon ma mes".split())
_MARKS = ",.;:!?)"
# words that lead on to what follows them: "merci de mettre fin à | mon abonnement" is not cut there
_LEADS_ON = frozenset(
    "a an the to of for with about de d' à du des le la les un une au aux en pour par avec sur".split()
)


def framed_by_manners(text: str, stored: str) -> bool:
    """Whether `text` asks `stored`'s question word for word, with only politeness before or after it ("hi
    there hope ur well how do i get a refund" / "How do I get a refund?"). Where a message typed without marks
    starts its question is what the politeness checks cannot always find; a stored question that ends the
    message finds it, and what is before it must then be politeness (`_polite_head`), what is after it too,
    with a politeness word in it ("... mon chien d'assistance" is no signature after "... mon chien"). The
    stored question must open as a question does ("how", "can", "est-ce", "i", ...) and have 3 words or more."""
    a, b = _question_words(text), _question_words(stored)
    if len(b) < 3 or len(a) <= len(b) or b[0] not in _LOWER_CASE_OPENERS:
        return False
    if a[-len(b) :] == b:  # not after another question ("how can i contact customer service | how can i ...")
        return a[0] not in _ASKING_WORDS and _polite_head(" ".join(a[: -len(b)]) + " ")
    if a[: len(b)] == b:  # a politeness word, not only a word or two that would read as a signature
        tail = " ".join(a[len(b) :])
        return _has_polite_word(tail) and _without_manners("0? " + tail) == "0?"
    return False


@lru_cache(maxsize=16384)
def _question_words(text: str) -> tuple[str, ...]:
    return tuple(_QUESTION_WORD.findall(_folded_question(text)))


_QUESTION_WORD = re.compile(r"[\w']+")


@lru_cache(maxsize=16384)
def language_part(text: str) -> str:
    """What the language detector reads: `question_part`, each slip for a known word read as that word (the
    static table's `spelled`: a typo in a short question must not turn it into another language)."""
    from gateway.static_embedding import default_model

    model = default_model()
    part = question_part(text)
    return model.spelled(part) if model is not None else part


def _without_pleasantries(text: str) -> str:
    """The text without the politeness clauses at either end (`_without_manners`), then without the greetings
    and lead-ins before it and thanks after it that the patterns know (see _OPENING), unless nothing else
    would be left. Works on folded text and on lower-cased text as written alike."""
    stripped = _without_manners(text) if _clauses_inside(text) else text
    stripped = _without_polite_words(_CLOSING.sub("", _OPENING.sub("", stripped, count=1), count=1))
    if stripped != text:
        stripped = _LEFT_BEFORE.sub("", stripped)
    return stripped if stripped.strip() else text


# what greetings leave before the question once their words are gone: an emoji, a smiley, a mark ("hi :) where…",
# "hiya 👋 i want…"); not a currency sign, a number sign or a word
_LEFT_BEFORE = re.compile(r"^(?:[:;=][-'^]?[()\[\]dpo3|/\\*]+(?!\w)|x+d+(?!\w)|<3|[^\w\s$€£#@&%+]|\s)+")


def _clauses_inside(text: str) -> bool:
    """Whether a text has more than one clause (a mark before its last characters, or but / mais): most
    questions are one ("How do I ...?") and need no splitting."""
    body = text.rstrip(" ?!.")
    return any(mark in body for mark in ",.!?:;") or " but " in body or " mais " in body or bool(_EMOJI.search(body))


# an emoji ends a clause as a mark does ("Hi, it's Jake here 👋 is it possible…")
_EMOJI_CHARS = "\U0001f000-\U0001faff\u2600-\u27bf\ufe0f\u200d"
_EMOJI = re.compile(f"[{_EMOJI_CHARS}]")
_CLAUSES = re.compile(  # linear: see _CLOSING
    rf"((?<![.!?:;,])[.!?:;,]++(?:\s++|$)|(?<!\s)\s++(?:but|mais)\s++|[{_EMOJI_CHARS}]++(?:\s++|$))"
)
_MANNER_WORD = re.compile(r"[^\W\d_]+|\d")
_POLITE, _FILLER, _OTHER = 2, 1, 0


def _learned_politeness(clause: str) -> bool:
    """Whether a clause the word lists do not call politeness is politeness all the same, as the model learned
    from examples reads all its words (cache/manners.py: "I hope this email finds you well.", "Me again!"). A
    question or a number never is."""
    if not may_be_learned(clause):
        return False
    words = clause_words(clause)
    return bool(words) and is_manners(words)


def _asking_politeness(clause: str) -> bool:
    """Whether a question that opens a message, before another clause, is small talk or a request for help
    ("Hi, how are you?", "Ça va ?", "Could you help me out?"), as the learned model reads all its words
    (cache/manners.py `is_small_talk`). A number never is."""
    words = question_words(clause)
    return bool(words) and is_small_talk(words)


def question_words(clause: str) -> str:
    """What the opening-question model judges of a clause: every word of it, folded, in order ("how are you"
    is all stopwords, and small talk; "what do I do" too, and not); "" when it is no question or holds a
    number (never small talk)."""
    if "?" not in clause or _HAS_DIGIT.search(clause):
        return ""
    return clause_words(clause)


def may_be_learned(clause: str) -> bool:
    """Whether the model may be asked about a clause: a question or a number is never politeness (a question
    that opens a message may be small talk: `_asking_politeness`)."""
    return "?" not in clause and not _HAS_DIGIT.search(clause)


def clause_words(clause: str) -> str:
    """What the politeness model judges of a clause: every word of it, folded, in order ("sorry to bother you
    i moved" is politeness words and content: the model learned from examples of both how such mixtures read)."""
    return " ".join(map(_fold_word, _MANNER_WORD.findall(clause)))


_HAS_DIGIT = re.compile(r"\d")


def word_list_politeness(clause: str) -> int:
    """_POLITE: a politeness word (MANNERS) and otherwise stopwords or fillers; _FILLER: fillers and stopwords
    ("have a great weekend"); _OTHER: anything else, and any clause with a question mark or a digit ("how do
    I tell you" is all stopwords and a question; "not me" a statement); an emoji alone is filler."""
    if "?" in clause:
        return _OTHER
    words = _MANNER_WORD.findall(clause)
    if not words:
        return _FILLER if _EMOJI.search(clause) else _OTHER
    polite = filler = False
    for word in map(_fold_word, words):
        if word in MANNERS:
            polite = True
        elif word in MANNERS_FILLERS:
            filler = True
        elif (word not in STOPWORDS and word not in CONTRACTED) or word.isdigit():
            return _OTHER
    return _POLITE if polite else _FILLER if filler else _OTHER


def clauses_of(text: str) -> list[str]:
    """A text's clauses, each with the marks that end it; blank ones left out."""
    parts = _CLAUSES.split(text)  # clause, delimiter, clause, delimiter, ..., clause
    clauses = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [c for c in clauses if c.strip()]


def _without_manners(text: str) -> str:
    """`text` without its politeness at either end: the leading clauses up to the last politeness clause of
    the run of politeness and filler clauses that opens it ("Hi, I hope this finds you well."), the trailing
    clauses from the first politeness clause of the run that closes it ("Thanks, have a great weekend!"), or
    from the first after a question mark when the run holds only politeness and filler ("…? Have a good one!"),
    and a signature of one or two words after those ("Cheers, Tom"). A clause is politeness by the word lists
    or, for the words they do not know, by the learned model (`_learned_politeness`); a question before
    another clause at the start, when the model reads it as small talk (`_asking_politeness`: "how are you?")."""
    clauses = clauses_of(text)
    kinds = [word_list_politeness(c) for c in clauses]
    asked = [False] * len(clauses)

    def kind(i: int, opening: bool = False) -> int:  # the model is asked only about the clauses the edges reach
        if kinds[i] != _POLITE and not asked[i]:  # a filler clause may be politeness too ("Just a quick one.")
            asked[i] = True
            if _learned_politeness(clauses[i]) or (opening and kinds[i] == _OTHER and _asking_politeness(clauses[i])):
                kinds[i] = _POLITE
        return kinds[i]

    start = 0
    for i in range(min(len(clauses), _EDGE_CLAUSES)):
        if kind(i, opening=i < len(clauses) - 1) == _OTHER:
            break
        if kinds[i] == _POLITE:
            start = i + 1
    end = len(clauses)
    signed = end - start >= 2 and kind(end - 1) == _OTHER and _signature(clauses[end - 1])
    last = end - 1 if signed else end
    for i in range(last - 1, max(start, last - _EDGE_CLAUSES) - 1, -1):
        if kind(i) == _OTHER:
            if i < last - 1 and clauses[i].rstrip().endswith("?") and all(map(_signs_off, clauses[i + 1 : last])):
                end = i + 1  # after the question, only politeness and filler: "…? Have a good one!"
            break
        if kinds[i] == _POLITE:
            end = i
    return "".join(clauses[start:end]).strip() if (start, end) != (0, len(clauses)) else text


# at most this many clauses at each end are politeness: a longer run is content, and the model (~0.1 ms a
# clause) is asked about a bounded number of clauses whatever the message
_EDGE_CLAUSES = 8


def _signs_off(clause: str) -> bool:
    """Whether a clause after the question may be a sign-off: it ends with a mark (".", "!", an emoji), not
    like a second question typed without one ("do you take them back"), and denies nothing ("Not me.")."""
    last = clause.rstrip()[-1:]
    return bool(last) and not last.isalnum() and last != "?" and not _NEGATION_RX.search(clause)


def _without_polite_words(text: str) -> str:
    """`text` without the politeness words that open or close it with no mark to set them apart ("salut jai
    une petite question est-ce que ...", "... do you take them back thanks"): the words before the last
    politeness word of the run of politeness, filler and stop words that opens it, and from the first one of
    the run that closes it. A run that holds a question word ("how do I thank ...") or a digit stops there."""
    start = 0
    for match in _MANNER_WORD.finditer(text):  # lazily: most questions stop at their first word
        word = _fold_word(match.group(0))
        if _polite_word(word):
            start = match.end()
        elif _ends_run(word):
            break
    end = len(text)
    last = text.rstrip(_NOT_LETTERS).rsplit(None, 1)[-1:]  # the last word first: most questions end in content
    if not last or _ends_run(_fold_word(last[0].lstrip(_NOT_LETTERS))):
        return text[start:].strip() if start else text
    window = max(start, end - _TAIL)  # a closing run is short: its words are within the last _TAIL characters
    tail = list(_MANNER_WORD.finditer(text, window))
    if tail and window > start and text[window - 1].isalnum():
        tail = tail[1:]  # the window cut a word: not a word of the run
    for match in reversed(tail):
        word = _fold_word(match.group(0))
        if _polite_word(word):
            end = match.start()
        elif _ends_run(word):
            break
    return text[start:end].strip() if (start, end) != (0, len(text)) else text


# Without a mark, only words that are nothing but politeness count: "advance booking", "assistance dog", "team
# order", "bug in the app" keep their first word, which a clause of its own would not ("Thanks in advance.")
_POLITE_WORDS = frozenset(MANNERS) - frozenset(
    "question questions advance assistance team equipe chose endroit forward bien renseignement bug bugging "
    "disturb disturbing bother bothering confused wondering wondered permets excusez pardon appreciation".split()
)
# a politeness word typed with its letters drawn out ("heyyy", "hiii", "merciii", "thxx"): each run of one
# letter read once, on both sides
_DOUBLED = re.compile(r"([^\W\d_])\1+")
_POLITE_DRAWN_OUT = frozenset(_DOUBLED.sub(r"\1", word) for word in _POLITE_WORDS)


@lru_cache(maxsize=65536)
def _polite_word(word: str) -> bool:
    return word in _POLITE_WORDS or (
        _DOUBLED.search(word) is not None and _DOUBLED.sub(r"\1", word) in _POLITE_DRAWN_OUT
    )


_TAIL = 100
_NOT_LETTERS = " \t\n?!.,;:()'\"-"


def _ends_run(word: str) -> bool:
    """Whether a word stops a run of politeness words: a question word, or one neither stop word nor filler."""
    return not _polite_word(word) and (
        word in _QUESTION_WORDS or (word not in STOPWORDS and word not in MANNERS_FILLERS)
    )


# words that say what a question asks: never part of the politeness around it
_QUESTION_WORDS = frozenset(
    "how what where when why which who whom whose can could may might do does did is are was were will would "
    "shall should have has comment ou quand pourquoi quel quelle quels quelles qui quoi puis peux peut pouvez "
    "est avez etes sont combien".split()
)


def _signature(clause: str) -> bool:
    words = clause.split()
    return 1 <= len(words) <= 2 and "?" not in clause and not any(c.isdigit() for c in clause)


@lru_cache(maxsize=65536)
def _content_token(token: str) -> tuple[str, str] | None:
    """(its wording, its content word) for a content word; None for any other token."""
    if not _is_content(token):
        return None
    stem = _stem(token)
    return stem, _class_of(token) or stem


@lru_cache(maxsize=65536)
def features(text: str) -> TextFeatures:
    """Surface features of one text; memoised (a cached question is compared many times)."""
    return TextFeatures(text, _words(text))


def _rest_of(text: str, words_: _Words) -> _Rest:
    scrubbed, tokens = words_.scrubbed, words_.tokens
    numbers: list[str] = []
    units: set[tuple[str, str]] = set()
    for match in _NUMBER.finditer(scrubbed):
        value = _canonical_number(match.group(1))
        if value is None:
            continue
        numbers.append(value)
        after = scrubbed[match.end() :].lstrip()
        before = scrubbed[: match.start()].rstrip()
        unit = _unit_at(after) or (UNITS.get(before[-1]) if before and before[-1] in "€$£" else None)
        if unit:
            units.add((value, unit))
    for i, token in enumerate(tokens):
        if token in NUMBER_WORDS:
            value = _format_number(NUMBER_WORDS[token])
            numbers.append(value)
            if i + 1 < len(tokens) and tokens[i + 1] in UNITS:
                units.add((value, UNITS[tokens[i + 1]]))
    dates = [DATE_WORDS[t] for t in tokens if t in DATE_WORDS]
    if "ce soir" in scrubbed:
        dates.append("d0n")

    places = _places(scrubbed)
    names = _names(text, scrubbed, places, frozenset(tokens))
    words = frozenset(ALIASES.get(t, t) for t in tokens) | frozenset(names)
    return _Rest(
        lang=_language(tokens, text),
        numbers=tuple(numbers),
        units=frozenset(units) if units else _NONE,
        dates=tuple(dates),
        names=tuple(names),
        words=words,
        negated=not _NEGATION_HEADS.isdisjoint(places) and bool(_NEGATION_RX.search(scrubbed)),
        polar=_classes(scrubbed, _POLAR_RX, _POLAR_HEADS, places),
        exclusive=_classes(scrubbed, _EXCLUSIVE_RX, _EXCLUSIVE_HEADS, places),
        topics=_classes(scrubbed, _TOPIC_RX, _TOPIC_HEADS, places),
    )


def _canonical_number(raw: str) -> str | None:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw):  # 1,000 -> 1000
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".")
    try:
        return _format_number(float(raw))
    except ValueError:
        return raw


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _unit_at(after: str) -> str | None:
    match = re.match(r"[€$£%]|[\w]+", after)
    return UNITS.get(match.group(0)) if match else None


def _names(raw: str, scrubbed: str, places: set[str], kept: frozenset[str]) -> list[str]:
    """Proper nouns: known names (any case) and capitalised words not at a sentence start, among the words
    `kept` (a name in the manners stripped from the text, "Cheers, Tom", is no name of the question)."""
    found: list[tuple[int, str]] = []
    if not _KNOWN_HEADS.isdisjoint(places):  # (a known name starts where one of its heads stands)
        for match in _KNOWN_RX.finditer(scrubbed):
            found.append((match.start(), ALIASES.get(match.group(1), match.group(1))))
    known_spans = {name for _, name in found}
    if _shouting(raw):  # IN CAPITALS every word is capitalised: only the known names above count
        found.sort()
        return [name for _, name in found]
    for match in _RAW_WORD.finditer(raw):
        word = match.group(0)
        if not word[0].isupper() or _sentence_start(raw, match.start()):
            continue
        key = _fold_word(word).strip("'-")
        if (
            key not in kept
            or key in NOT_NAMES
            or key in DATE_WORDS
            or (len(key) > 1 and key in UNITS)
            or _pleasantry(key)
        ):
            continue
        key = ALIASES.get(key, key)
        if key not in known_spans and not any(key in span.split() for span in known_spans):
            found.append((match.start(), key))
    found.sort()
    return [name for _, name in found]


@lru_cache(maxsize=4096)
def _pleasantry(word: str) -> bool:
    """A word that is a whole greeting or thanks by itself ("Cheers", "Cordialement"): not a name."""
    return bool(_OPENING.fullmatch(word) or _CLOSING.fullmatch(word))


def _shouting(raw: str) -> bool:
    """Whether a text is written in capitals: most of its cased letters upper-case, over at least two words."""
    upper = sum(1 for c in raw if c.isupper())
    return upper >= 6 and upper >= 2 * sum(1 for c in raw if c.islower())


def _sentence_start(raw: str, start: int) -> bool:
    """Whether the word at `start` opens the text or a sentence: only spaces between it and `.!?:;`, a
    newline, a quote or a parenthesis. Looks back over the spaces only (a regex over the whole prefix cost
    quadratic time in the number of capitalised words)."""
    i = start
    while i > 0 and raw[i - 1].isspace() and raw[i - 1] != "\n":
        i -= 1
    if i == 0:
        return start == 0
    return raw[i - 1] in '.!?:;\n"«('


def _is_content(token: str) -> bool:
    return token[0].isalpha() and token not in STOPWORDS and token not in NUMBER_WORDS


@lru_cache(maxsize=16384)
def _class_of(token: str) -> str | None:
    for name, rx in _SYNONYM_RX:
        if rx.fullmatch(token):
            return "=" + name
    for name, rx in _TOPIC_RX:
        if rx.fullmatch(token):
            return "#" + name
    for name, rx in _POLAR_RX:
        if rx.fullmatch(token):
            return "#" + name
    return None


def _stem(token: str) -> str:
    for suffix in ("ing", "es", "s", "ed", "e"):
        if len(token) > len(suffix) + 3 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def _language(tokens: Sequence[str], raw: str) -> str:
    en = sum(t in EN_MARKERS for t in tokens)
    fr = sum(t in FR_MARKERS for t in tokens)
    if any(c in raw for c in "éèêàçùâîôû") or ("?" in raw and " ?" in raw):
        fr += 1
    if en > fr:
        return "en"
    if fr > en:
        return "fr"
    return "?"


# ------------------------------------------------------------------------------------------------ guard


def guard(a_text: str, b_text: str) -> str | None:
    """The reason A's answer must not serve B, or None when no guard objects. Symmetric."""
    return compare(features(a_text), features(b_text))


def compare(a: TextFeatures, b: TextFeatures) -> str | None:
    """First objection of the checks below, in order (cheapest and most specific first)."""
    for check in _CHECKS:
        reason = check(a, b)
        if reason:
            return reason
    return None


def objections(a_text: str, b_text: str) -> list[str]:
    """Every guard that objects (diagnostics; `guard` stops at the first)."""
    a, b = features(a_text), features(b_text)
    return [reason for check in _CHECKS if (reason := check(a, b))]


def _check_reference(a: TextFeatures, b: TextFeatures) -> str | None:
    return "reference" if a.codes != b.codes else None


def _check_number(a: TextFeatures, b: TextFeatures) -> str | None:
    if Counter(a.numbers) != Counter(b.numbers):
        big = {n for n in set(a.numbers) ^ set(b.numbers) if len(n) >= 5}
        return "reference" if big else "number"
    if _unit_clash(a.units, b.units) or _unit_clash(b.units, a.units):
        return "number"
    if Counter(a.dates) != Counter(b.dates):
        return "date"
    return None


def _check_entity(a: TextFeatures, b: TextFeatures) -> str | None:
    if any(n not in b.words for n in a.names) or any(n not in a.words for n in b.names):
        return "entity"
    return None


def _check_negation(a: TextFeatures, b: TextFeatures) -> str | None:
    return "negation" if a.negated != b.negated else None


def _check_antonym(a: TextFeatures, b: TextFeatures) -> str | None:
    if a.polar != b.polar:
        diff = a.polar ^ b.polar
        clash = any(frozenset((x, y)) in ANTONYM_PAIRS for x in diff for y in a.polar | b.polar if x != y)
        return "antonym" if clash else "polarity"
    for family in EXCLUSIVE_FAMILIES:
        fa, fb = a.exclusive.intersection(family), b.exclusive.intersection(family)
        if fa and fb and fa != fb:
            return "antonym"
    return None


def _check_topic(a: TextFeatures, b: TextFeatures) -> str | None:
    return "topic" if (a.topics - b.topics) and (b.topics - a.topics) else None


def _check_order(a: TextFeatures, b: TextFeatures) -> str | None:
    if _order_differs(a.numbers, b.numbers) or _order_differs(a.names, b.names) or _order_differs(a.dates, b.dates):
        return "word order"
    return None


def _check_wording(a: TextFeatures, b: TextFeatures) -> str | None:
    # the same words in other roles: another question ("miles into hotel points" / "hotel points into miles",
    # "my child's card" / "my child ... my card"); in another order only, the same one reworded ("the
    # warranty on the frame" / "the frame warranty")
    if _roles_swapped(_roles(a._text, a.wording, a.lang), _roles(b._text, b.wording, b.lang)):
        return "word order"
    if _swapped_pair(a.wording, b.wording) and not _one_fragment(a._text, b._text):
        return "word order"  # "Does the X price include Y?" / "Does the Y price include X?"
    if a.lang == b.lang and a.lang != "?":
        return _substitution(a.content, b.content)
    return None


_CHECKS = (
    _check_reference,
    _check_number,
    _check_entity,
    _check_negation,
    _check_antonym,
    _check_topic,
    _check_order,
    _check_wording,
)


def _unit_clash(a: frozenset, b: frozenset) -> bool:
    a_units, b_units = dict(a), dict(b)
    return any(n in b_units and b_units[n] != u for n, u in a_units.items())


# Who does what to whom: words that give the words after them a role ("from A to B", "X for Y", "paint over
# oil", "convertir X en Y", "basculer X sur Y", "la carte de mon enfant"), and possessors ("my child's card"):
# two texts with the same words in other roles ask other questions.
_ROLE_WORDS = {
    "en": frozenset(
        "from to into onto over in at for than instead with without by towards versus vs of not no never".split()
    ),
    "fr": frozenset(
        "a au aux en dans chez pour vers depuis contre par sur avec sans de du des pas rien jamais".split()
    ),
}
# one role under several words: "du mensuel à l'annuel" / "de l'annuel au mensuel" (folded: à is a), and a
# negation ("charged but no game" / "got the game but not charged": what is denied)
_ROLE_CLASS = {
    **{"du": "de", "des": "de", "au": "a", "aux": "a"},
    **dict.fromkeys("no never pas rien jamais".split(), "not"),
}
_COMPLEMENT = frozenset(["of", "de"])  # "billet de ferry": the complement belongs to the phrase
_POSSESSIVE_DETERMINERS = frozenset(
    "my your his her our their mon ma mes ton ta tes son sa ses notre nos votre vos leur leurs".split()
)
_PERSON = {  # one word per person: "to me" and "Can I ..." name the same one
    **dict.fromkeys("i me my mine myself je j' moi mon ma mes m'".split(), "me"),
    **dict.fromkeys("you your yours tu toi te ton ta tes vous votre vos t'".split(), "you"),
}
# a person a verb does something for without a role word ("book me a table", "ma mère peut me réserver"): as
# if "for" led it (only the pronouns that are never a subject or a determiner)
_OBJECT_PRONOUNS = {"en": frozenset("me him us them".split()), "fr": frozenset("me m' te t' lui".split())}
_IMPLICIT_ROLE = {"en": "for", "fr": "pour"}
# an arrow between two phrases leads the second as "to" does ("retrait magasin -> livraison à domicile"): for the
# roles of its words here, for the direction of a question in cache/verifier.py
ARROW = r"[-=]+>|\u2192|\u21d2"
_ROLE_TOKEN = re.compile(rf"[^\W\d_]+(?:-[^\W\d_]+)*(?:'s?(?![^\W\d_]))?|\d+|[.,;:!?]|{ARROW}")
_ARROW_ROLE = {"en": "to", "fr": "vers"}


@dataclass(frozen=True, slots=True)
class _Roles:
    phrases: tuple[tuple[str, frozenset[str]], ...]  # (role word, the words it leads)
    owned: tuple[tuple[str, str], ...]  # (possessor, what it owns): "my child's card", "la carte de mon enfant"
    owner_before: frozenset[str]  # words right after a possessive determiner or a person ("my card")
    words: frozenset[str]
    voices: frozenset[tuple[str, str]]  # (verb, "doer", "done" or "passive"): who did it (_voices)
    done_by_others: frozenset[str]  # words a content word does (_done_by_others)
    possessions: frozenset[tuple[str, str]]  # (whose, what): "your heads" / "your handle"
    participles: frozenset[str]  # the content words written as an English participle ("shipped", "tinted")


@lru_cache(maxsize=16384)
def _roles(text: str, wording: tuple[str, ...], lang: str) -> _Roles:
    """The role words of a text and what each leads (its first content word, or its first word when it has
    none: "to me", "en Go"; and a complement: "en billet de car"), and what is owned by whom."""
    role_words = _ROLE_WORDS.get(lang) or _ROLE_WORDS["en"] | _ROLE_WORDS["fr"] - {"a"}
    role_words = role_words | {_ROLE_CLASS[word] for word in role_words if word in _ROLE_CLASS}
    content = {_stem(word.rstrip("'")) if word.endswith("'") else word for word in wording}  # "my child's card"
    objects = _OBJECT_PRONOUNS.get(lang, frozenset())
    stems: list[str] = []
    possessive: list[bool] = []
    given: list[bool] = []  # an object pronoun: "me" of "ma mère peut me réserver"
    raw: list[str] = []
    for token in _ROLE_TOKEN.findall(_folded_question(text)):  # the manners around it aside
        owner = token.endswith("'s") or (token.endswith("'") and len(token) > 2)
        word = token[: -2 if token.endswith("'s") else -1] if owner else token
        given.append(word in objects and not (stems and stems[-1] in role_words))
        if word == "d'":  # "passer d'une offre"
            stems.append("de")
        elif word[-1] in ">\u2192\u21d2":
            stems.append(_ARROW_ROLE.get(lang, "to"))
        elif word in role_words:
            stems.append(_ROLE_CLASS.get(word, word))
        elif word in _PERSON:
            stems.append(_PERSON[word])
        else:
            stems.append(word if not word[0].isalpha() else _stem(word))
        possessive.append(owner and stems[-1] in content)
        raw.append(word)
    phrases, owned, owner_before = [], [], set()
    for i, stem in enumerate(stems):
        nxt = stems[i + 1] if i + 1 < len(stems) else ""
        if possessive[i] and nxt in content:
            owned.append((stem, nxt))
        if given[i]:
            phrases.append((_IMPLICIT_ROLE[lang], frozenset([stem])))
        if stem in _POSSESSIVE_DETERMINERS or (stem in ("me", "you") and nxt in content):
            owner_before.add(nxt)
        if stem not in role_words or not nxt:
            continue
        if stem in _COMPLEMENT and (nxt in _POSSESSIVE_DETERMINERS or nxt in ("me", "you")):
            # "la carte de mon enfant": the word before "de" is owned by the one after the determiner
            if i >= 1 and stems[i - 1] in content and i + 2 < len(stems) and stems[i + 2] in content:
                owned.append((stems[i + 2], stems[i - 1]))
        led = _led(stems, i + 1, role_words, content)
        if led:
            phrases.append((stem, led))
    return _Roles(
        tuple(phrases),
        tuple(owned),
        frozenset(owner_before),
        frozenset(stems),
        _voices(raw, stems, content, lang),
        _done_by_others(raw, stems, content),
        frozenset(
            (_PERSON.get(word, word), stems[i + 1])
            for i, word in enumerate(raw[:-1])
            if word in _POSSESSIVE_DETERMINERS and stems[i + 1] in content
        ),
        _participles(raw, stems, content) if lang == "en" else _NONE,
    )


def _participles(raw: list[str], stems: list[str], content: set[str]) -> frozenset[str]:
    """The content words written as a participle with no object after it: a state ("tinted paint", "it hasn't
    shipped"), not a verb whose subject was left out ("referred a friend")."""
    return frozenset(
        stem
        for i, (word, stem) in enumerate(zip(raw, stems))
        if word.endswith("ed") and stem in content and not (i + 1 < len(raw) and raw[i + 1] in _OBJECT_STARTS)
    )


_OBJECT_STARTS = frozenset("a an the my your his her our their this that these those me you him us them it".split())


# Who did it: a verb after "I" / "je" is done by me ("doer"), one after French "me" / "m'" or before English
# "me" is done to me ("done"), as is one after "I was" / "je ... été" with a participle ("I was charged"), and
# one after "been" / "being" / "got" / "été" is done to someone ("passive"): "I referred a friend" / "A
# friend referred me" / "for being referred by a friend"
_SUBJECTS = frozenset("i we je j' on".split())
_OBJECTS = {"en": frozenset("me us".split()), "fr": frozenset("me m' te t'".split())}
_PASSIVE = frozenset("been being got get gets getting ete".split())
_BE = frozenset("be was were is am are been being got get ete".split())
_STATE = frozenset("was were is are".split())
_AUXILIARIES = frozenset(
    "am is are was were be been being have has had do does did will would can could should may might must just"
    " also already really ai as a avons avez ont suis es est sommes etes sont ete vais vas va allons peux peut"
    " veux veut dois doit ne n' y en me m' te t' se s' not never pas rien jamais".split()
)


def _voices(raw: list[str], stems: list[str], content: set[str], lang: str) -> frozenset[tuple[str, str]]:
    """(verb, who did it) pairs of a text, for its content words a person or a passive stands before."""
    voices = set()
    objects = _OBJECTS.get(lang, frozenset())
    for i, word in enumerate(raw):
        if word in _SUBJECTS or word in _PASSIVE or (lang == "fr" and word in objects):
            passive, verb, participle = word in _PASSIVE, "", False
            for j in range(i + 1, min(i + 5, len(raw))):
                if raw[j] not in _AUXILIARIES and not _adverb(raw[j]):
                    verb, participle = stems[j], lang == "fr" or raw[j].endswith("ed")
                    break
                passive = passive or (raw[j] in _BE)
            if verb not in content:
                continue
            if word in _PASSIVE:
                if participle:
                    voices.add((verb, "passive"))
            elif word in _SUBJECTS:
                voices.add((verb, "done" if passive and participle else "doer"))
            else:
                voices.add((verb, "done"))
        elif lang == "en" and word in objects and i and stems[i - 1] in content:
            voices.add((stems[i - 1], "done"))
        elif word in _STATE and i and raw[i - 1] not in _SUBJECTS and i + 1 < len(raw) and raw[i + 1].endswith("ed"):
            if stems[i + 1] in content:  # "my order was cancelled", "my card is blocked"
                voices.add((stems[i + 1], "passive"))
    return frozenset(voices)


def _adverb(word: str) -> bool:
    return len(word) > 5 and word.endswith(("ly", "ment"))


_DETERMINERS = _POSSESSIVE_DETERMINERS | frozenset("the a an this that le la les l' un une ce cette".split())


def _done_by_others(raw: list[str], stems: list[str], content: set[str]) -> frozenset[str]:
    """The verbs of a clause whose subject is a thing or another person ("My company booked my room", "Ma
    société a réservé", "Can the seller cancel my order?"): a verb after an auxiliary or ending in "ed", right
    after a determiner and a content word, or after one an auxiliary asks of (not "my order was paid": done to
    it; not "mot de passe oublié": no determiner, no auxiliary)."""
    done = set()
    for i in range(2, len(stems)):
        j, helped = i - 1, False
        while j >= 0 and (raw[j] in _AUXILIARIES or _adverb(raw[j])):
            if raw[j] in _BE:
                break
            helped, j = helped or raw[j] in _AUXILIARIES, j - 1
        else:
            asked = j >= 2 and raw[j - 2] in _ASKING_AUXILIARIES  # "Can the seller cancel my order?"
            if (
                j >= 1
                and (helped or asked or raw[i].endswith("ed"))
                and stems[j] in content
                and stems[j] not in ("me", "you")
                and raw[j - 1] in _DETERMINERS
                and not (j >= 2 and raw[j - 2] in _STATE)  # "was my order cancelled": done to it (_voices)
            ):
                done.add(stems[i])
    return frozenset(done & content)


_ASKING_AUXILIARIES = frozenset("can could will would do does did should may might must".split())


def _voices_differ(ra: _Roles, rb: _Roles) -> bool:
    """One text says I did what the other says was done to me; or one says it was done (passive) where the
    other has the same verb otherwise ("for being referred" / "for referring", "My order was cancelled" /
    "How do I cancel my order?"); the verb as written or the start of a longer form ("annule" / "annuler")."""
    for mine, theirs in ((ra, rb), (rb, ra)):
        for verb, voice in mine.voices:
            alike = {word for word in theirs.words if _alike(word, verb)}
            if not alike:
                continue
            their = {how for word, how in theirs.voices if word in alike}
            if voice == "doer" and "done" in their and "doer" not in their:
                return True
            if voice == "passive" and not their & {"passive", "done"} and (their or not alike <= theirs.participles):
                return True  # not against a participle with no doer: "tinted paint", "it hasn't shipped"
            if voice == "doer" and "doer" not in their and alike & theirs.done_by_others:
                return True  # "I booked my room" / "My company booked my room"
    return False


def _led(stems: list[str], start: int, role_words: frozenset[str], content: set[str]) -> frozenset[str]:
    """What a role word at start - 1 leads: its first content word within four words (and that word's
    complement: "billet de car"), else its first word."""
    for j in range(start, min(start + 4, len(stems))):
        if (stems[j] in role_words and stems[j] not in _COMPLEMENT) or not stems[j][0].isalnum():
            break
        if stems[j] in content:
            led = [stems[j]]
            for k in range(j + 1, min(j + 3, len(stems))):  # "compte perso", "billet de car"
                if stems[k] in content:
                    led.append(stems[k])
                elif not (stems[k] in _COMPLEMENT and k == j + 1):
                    break
            return frozenset(led)
    return frozenset(stems[start : start + 1]) if stems[start][0].isalnum() else frozenset()


def _roles_swapped(ra: _Roles, rb: _Roles) -> bool:
    """Two texts give the same words other roles: a role word both use leads, in each, a word the other
    has only elsewhere ("points into miles" / "miles into points", "to me" / "I ... to a friend"); or what
    one text's possessor owns has an owner named by a determiner in the other ("my child's card" / "my
    child ... my card")."""
    for role in {role for role, _ in ra.phrases} & {role for role, _ in rb.phrases}:
        in_a = [led for r, led in ra.phrases if r == role]
        in_b = [led for r, led in rb.phrases if r == role]
        if len(in_a) > 1 and in_a != in_b and sorted(map(sorted, in_a)) == sorted(map(sorted, in_b)):
            return True  # "for my mum ... for me" / "for me ... for my mum"
        led_a, led_b = frozenset().union(*in_a), frozenset().union(*in_b)
        if _elsewhere(led_a - led_b, led_b, rb.words) and _elsewhere(led_b - led_a, led_a, ra.words):
            return True
    for one, other in _OPPOSITE_ROLES:
        (one_a, other_a), (one_b, other_b) = _led_only(ra, one, other), _led_only(rb, one, other)
        if one_a & other_b or other_a & one_b:
            return True  # "fly into Geneva" / "fly to ... from Geneva"; "with my badge" / "without my badge"
    if _voices_differ(ra, rb):
        return True
    for whose in {who for who, _ in ra.possessions} & {who for who, _ in rb.possessions}:
        # "your heads ... an Oral-B handle" / "Oral-B heads ... your handle"
        mine_a = {thing for who, thing in ra.possessions if who == whose}
        mine_b = {thing for who, thing in rb.possessions if who == whose}
        if (mine_a - mine_b) & rb.words and (mine_b - mine_a) & ra.words:
            return True
    for mine, theirs in ((ra, rb), (rb, ra)):
        for owner, thing in mine.owned:
            if owner in theirs.words and (owner, thing) not in theirs.owned and thing in theirs.owner_before:
                return True
    return False


# opposite roles: a word led by one of a pair in a text and by the other in another text is another question
# (where one goes / where one leaves from; what one has / what one goes without)
_OPPOSITE_ROLES = (
    (frozenset("to into onto towards vers a".split()), frozenset("from depuis".split())),  # folded "à", "au", "aux"
    (frozenset("with avec".split()), frozenset("without sans".split())),
)


def _led_only(roles: _Roles, one: frozenset[str], other: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(the words only `one` leads, the words only `other` leads): "from my contract line to my prepaid line"
    gives (prepaid,), (contract,)."""
    by_one = frozenset().union(*[led for role, led in roles.phrases if role in one])
    by_other = frozenset().union(*[led for role, led in roles.phrases if role in other])
    return by_one - by_other, by_other - by_one


def _one_fragment(a: str, b: str) -> bool:
    """Whether one text has no question word and the other has one: a fragment orders its words otherwise
    ("Sunday opening time?" / "What time do you open on Sundays?")."""
    from gateway.cache.verifier import is_fragment

    return is_fragment(a) != is_fragment(b)


def _swapped_pair(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """The same words where two that are not neighbours trade places, the rest in place."""
    if len(a) != len(b) or a == b:
        return False
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return (
        len(differ) == 2 and differ[1] - differ[0] >= 2 and (a[differ[0]], a[differ[1]]) == (b[differ[1]], b[differ[0]])
    )


def _elsewhere(words: frozenset[str], led: frozenset[str], other: frozenset[str]) -> bool:
    """Whether one of `words` (led by a role word in one text) is in the other text but not led by that role
    word there (`led`), as written or as the start of a longer word ("prepay" / "prepayment")."""
    for word in words:
        if not any(_alike(word, theirs) for theirs in led) and any(_alike(word, theirs) for theirs in other):
            return True
    return False


def _alike(a: str, b: str) -> bool:
    """The same word, or one the start of the other, of 5 letters or more ("prepay" / "prepayment")."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return a == b or (len(short) >= 5 and long.startswith(short))


def _order_differs(a: tuple, b: tuple) -> bool:
    return len(a) >= 2 and Counter(a) == Counter(b) and a != b


def _substitution(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """Same wording but one content word swapped for another that is not its synonym."""
    only_a = Counter(a) - Counter(b)
    only_b = Counter(b) - Counter(a)
    shared = sum((Counter(a) & Counter(b)).values())
    if only_a and only_b and shared >= 1 and sum(only_a.values()) <= 2 and sum(only_b.values()) <= 2:
        return "substitution"
    return None


# ------------------------------------------------------------------------------------------------ match


@dataclass(frozen=True, slots=True)
class Match:
    index: int
    text: str
    score: float
    payload: Any


@dataclass(frozen=True, slots=True)
class Candidates:
    """Cached questions of one partition (intent, system prompt): a matrix of unit vectors and the
    parallel texts and payloads. Build it once per partition change, search it per request."""

    vectors: np.ndarray  # (n, d) float32, rows L2-normalised
    texts: Sequence[str]
    payloads: Sequence[Any]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, np.ndarray, Any]]) -> "Candidates":
        rows = list(rows)
        if not rows:
            return cls(np.zeros((0, 0), dtype=np.float32), [], [])
        texts, vectors, payloads = zip(*rows)
        return cls(np.ascontiguousarray(np.stack(vectors), dtype=np.float32), list(texts), list(payloads))

    def __len__(self) -> int:
        return len(self.texts)


def find_match(
    query_text: str,
    query_vec: np.ndarray,
    candidates: Candidates | Sequence[tuple[str, np.ndarray, Any]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    max_checks: int = 8,
) -> Match | None:
    """The most similar candidate at or above `threshold` that passes every guard, or None.

    One matrix-vector product; guards run only on the (at most `max_checks`) best candidates above the
    threshold, best first."""
    if not isinstance(candidates, Candidates):
        candidates = Candidates.from_rows(candidates)
    if len(candidates) == 0 or query_vec is None:
        return None
    scores = candidates.vectors @ np.asarray(query_vec, dtype=np.float32)
    above = np.flatnonzero(scores >= threshold)
    if above.size == 0:
        return None
    if above.size > max_checks:
        above = above[np.argpartition(-scores[above], max_checks - 1)[:max_checks]]
    query = features(query_text)
    for index in above[np.argsort(-scores[above], kind="stable")]:
        text = candidates.texts[index]
        if compare(query, features(text)) is None:
            return Match(int(index), text, float(scores[index]), candidates.payloads[index])
    return None


def contains_personal_data(text: str) -> bool:
    """True when the text carries an e-mail, phone number, url, or an id/code (letters with digits,
    or five digits or more): such questions are cached only for intents with allow_personal_data."""
    folded = _fold(text)
    return bool(
        _EMAIL.search(folded) or _PHONE.search(folded) or _URL.search(folded) or _CODE.search(_EMAIL.sub(" ", folded))
    )
