"""Does one answer serve both questions? A learned pair verifier, the semantic cache's last word on a hit.

    verifier = Verifier.load()                                  # weights shipped in cache/verifier.json
    verifier.vetoed("Do you ship to Canada?", "Do you ship from Canada?")                  # -> True
    verifier.best(question, vector, candidates)                 # the best verified candidate, or None

A small model over features of the pair: embedding similarity, character and content-word overlap,
content words present on one side only (a qualifier added, a word swapped), **soft word alignment** (each
word of one side against its best match on the other by the static model's word vectors, weighted by the
word's weight in that table, so a rare word left unmatched costs much, a frequent one little), the kind of
question (how / where / when / why / what / how much / can / yes-no), direction words (to / from, vers /
depuis), the guards of cache/semantic.py (numbers, names, negation, antonyms, topics, word order), and
length. The model is either a logistic regression or boosted depth-2 trees (`kind` in the JSON); features
named in `vetoes` refuse a pair whatever the score, and are checked first, cheapest first (`vetoed`): the
shipped ones are another kind of question, another direction, the hard guards, and an **unmatched**
content word (one side's content word with no counterpart on the other: not the same word or class, not a
typo of one, not a close neighbour in the word table, and not a light word). It is trained by
`gateway cache train-verifier` on pairs drawn from the dev pools and the project's labelled pairs, and its
threshold is calibrated there, on questions of families held out from the fold's training, at the upper
confidence bound of the false-hit rate. Candidates are the nearest stored questions by cosine (at most
`max_checks`, at or above `floor`); one whose words the question repeats with only politeness around them
(`semantic.framed_by_manners`) wins at once, else the one the verifier likes best wins if it clears the
threshold. When in doubt: miss.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np

from gateway.cache.lexicon import UNITS
from gateway.cache.semantic import ARROW, Candidates, _stem, features, framed_by_manners, objections, question_part

__all__ = ["FEATURES", "Trees", "Verifier", "Verified", "pair_features"]

MODEL_PATH = Path(__file__).with_name("verifier.json")  # for the gateway's default embedding (static)


def model_path(embedding: str = "static") -> Path:
    """The weights trained on this embedding's cosines: verifier.json (static), verifier_usem3.json."""
    return MODEL_PATH if embedding == "static" else MODEL_PATH.with_name(f"verifier_{embedding}.json")


REASONS = (
    "reference",
    "number",
    "date",
    "entity",
    "negation",
    "antonym",
    "polarity",
    "topic",
    "word order",
    "substitution",
)
# soft alignment: unaligned weight (sum over both sides / total, the largest, the smaller side's largest,
# weight of words whose best match is under 0.5, the largest of those), then per cut-off the largest
# weight of a word matched under the cut-off (either side, and the smaller of the two sides)
ALIGN_CUTS = (0.4, 0.5, 0.6, 0.7, 0.8)
ALIGN = ("unaligned_sum", "unaligned_max", "unaligned_min_side", "hard_unaligned_w", "hard_unaligned_max") + tuple(
    f"{side}{int(cut * 10)}" for cut in ALIGN_CUTS for side in ("umax", "umin")
)
# content words on one side with no counterpart on the other: not the same word or synonym class, not a
# typo of one (one edit), not a close neighbour in the static table (cosine >= CLOSE),
# and weighing at least LIGHT there (a rare word weighs much, "please", "want" little; one letter nothing).
# CLOSE was 0.8 until the 990 questions of pool_train2 showed grades as close words ("excellent" / "good"
# 0.87, refurbished grade A vs B); at 0.9 no training pool lost a hit (pools and their re-asked variants).
CLOSE, LIGHT = 0.9, 0.3
MATCHING = ("unmatched", "unmatched_both_sides")
FEATURES = (
    (
        "cosine",
        "char_overlap",
        "word_overlap",
        "class_overlap",
        "only_one_side",
        "only_both_sides",
        "question_kind_differs",
        "direction_differs",
        "log_length_ratio",
        "short",
        "guards",
    )
    + REASONS
    + ALIGN
    + MATCHING
)
# The sign each weight may take: more similarity can only help, a difference can only hurt. Training keeps
# to them (few labelled pairs would otherwise learn quirks of who wrote them, e.g. "paraphrases share
# fewer words than siblings").
SIGNS = (1, 1, 1, 1, -1, -1, -1, -1, -1, 0, -1) + (-1,) * (len(REASONS) + len(ALIGN) + len(MATCHING))

# what to do now that something happened: what the telling of it asks ("My order arrived damaged, what should I
# do?" / "order arrived damaged"); not what to do to get something done, which asks how
_HELP = (
    r"what (?:should|do|can|shall) (?:i|we) do(?! to\b)|what happens now|can (?:you|u) help(?: me)?(?=\s*[?!.]*\s*$)"
    r"|que (?:dois-je|dois je|faut-il) faire|je fais quoi"
)
_HELP_RX = re.compile(rf"(?<![\w'])(?:{_HELP})(?![\w])")
# closed classes: the first of these words in a question says what kind of answer it wants
_KINDS = (
    (
        "amount",
        r"how (?:much|many|long)|combien|quel (?:est le )?(?:prix|montant|d[ée]lai)"
        r"|what(?:'s| is| are)(?: the)? (?:price|cost|fee|charge|rate)s?|what do(?:es)? (?:you|it) (?:charge|cost)"
        r"|quel(?:le)? est (?:le |la )?(?:prix|tarif|co[uû]t|dur[ée]e)|quels sont (?:les|vos) (?:prix|tarifs)",
    ),
    ("help", _HELP),
    ("how", r"how|comment|what(?:'s| is) the (?:best |easiest |quickest )?way to"),
    ("where_to", r"where (?:can|do|should|could) (?:i|we)|o[uù] (?:puis[- ]je|peut[- ]on|dois[- ]je|trouver|je|on)"),
    ("where", r"where|o[uù]|wheres"),
    ("when", r"when|quand|[àa] quelle heure|what time|quelle heure"),
    ("why", r"why|pourquoi"),
    ("what", r"what|which|whats|quel|quelle|quels|quelles|qu'est"),
    (
        "can",
        r"can|could|may|is it possible|puis|peut|peux|pouvez|pourrais|pourriez|pourrait|est-il possible|possible"
        r"|would you be able|are you able",
    ),
    # "am" before "i" only: "Am I allowed to ...?" asks yes or no; "I am trying to ..." tells. "avez" not before a
    # participle: "vous avez livré ma commande chez le voisin" tells what happened
    (
        "yesno",
        r"do|does|did|is|are|am(?= i\b)|r|will|have|has|est-ce|avez(?! (?!vous\b)\w{2,}(?:é|ée|és|ées|i|u|ue|us)\b)"
        r"|[eê]tes|proposez|acceptez|livrez|vendez",
    ),
)
# "est-ce que" only says that a French sentence is a question: the kind is read after it ("est-ce que je
# peux" asks what "je peux ... ?" and "puis-je" ask)
_EST_CE_QUE = re.compile(r"(?<![\w'])est[- ]ce qu(?:e\b|')\s*")
# One search finds the kind: the leftmost place any kind matches, and there the first kind in this order
# (what searching each kind apart and keeping the earliest start, ties to the first listed, gives).
_KIND_RX = re.compile(r"(?<![\w'])(?:" + "|".join(f"(?P<{kind}>{rx})" for kind, rx in _KINDS) + r")(?![\w])")
_DIRECTIONS = {
    "to": "to",
    "into": "to",
    "towards": "to",
    "vers": "to",
    "au": "to",
    "aux": "to",
    "à": "to",
    "from": "from",
    "depuis": "from",
    "off": "from",
    "out": "from",
}
_WORD = re.compile(r"[\w']+")
_ASKING = frozenset("what when which quelle quel quand".split())
# an English "to" after these words leads a verb, not a place ("is it possible to pay", "going to be")
_TO_VERB = frozenset(
    "possible able want wants wanted wanna need needs needed going like love prefer have has had how way allowed"
    " supposed try trying plan planning hoping hope wish order about decide forgot forget remember easy hard"
    " impossible ok okay due used cost costs much many long price prices fee fees take takes took ask asked"
    " who what where when which whom whether".split()  # "how much to rent", "who to call", "does it take to ship"
)


# A text with no question word asks what to do or whether, unless it tells what happened: a verb in the
# past ("I returned my order", "Mon colis est arrivé") with no question mark and no request ("I want to").
_REQUEST = re.compile(
    r"\b(?:want|wanna|would like|i'd like|need|trying to|looking for|veux|voudrais|voudrait|aimerais"
    r"|souhaite|souhaiterais|besoin|cherche)\b"
)
_PAST = re.compile(
    r"\b[a-z]{3,}ed\b|\b(?:est|a|ai|as|avez|avons|ont|suis|sont|été|ete)\s+\w{2,}(?:é|ée|és|ées|i|u|ue|us)\b"
)


def _statement_kind(lower: str) -> str:
    if "?" in lower or _REQUEST.search(lower):
        return "statement"
    # a participle right after a determiner names a state, it tells nothing: "returning an opened toy"
    told = any(not _AFTER_DETERMINER.search(lower, 0, m.start()) for m in _PAST.finditer(lower))
    return "telling" if told else "statement"


_TRAILING_ASK = re.compile(
    r"(?<![\w'])(why|when|where|how|pourquoi|quand|où|comment|combien|quoi|(?:what|which|quel(?:le)?s?) [\w-]+"
    r"|(?:[àa] )?quelle heure)\s*[?!.]*\s*$"
)
_AFTER_DETERMINER = re.compile(r"(?<![\w'])(?:a|an|the|my|your|this|that|these|those|un|une|le|la|les|mon|ma|mes)\s+$")


@lru_cache(maxsize=16384)
def _kind_direction(text: str) -> tuple[str, frozenset[str], tuple[str, ...]]:
    """(kind of question, direction classes, words) of one text."""
    lower = question_part(text)  # lower-cased, the manners around it dropped (memoised: the language reads it)
    searched = _EST_CE_QUE.sub("", lower) if "ce qu" in lower else lower
    match = _KIND_RX.search(searched)
    kind = match.lastgroup if match is not None and match.lastgroup else _statement_kind(lower)
    if kind in ("yesno", "can", "statement", "telling"):
        # a question word that ends the question asks its kind: "My direct debit is more than my bill, why?",
        # "je peux déposer mon vélo quand ?", "Size 86 is for what age?"
        tail = _TRAILING_ASK.search(searched)
        asked = _KIND_RX.match(tail.group(1)) if tail is not None else None
        if tail is not None and asked is not None and asked.lastgroup:
            match, kind, searched = asked, asked.lastgroup, tail.group(1)
        elif _HELP_RX.search(searched):  # "An item is missing from my order, what should I do?"
            kind = "help"
    kind = "yesno" if kind == "can" else kind  # "Can you deliver?" and "Do you deliver?" both ask yes or no
    words = tuple(_WORD.findall(lower))
    if kind == "what" and match is not None and _WHAT_IS.match(searched, match.start()):
        kind = "what-is"
    if kind in _NAMES_ITS_AMOUNT:
        topics = features(text).content
        if not _SAID_BY_KIND["amount"].isdisjoint(words) or not _AMOUNT_TOPICS.isdisjoint(topics):
            kind = _NAMES_ITS_AMOUNT[kind]  # "What's the exit fee on ...?" asks how much; "Plant delivery fee?" may
        elif kind == "statement" and (_HOURS_TOPIC in topics or not _DATE_WORDS.isdisjoint(words)):
            kind = "statement-when"  # "Sunday opening time?", "next workshop date?" may ask when
        elif kind == "statement" and not _SAID_BY_KIND["where"].isdisjoint(words):
            kind = "statement-where"  # "refund status?" asks "Where is my refund?"
        elif kind == "what-is" and _HOURS_TOPIC in topics:
            kind = "when"  # "Quels sont les horaires d'ouverture ?" asks "À quelle heure ouvrez-vous ?"
    directions = frozenset(
        _DIRECTIONS[w]
        for i, w in enumerate(words)
        if w in _DIRECTIONS
        and not (w == "to" and i and words[i - 1] in _TO_VERB)
        and not (i + 1 < len(words) and words[i + 1] in _ASKING)  # "from what time": a time, no place
    )
    if _ARROW.search(lower):  # "retrait magasin -> livraison à domicile": the arrow leads where to
        directions |= _TO
    bare_a = any(w == "a" and not (i + 1 < len(words) and words[i + 1] in _ASKING) for i, w in enumerate(words))
    # French typed without accents writes "à" as "a" (not before a question word: "a quelle heure")
    if bare_a and "to" not in directions and lower.isascii() and features(text).lang == "fr":
        directions |= _TO
    return kind, directions, words


_TO = frozenset({"to"})
_ARROW = re.compile(ARROW)


@lru_cache(maxsize=16384)
def _surface(text: str) -> tuple[str, frozenset[str], frozenset[str], int]:
    """(kind of question, direction classes, character trigrams, word count) of one text."""
    kind, directions, words = _kind_direction(text)
    folded = " " + " ".join(_stem_of(w)[1] for w in words) + " "
    grams = frozenset(folded[i : i + 3] for i in range(len(folded) - 2))
    return kind, directions, grams, len(words)


def _table():
    """The static model's word table, loaded on first use."""
    from gateway.static_embedding import default_model

    return default_model()


_NO_WORDS = (np.zeros((0, 1), dtype=np.float32), np.zeros(0))


@lru_cache(maxsize=16384)
def _words(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(unit vectors, weights) of a text's words in the static table (see `_token`: a rare word weighs
    much, "the", "to" near 0)."""
    from gateway.static_embedding import WORD

    found = [_token(word) for word in WORD.findall(text.lower())]
    kept = [(vector, weight) for vector, weight in found if vector is not None and weight > 1e-6]
    if not kept:
        return _NO_WORDS
    return np.stack([vector for vector, _ in kept]), np.array([weight for _, weight in kept], dtype=np.float64)


def _alignment(a: str, b: str) -> list[float]:
    va, wa = _words(a)
    vb, wb = _words(b)
    if len(wa) == 0 or len(wb) == 0 or va.shape[1] != vb.shape[1]:
        return [1.0] * len(ALIGN)
    sims = va @ vb.T
    best_a, best_b = sims.max(axis=1), sims.max(axis=0)
    left_a, left_b = wa * np.clip(1 - best_a, 0, 1), wb * np.clip(1 - best_b, 0, 1)
    max_a, max_b = float(left_a.max()), float(left_b.max())
    hard_a, hard_b = (best_a < 0.5) * wa, (best_b < 0.5) * wb
    out = [
        float((left_a.sum() + left_b.sum()) / (wa.sum() + wb.sum())),
        max(max_a, max_b),
        min(max_a, max_b),
        float(hard_a.sum() + hard_b.sum()),
        float(max(hard_a.max(), hard_b.max())),
    ]
    for cut in ALIGN_CUTS:
        xa, xb = float(((best_a < cut) * wa).max()), float(((best_b < cut) * wb).max())
        out += [max(xa, xb), min(xa, xb)]
    return out


@lru_cache(maxsize=65536)
def _token(token: str) -> tuple[np.ndarray | None, float]:
    """(unit vector, weight) of one token in the static table: the sum of its rows and that sum's norm."""
    model = _table()
    rows = model.rows_of(token) if model is not None else []
    if not rows:
        return None, 0.0
    vector = model.table.take(rows, axis=0).sum(axis=0)
    weight = float(np.linalg.norm(vector))
    return (vector / weight if weight > 0 else vector), weight


@lru_cache(maxsize=65536)
def _stem_of(word: str) -> tuple[str, str]:
    """(stem, accent-folded word) of a lower-case word."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
    return _stem(folded), folded


@dataclass(frozen=True, slots=True)
class _Content:
    keys: tuple[str, ...]  # synonym class or stem of each content word
    keyset: frozenset[str]
    tokens: tuple[str, ...]  # each as written: its vector is the table's (`_token`), not its stem's pieces'
    weights: tuple[float, ...]  # 0 for a light word (see LIGHT)
    heavy: tuple[int, ...]  # the words whose weight is not 0: those `_unmatched` looks at
    unknown: frozenset[str]  # the tokens the static table lacks: a slip (`_slip`) needs one on either side


@lru_cache(maxsize=16384)
def _content(text: str) -> _Content:
    """A text's content words, the light ones (see LIGHT) flagged by a weight of 0."""
    from gateway.static_embedding import WORD

    f = features(text)
    # stem -> the word as written, its first occurrence (reversed: the first one is assigned last)
    written = dict(reversed([_stem_of(word) for word in WORD.findall(text.lower())]))
    tokens = tuple([written.get(stem, stem) for stem in f.wording])  # a rewritten word (gift card -> giftcard) as is
    weights = tuple([_weight(token) for token in tokens])
    heavy = tuple([i for i, weight in enumerate(weights) if weight != 0.0])
    keys = tuple(f.content)
    model = _table()
    unknown = frozenset(tokens) if model is None else frozenset([t for t in tokens if t not in model.index])
    return _Content(keys, frozenset(keys), tokens, weights, heavy, unknown)


def _weight(token: str) -> float:
    weight = _token(token)[1]
    return weight if len(token) >= 2 and weight >= LIGHT else 0.0


@lru_cache(maxsize=65536)
def _typo(a: str, b: str) -> bool:
    """One edit apart, both of 5 letters or more. Two neighbouring letters swapped ("atricle") are one edit,
    the commonest slip of a typist (optimal string alignment). Two edits were allowed for long words while a
    swap counted as two; with swaps at one, two let "daectivate" (a slip for "deactivate") read as "activate"."""
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 2:
        return False
    limit = 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb and ca != cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        if min(current) > limit:
            return False
        before, previous = previous, current
    return previous[-1] <= limit


def _unmatched(a: str, b: str, first: bool = False) -> tuple[int, int]:
    """How many content words of each side have no counterpart on the other (see CLOSE, LIGHT); with
    `first`, stop at the first one (the veto needs no more). Cheapest test first: same key, then a close
    word in the table, then a typo."""
    ca, cb = _content(a), _content(b)
    loose_a = [i for i in ca.heavy if ca.keys[i] not in cb.keyset]  # the words a key lookup did not match
    loose_b = [i for i in cb.heavy if cb.keys[i] not in ca.keyset]
    if not loose_a and not loose_b:
        return 0, 0
    counts = [0, 0]
    kind = _kind_direction(a)[0]
    said = _said(kind, _kind_direction(b)[0]) | _units_both_name(a, b)
    for side, loose, mine, other in ((0, loose_a, ca, cb), (1, loose_b, cb, ca)):
        # a close word stands for one word: a word of the other side whose twin is here is taken ("I bought a
        # used laptop, can I use it?": "used" is no "use", which "use" answers); an inflection of one root may
        # still stand for it ("printer" / "printing")
        if not loose:
            continue
        free = tuple(t for t, k in zip(other.tokens, other.keys) if k not in mine.keyset)
        for i in loose:
            token = mine.tokens[i]
            if (token in said or _close_to_any(token, free) or _same_root(token, other.tokens)) and not _negated_in(
                token, other.tokens
            ):  # the rarer test last: most loose words match nothing
                continue
            if (
                len(token) >= 5
                and (other.unknown or token in mine.unknown)
                and any(abs(len(token) - len(theirs)) <= 2 and _slip(token, theirs) for theirs in free)
            ):
                continue
            if any(
                (token in mine.unknown and _abbreviation(token, theirs))
                or (theirs in other.unknown and _abbreviation(theirs, token))
                for theirs in free
            ):
                continue
            counts[side] += 1
            if first:
                return counts[0], counts[1]
    return counts[0], counts[1]


# words that say no more than the kind of question both sides ask: "How much does a filling cost?" asks what
# "How much is a filling?" asks
_SAID_BY_KIND = {
    "amount": frozenset(
        "price prices cost costs fee fees charge prix tarif tarifs coute coûte coutent coûtent".split()
    ),
    "when": frozenset(["time", "heure", "date", "dates"]),
    "where": frozenset(["status", "statut"]),
    "yesno": frozenset("allowed permitted okay ok autorisé autorise permis available disponible dispo offer".split()),
}
_SAID_BY_KIND["yesno-amount"] = _SAID_BY_KIND["amount"] | _SAID_BY_KIND["yesno"]
# two kinds between which one kind's words say no more: how much, whether it costs and a fragment that names a
# price; a question and the fragment that names what it asks ("refund status?", "workshop date?", "… available?")
_SAID_BETWEEN = {
    frozenset(pair): name
    for pair, name in (
        (("amount", "yesno-amount"), "amount"),
        (("amount", "statement-amount"), "amount"),
        (("yesno-amount", "statement-amount"), "amount"),
        (("where", "statement-where"), "where"),
        (("when", "statement-when"), "when"),
        (("yesno", "statement"), "yesno"),
    )
}


def _units_both_name(a: str, b: str) -> frozenset[str]:
    """The words of a unit that both texts give to the same number ("48h" / "48 hours", "€50" / "50 euros"): the
    numbers' check compares them, they need no counterpart."""
    shared = {unit for _, unit in features(a).units & features(b).units}
    return frozenset(word for word, unit in UNITS.items() if unit in shared) if shared else frozenset()


def _said(ka: str, kb: str) -> frozenset[str]:
    name = ka if ka == kb else _SAID_BETWEEN.get(frozenset((ka, kb)))
    return _SAID_BY_KIND.get(name, frozenset()) if name else frozenset()


# inflections: a word and its root, or two words of one root ("partager" / "partages", "booked" / "booking")
_ENDINGS = tuple("ements ement ings ing ées ees és es ée ee é ed er ez ant ent ons s e".split())


@lru_cache(maxsize=65536)
def _roots(token: str) -> frozenset[str]:
    """The token and what it leaves without one of _ENDINGS, when at least 4 letters remain."""
    return frozenset(
        [token] + [token[: -len(end)] for end in _ENDINGS if token.endswith(end) and len(token) - len(end) >= 4]
    )


# a word made the other's opposite by a prefix ("tinted" / "untinted", "verrouiller" / "déverrouiller") or by
# its particle ("check-in" / "check-out", "login" / "logout") is no counterpart of it however close the two are
# in the static table
_NEGATING_PREFIXES = ("un", "non-", "non", "dis", "in", "im", "ir", "il", "dé", "dés", "de", "des")
_PARTICLES = ("in", "out", "on", "off", "up", "down")


def _negated_in(token: str, others: tuple[str, ...]) -> bool:
    base, particle = _particle(token)
    for theirs in others:
        short, long = (token, theirs) if len(token) < len(theirs) else (theirs, token)
        if len(short) >= 4 and long.endswith(short) and long[: len(long) - len(short)] in _NEGATING_PREFIXES:
            return True
        their_base, their_particle = _particle(theirs)
        if particle and their_particle and particle != their_particle and base == their_base:
            return True
    return False


def _particle(token: str) -> tuple[str, str]:
    """(the rest, the particle) of a word that ends in one: "check-in" -> ("check", "in")."""
    for particle in _PARTICLES:
        if token.endswith(particle) and len(token) > len(particle) + 2:
            return token[: -len(particle)].rstrip("-"), particle
    return token, ""


def _same_root(token: str, others: tuple[str, ...]) -> bool:
    return not _roots(token).isdisjoint(_all_roots(others))


@lru_cache(maxsize=16384)
def _all_roots(tokens: tuple[str, ...]) -> frozenset[str]:
    return frozenset().union(*map(_roots, tokens))


@lru_cache(maxsize=65536)
def _slip(word: str, other: str) -> bool:
    """Whether one of two words is a misspelling of the other: a typo (`_typo`) of letters only, one of
    them unknown to the static table ("decrease" is a word, not a slip for "increase"; A1234 is a code)."""
    if not _typo(word, other) or not (word.isalpha() and other.isalpha()):
        return False
    model = _table()
    return model is None or word not in model.index or other not in model.index


@lru_cache(maxsize=65536)
def _abbreviation(short: str, word: str) -> bool:
    """Whether `short`, a word the static table lacks, abbreviates `word`: its letters in order within it,
    the first one first, and at least three letters fewer ("appt" / "appointment", "qqn" / "quelqu'un")."""
    letters = "".join(c for c in word if c.isalpha())
    if not (3 <= len(short) <= 5 and short.isalpha() and len(letters) >= len(short) + 3 and short[0] == letters[0]):
        return False
    rest = iter(letters)
    return all(c in rest for c in short)


def _close_to_any(token: str, others: tuple[str, ...]) -> bool:
    """Whether `token` is a close neighbour of one of `others` in the static table (cosine >= CLOSE, as
    numpy compares a float32 with it; a token the table lacks is close to nothing), memoised per pair of
    words (both ways: the dot product is symmetric)."""
    row = _CLOSE_ROWS.get(token)
    if row is None or len(row) >= 4096:
        if len(_CLOSE_ROWS) >= 65536:
            _CLOSE_ROWS.clear()
        row = _CLOSE_ROWS[token] = {}
    for theirs in others:
        close = row.get(theirs)
        if close is None:
            va, vb = _token(token)[0], _token(theirs)[0]
            close = row[theirs] = va is not None and vb is not None and bool(np.dot(va, vb) >= CLOSE)
        if close:
            return True
    return False


_CLOSE_ROWS: dict[str, dict[str, bool]] = {}  # token -> other token -> close


def _overlap(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a or b else 1.0


@lru_cache(maxsize=256)
def _reasons(a: str, b: str) -> frozenset[str]:
    """The guards' objections to a pair, memoised: a candidate the vetoes let through is weighed next. A
    word one side misspells is read as the other side's word first (`_as_read`): the guards compare words
    and their order exactly, and a slip must not turn "who gives to whom" (a word order the guards refuse)
    into a mere substitution of one word."""
    return frozenset(objections(*_as_read(a, b)))


_TEXT_WORD = re.compile(r"[\w']+")


@lru_cache(maxsize=1024)  # a pair is read for its kind, its unmatched words and its features in turn
def _as_read(a: str, b: str) -> tuple[str, str]:
    """The pair with each misspelt content word of one side (`_slip`: unknown to the static table, a typo
    of a word of the other side) written as the other side writes it."""
    a = _spelled_as(a, b)
    return a, _spelled_as(b, a)


def _spelled_as(text: str, other: str) -> str:
    theirs = _words_of_other(other)
    fixes = {}
    for token in _misspellable(text):
        if token in theirs:
            continue
        for word in theirs:
            if word != token and abs(len(token) - len(word)) <= 1 and _slip(token, word):  # one edit at most
                fixes[token] = word
                break
    if not fixes:
        return text

    def fixed(match: re.Match) -> str:
        token = match.group(0)
        article, _, word = token.rpartition("'")
        if article.lower() in _ELIDED and word.lower() in fixes:  # "l'anunel" is "l'" + a slip for "annuel"
            return f"{article}'{fixes[word.lower()]}"
        return fixes.get(token.lower(), token)

    return _TEXT_WORD.sub(fixed, text)


_ELIDED = frozenset("l d j m n s t c qu jusqu lorsqu puisqu".split())  # French words that drop their vowel


def _unelided(token: str) -> str:
    """A word without the elided article or pronoun glued to it: "l'annuel" -> "annuel"."""
    article, _, word = token.rpartition("'")
    return word if article in _ELIDED and word else token


@lru_cache(maxsize=16384)
def _written(text: str) -> tuple[str, ...]:
    """A text's words as written (lower case, manners dropped) and its content words' tokens: what a slip of
    the other side may stand for ("commnet" for "comment", "proecss" for "process", which is no content
    word)."""
    return tuple(dict.fromkeys(_kind_direction(text)[2] + _content(text).tokens))


@lru_cache(maxsize=16384)
def _words_of_other(text: str) -> tuple[str, ...]:
    """`_written` without elided articles: the words a slip of the other side is read as."""
    return tuple(dict.fromkeys(map(_unelided, _written(text))))


@lru_cache(maxsize=16384)
def _misspellable(text: str) -> tuple[str, ...]:
    """The words of a text a slip may explain: as written (without an elided article: "l'anunel"), of 5
    letters or more and unknown to the static table (not the content words' rewritten tokens: "giftcard" is no
    slip)."""
    model = _table()
    known = model.index if model is not None else {}
    words = dict.fromkeys(map(_unelided, _kind_direction(text)[2]))
    return tuple(w for w in words if len(w) >= 5 and w.isalpha() and w not in known)


def _read(a: str, b: str) -> tuple[str, str]:
    """The pair as the checks compare it: `_as_read` when either side has a word a slip may explain, else
    as it is (most pairs: no lookups)."""
    return _as_read(a, b) if _misspellable(a) or _misspellable(b) else (a, b)


def pair_features(a: str, b: str, cosine: float) -> np.ndarray:
    fa, fb = features(a), features(b)
    sa, sb = _surface(a), _surface(b)
    only_a, only_b = set(fa.content) - set(fb.content), set(fb.content) - set(fa.content)
    reasons = _reasons(a, b)
    values = [
        cosine,
        _overlap(sa[2], sb[2]),
        _overlap(fa.wording, fb.wording),
        _overlap(fa.content, fb.content),
        len(only_a) + len(only_b),
        float(bool(only_a) and bool(only_b)),
        float(not _same_kind(sa[0], sb[0])),
        float(sa[1] != sb[1]),
        abs(math.log((sa[3] + 1) / (sb[3] + 1))),
        float(min(sa[3], sb[3]) <= 3),
        float(bool(reasons)),
    ] + [float(r in reasons) for r in REASONS]
    left_a, left_b = _unmatched(a, b)
    matching = [float(left_a + left_b), float(left_a > 0 and left_b > 0)]
    return np.asarray(values + _alignment(a, b) + matching, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Verified:
    index: int
    text: str
    score: float  # cosine
    probability: float  # the verifier's
    payload: Any


class Trees:
    """Boosted depth-2 trees, flattened: node 0 splits, then node 1 (left) or node 2 (right); leaf 0-3 in
    that order. Scores every tree for every row in a few numpy operations."""

    def __init__(self, feature, threshold, leaf, base: float) -> None:
        self.feature = np.asarray(feature, dtype=np.intp).reshape(-1, 3)
        self.threshold = np.asarray(threshold, dtype=np.float64).reshape(-1, 3)
        self.leaf = np.asarray(leaf, dtype=np.float64).reshape(-1, 4)
        self.base = float(base)
        self._trees = np.arange(len(self.leaf))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        f, t = self.feature, self.threshold
        right = rows[:, f[:, 0]] > t[:, 0]
        second = np.where(right, rows[:, f[:, 2]] > t[:, 2], rows[:, f[:, 1]] > t[:, 1])
        return self.leaf[self._trees, right * 2 + second].sum(axis=1) + self.base

    def to_json(self) -> dict:
        return {
            "feature": self.feature.tolist(),
            "threshold": [[round(x, 6) if np.isfinite(x) else 1e300 for x in row] for row in self.threshold.tolist()],
            "leaf": [[round(x, 6) for x in row] for row in self.leaf.tolist()],
            "base": round(self.base, 6),
        }


class Verifier:
    def __init__(
        self,
        weights: np.ndarray | None,
        bias: float,
        mean: np.ndarray | None,
        scale: np.ndarray | None,
        threshold: float,
        floor: float = 0.5,
        max_checks: int = 8,
        info: dict | None = None,
        vetoes: tuple[str, ...] = (),
        trees: Trees | None = None,
    ) -> None:
        n = len(FEATURES)
        self.weights = np.zeros(n) if weights is None else np.asarray(weights, float)
        self.bias = float(bias)
        self.mean = np.zeros(n) if mean is None else np.asarray(mean, float)
        self.scale = np.ones(n) if scale is None else np.asarray(scale, float)
        self.trees = trees  # when set, the score is the trees' (the logistic weights are unused)
        self.threshold, self.floor, self.max_checks = threshold, floor, max_checks
        self.info = info or {}
        self.vetoes = tuple(vetoes)  # binary features that alone refuse a pair, whatever the score
        self._veto_order = sorted(self.vetoes, key=lambda name: list(_QUICK).index(name) if name in _QUICK else 99)
        unknown = [name for name in self.vetoes if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown veto features: {', '.join(unknown)}")
        self._checks = _veto_checks(self._veto_order)

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> "Verifier":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path}: trained on other features; run `gateway cache train-verifier`")
        trees = data.get("trees")
        return cls(
            data.get("weights"),
            data.get("bias", 0.0),
            data.get("mean"),
            data.get("scale"),
            data["threshold"],
            data["floor"],
            data.get("max_checks", 8),
            data.get("info"),
            tuple(data.get("vetoes", ())),
            Trees(trees["feature"], trees["threshold"], trees["leaf"], trees["base"]) if trees else None,
        )

    def to_json(self) -> dict:
        model: dict[str, Any] = (
            {"kind": "trees", "trees": self.trees.to_json()}
            if self.trees is not None
            else {
                "kind": "logistic",
                "weights": [round(w, 6) for w in self.weights.tolist()],
                "bias": round(self.bias, 6),
                "mean": [round(m, 6) for m in self.mean.tolist()],
                "scale": [round(s, 6) for s in self.scale.tolist()],
            }
        )
        return {
            "features": list(FEATURES),
            **model,
            "threshold": round(self.threshold, 6),
            "floor": self.floor,
            "max_checks": self.max_checks,
            "vetoes": list(self.vetoes),
            "info": self.info,
        }

    def logits(self, rows: np.ndarray) -> np.ndarray:
        if self.trees is not None:
            return self.trees(rows)
        return ((rows - self.mean) / self.scale) @ self.weights + self.bias

    def probability(self, a: str, b: str, cosine: float) -> float:
        return float(1.0 / (1.0 + np.exp(-self.logits(pair_features(*_read(a, b), cosine)[None, :])[0])))

    def best(self, text: str, vector: np.ndarray, candidates: Candidates) -> Verified | None:
        """The stored question most likely to share `text`'s answer, if the verifier clears it."""
        if len(candidates) == 0 or vector is None:
            return None
        scores = candidates.vectors @ np.asarray(vector, dtype=np.float32)
        above = (scores >= self.floor).nonzero()[0]  # np.flatnonzero, np.argpartition without their wrappers
        if above.size == 0:
            return None
        if above.size > self.max_checks:
            above = above[(-scores[above]).argpartition(self.max_checks - 1)[: self.max_checks]]
        texts, vetoed = candidates.texts, self.vetoed
        for i in above.tolist():  # the same question word for word, politeness around it: no need to score
            if framed_by_manners(text, texts[i]):
                return Verified(i, texts[i], float(scores[i]), 1.0, candidates.payloads[i])
        # vetoes first, cheapest first: most near neighbours are refused before their features are computed
        kept = [i for i in above.tolist() if not vetoed(text, texts[i])]
        if not kept:
            return None
        rows = np.stack([pair_features(*_read(text, candidates.texts[i]), float(scores[i])) for i in kept])
        logits = self.logits(rows)
        pick = int(np.argmax(logits))
        probability = float(1.0 / (1.0 + np.exp(-logits[pick])))
        if probability < self.threshold:
            return None
        index = kept[pick]
        return Verified(index, candidates.texts[index], float(scores[index]), probability, candidates.payloads[index])

    @property
    def veto_order(self) -> tuple[str, ...]:
        return tuple(self._veto_order)

    def vetoed(self, a: str, b: str, only: tuple[str, ...] | None = None) -> bool:
        """Whether one of the veto features (or of `only`) fires for the pair: the same decision as computing
        every feature and reading the veto columns, but each veto is computed only until one fires."""
        for check in self._checks if only is None else _veto_checks(list(only)):
            if check(a, b):
                return True
        return False


def _veto_checks(order: list[str]) -> tuple[Callable[[str, str], bool], ...]:
    """The vetoes in `order` as checks of a pair, in that order: the quick ones (_QUICK; the kind and the
    direction of a question, both from one memo, as one check), then every guard's veto from one call of
    `objections` (computed for the first pair that reaches it)."""
    checks: list[Callable[[str, str], bool]] = []
    names = list(order)
    if names[:2] == ["question_kind_differs", "direction_differs"]:
        checks.append(_kind_or_direction_differs)
        names = names[2:]
    checks += [_QUICK[name] for name in names if name in _QUICK]
    guards = tuple(name for name in names if name not in _QUICK)
    if guards:

        def objected(a: str, b: str) -> bool:
            reasons = _reasons(a, b)
            return any(name in reasons or (name == "guards" and bool(reasons)) for name in guards)

        checks.append(objected)
    return tuple(checks)


def _kind_or_direction_differs(a: str, b: str) -> bool:
    ka, kb = _kind_direction(a), _kind_direction(b)
    if ka[0] == kb[0] and _same_direction(ka, kb):
        return False
    ra, rb = _read(a, b)  # "Commnet bloquer ma carte ?" asks how: its question word is a slip
    if ra is not a or rb is not b:
        ka, kb = _kind_direction(ra), _kind_direction(rb)
    return not _same_kind(ka[0], kb[0]) or not _same_direction(ka, kb)


# a question of what, or a fragment, whose words name a price asks how much, or may ask it (_same_kind)
_NAMES_ITS_AMOUNT = {"what": "amount", "what-is": "amount", "statement": "statement-amount", "yesno": "yesno-amount"}
# the lexicon's topics of a price and of a length of time, and its class of the time of day ("time", "heure")
_AMOUNT_TOPICS = frozenset(["#price", "#duration"])
_HOURS_TOPIC = "=hours"
_DATE_WORDS = frozenset(["date", "dates"])
# "What's the luggage allowance on the ferry?" asks what "ferry luggage allowance?" names
_WHAT_IS = re.compile(
    r"(?:what(?:'s| is| are)|quel(?:le)?s? (?:est|sont))(?: (?:the|your|my|le|la|les|l'|votre|vos))?\s"
)


def is_fragment(text: str) -> bool:
    """A text with no question word: a fragment, a request or a statement."""
    return _kind_direction(text)[0] in _NO_QUESTION_WORD


def _same_kind(ka: str, kb: str) -> bool:
    """The same kind of question; or a request or fragment ("I want to cancel my order", "student
    discount?", `_statement_kind`) against a question of what to do or whether ("How do I cancel my
    order?", "Do you have a student discount?"). Not against where, when, why, what or how much: those ask
    for more than the statement names, unless the fragment names it (a price or a length of time: how much;
    a time of day: when) or the question asks what the fragment names ("What's the luggage allowance?")."""
    if ka == kb or {ka, kb} <= _NO_QUESTION_WORD:
        return True
    if "help" in (ka, kb) and {ka, kb} <= {"help", "telling", "statement"}:
        return True  # "I lost my locker key, what do I do?" / "lost my locker key"
    if "where_to" in (ka, kb) and {ka, kb} & {"how", "where"}:
        return True  # "Where can I change my e-mail address?" / "How do I change my e-mail address?"
    if "yesno-amount" in (ka, kb):  # "Are there fees for paying by card abroad?" / "How much is it to pay by card?"
        return {ka, kb} <= {"yesno-amount", "yesno", "amount", "statement", "statement-amount"}
    if "statement-amount" in (ka, kb) and {ka, kb} & {"amount", "statement"}:
        return True  # "Plant delivery fee?" / "How much is the plant delivery fee?"
    if "statement-where" in (ka, kb) and {ka, kb} & {"where", "statement"}:
        return True  # "refund status?" / "Where is my refund?"
    if "statement-when" in (ka, kb) and {ka, kb} & {"when", "statement"}:
        return True  # "Sunday opening time?" / "What time do you open on Sundays?"
    if "what-is" in (ka, kb):  # "What's the luggage allowance?" / "luggage allowance?"
        return bool({ka, kb} & {"what", "statement", "statement-when"})
    ka, kb = (_STATEMENT.get(ka, ka), _STATEMENT.get(kb, kb))
    return (ka == "statement" and kb in _ASKS_TO_DO) or (kb == "statement" and ka in _ASKS_TO_DO)


# no question word: each pairs with the others ("mon colis est arrivé ?" typed without its mark)
_NO_QUESTION_WORD = frozenset(["statement", "statement-amount", "statement-when", "statement-where", "telling"])
_STATEMENT = {"statement-amount": "statement", "statement-when": "statement", "statement-where": "statement"}


_ASKS_TO_DO = frozenset(["how", "yesno"])


def _same_direction(ka: tuple, kb: tuple) -> bool:
    """Same direction classes; or they differ only by the "to" that a bare "a" of French typed without
    accents gives one side (`_kind_direction`), when the other side has the same bare "a": written with its
    accents, "a été" is the verb, and without them both read alike."""
    if ka[1] == kb[1]:
        return True
    return ka[1] ^ kb[1] == _TO and "a" in ka[2] and "a" in kb[2] and _to_only_from_a(ka if "to" in ka[1] else kb)


def _to_only_from_a(kind_direction: tuple) -> bool:
    return not any(_DIRECTIONS.get(word) == "to" for word in kind_direction[2])


def _only(a: str, b: str) -> tuple[set, set]:
    ca, cb = set(features(a).content), set(features(b).content)
    return ca - cb, cb - ca


def _unmatched_both(a: str, b: str) -> bool:
    left_a, left_b = _unmatched(*_read(a, b))
    return left_a > 0 and left_b > 0


_QUICK = {  # veto features computable without the rest, by cost
    "question_kind_differs": lambda a, b: not _same_kind(*(_kind_direction(t)[0] for t in _read(a, b))),
    "direction_differs": lambda a, b: not _same_direction(*map(_kind_direction, _read(a, b))),
    "only_one_side": lambda a, b: any(_only(a, b)),
    "only_both_sides": lambda a, b: all(_only(a, b)),
    "unmatched": lambda a, b: sum(_unmatched(*_read(a, b), first=True)) > 0,
    "unmatched_both_sides": _unmatched_both,
}
