"""Learned politeness clauses: whether a clause at the edge of a message is manners the word lists of
cache/semantic.py do not know ("I hope this email finds you well.", "Je sais que vous êtes débordés,").

The word lists know the formulas; customers write others. This model generalises from examples instead: the
static embedding of all the clause's words (cache/semantic.py `clause_words`) is compared with that of two sets
of example clauses (cache/manners_model.json, built by `gateway cache train-manners` from
data/cache/manners_train.json, manners_dev.json, manners_dev2.json, manners_dev3.json, context_train.json,
context_dev2.json and the training pools):
politeness, and clauses that carry content (where the customer lives, what went wrong, what they bought, and the
clauses of support questions). A clause is politeness when the mean cosine of its `k` nearest politeness
examples exceeds that of its `k` nearest content examples by `margin` or more, a margin chosen on the training
data so that at most 0.5% of its content clauses pass it in cross-validation (`--content-rate`; the held-out
data/cache/context_test.json is checked by the tests); and when its words that the lists do not know
(`unknown_words`), compared the same way with the same examples' unknown words, score at least
`content_floor`: "hello i'm vegan" reads as a greeting, "vegan" as content. Only clauses with neither a
question mark nor a digit are asked (cache/semantic.py `_learned_politeness`), those of filler words too ("just a
quick one"): a question or a number is never manners.

A question that opens a message before another clause ("Hi, how are you? Where is my order?") is judged the
same way by a second model (`opening_questions`, `is_small_talk`), on all its words ("how are you" is
nothing but stopwords): the small-talk questions of the same examples against the question clauses of the
training pools, its own margin set the same way. A question with more words than the longest small-talk
example is never asked.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from gateway.cache.lexicon import MANNERS, MANNERS_FILLERS, STOPWORDS

__all__ = ["CONTRACTED", "MODEL_PATH", "MannersModel", "is_manners", "is_small_talk", "shipped", "unknown_words"]

MODEL_PATH = Path(__file__).with_name("manners_model.json")


class MannersModel:
    def __init__(
        self,
        manners: list[str],
        content: list[str],
        k: int,
        margin: float,
        embed,
        opening_questions: "MannersModel | None" = None,
        content_floor: float | None = None,
    ) -> None:
        self.k, self.margin, self._embed = k, margin, embed
        self.manners = _matrix(manners, embed)
        self.content = _matrix(content, embed)
        # the second look: the same examples, only their words the lists do not know (see `__call__`)
        self.content_floor = content_floor
        if content_floor is not None:
            self.manners_unknown = _matrix([w for w in map(unknown_words, manners) if w], embed)
            self.content_unknown = _matrix([w for w in map(unknown_words, content) if w], embed)
        self.longest = max((len(text.split()) for text in manners), default=0)  # words of the longest example
        self.opening_questions = opening_questions  # the same method for questions that open a message

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> "MannersModel | None":
        """The model, or None when its file or the static embedding is missing (the word lists alone)."""
        from gateway.static_embedding import default_model

        static = default_model()
        if static is None or not Path(path).exists():
            return None
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        k, asking = int(data["k"]), data.get("opening_questions")
        questions = None
        if asking:
            questions = cls(asking["manners"], asking["content"], k, float(asking["margin"]), static.embed)
        floor = data.get("content_floor")
        margin = float(data["margin"])
        return cls(
            data["manners"],
            data["content"],
            k,
            margin,
            static.embed,
            questions,
            None if floor is None else float(floor),
        )

    def score(self, words: str) -> float:
        """Mean cosine of the k nearest politeness examples minus that of the k nearest content examples."""
        vector = self._embed(words)
        return _nearest(self.manners, vector, self.k) - _nearest(self.content, vector, self.k)

    def content_score(self, words: str) -> float | None:
        """The same score for the words the lists do not know alone (None when there are none)."""
        rest = unknown_words(words)
        if not rest:
            return None
        vector = self._embed(rest)
        return _nearest(self.manners_unknown, vector, self.k) - _nearest(self.content_unknown, vector, self.k)

    def __call__(self, words: str) -> bool:
        """Politeness when all the words read as politeness and, with a `content_floor`, the words the lists do
        not know do not read as content ("sorry to bother you i moved": "moved" does)."""
        if self.score(words) < self.margin:
            return False
        if self.content_floor is None:
            return True
        rest = self.content_score(words)
        return rest is None or rest >= self.content_floor


# what a contraction leaves after its apostrophe once words are split there ("you're" -> "you", "re")
CONTRACTED = frozenset({"re", "ve", "ll", "d", "m", "s"})
_KNOWN_TO_THE_LISTS = frozenset(MANNERS) | frozenset(MANNERS_FILLERS) | frozenset(STOPWORDS) | CONTRACTED


def unknown_words(words: str) -> str:
    """The words (folded, as cache/semantic.py `clause_words` gives them) that the politeness word lists do not
    know: neither politeness, filler nor stopword ("greetings from a happy customer" -> "happy customer")."""
    return " ".join([word for word in words.split() if word not in _KNOWN_TO_THE_LISTS])


def _matrix(texts: list[str], embed) -> np.ndarray:
    return np.stack([embed(text) for text in texts]) if texts else np.zeros((0, 1), dtype=np.float32)


def _nearest(examples: np.ndarray, vector: np.ndarray, k: int) -> float:
    """Mean cosine of the k examples nearest to `vector` (0 without examples)."""
    if len(examples) == 0:
        return 0.0
    scores = examples @ vector
    k = min(k, len(scores))
    return float(np.partition(scores, len(scores) - k)[-k:].mean())


_LOADED: list = []


def shipped() -> MannersModel | None:
    """The shipped model, loaded on first use (the gateway loads it at start-up: build_cache)."""
    if not _LOADED:
        _LOADED.append(MannersModel.load())
    return _LOADED[0]


def is_manners(clause: str) -> bool:
    """Whether the shipped model reads `clause` as politeness (False without a model)."""
    model = shipped()
    return model is not None and _memo(clause, model)


def is_small_talk(words: str) -> bool:
    """Whether the shipped model reads a question that opens a message (its words, cache/semantic.py
    `question_words`) as small talk or a request for help: "how are you", "could you help me out"."""
    model = shipped()
    asking = None if model is None else model.opening_questions
    # longer than every example of small talk: never asked (most questions are; the model costs ~0.1 ms)
    return asking is not None and words.count(" ") < asking.longest and _memo(words, asking)


@lru_cache(maxsize=16384)
def _memo(clause: str, model: MannersModel) -> bool:
    return model(clause)
