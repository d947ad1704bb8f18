"""Does one answer serve both questions? A learned pair verifier, the semantic cache's last word on a hit.

    verifier = Verifier.load()                                  # weights shipped in cache/verifier.json
    verifier.probability("Do you ship to Canada?", "Do you ship from Canada?", cosine=0.99)   # -> 0.01
    verifier.best(question, vector, candidates)                 # the best verified candidate, or None

A logistic regression over features of the pair: embedding similarity, character and content-word overlap,
content words present on one side only (a qualifier added, a word swapped), the kind of question (how /
where / when / why / what / how much / can / yes-no), direction words (to / from, vers / depuis), the
guards of cache/semantic.py (numbers, names, negation, antonyms, topics, word order) as inputs rather than
vetoes, and length. It is trained by `gateway cache train-verifier` on pairs drawn from the dev pool and
the project's labelled pairs, and its threshold is calibrated there, on questions of families held out
from the fold's training, to a target false-hit rate. Candidates are the nearest stored questions by
cosine (at most `max_checks`, at or above `floor`); the one the verifier likes best wins if it clears the
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
from typing import Any

import numpy as np

from gateway.cache.semantic import Candidates, features, objections

__all__ = ["FEATURES", "Verifier", "Verified", "pair_features"]

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
FEATURES = (
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
) + REASONS
# The sign each weight may take: more similarity can only help, a difference can only hurt. Training keeps
# to them (few labelled pairs would otherwise learn quirks of who wrote them, e.g. "paraphrases share
# fewer words than siblings").
SIGNS = (1, 1, 1, 1, -1, -1, -1, -1, -1, 0, -1) + (-1,) * len(REASONS)

# closed classes: the first of these words in a question says what kind of answer it wants
_KINDS = (
    ("amount", r"how (?:much|many|long)|combien|quel (?:est le )?(?:prix|montant|d[ée]lai)"),
    ("how", r"how|comment"),
    ("where", r"where|o[uù]|wheres"),
    ("when", r"when|quand|[àa] quelle heure"),
    ("why", r"why|pourquoi"),
    ("what", r"what|which|whats|quel|quelle|quels|quelles|qu'est"),
    ("can", r"can|could|may|is it possible|puis|peut|pouvez|est-il possible|possible"),
    ("yesno", r"do|does|did|is|are|will|have|has|est-ce|avez|[eê]tes|proposez|acceptez|livrez|vendez"),
)
_KIND_RX = [(kind, re.compile(r"(?<![\w'])(?:" + rx + r")(?![\w])")) for kind, rx in _KINDS]
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


@lru_cache(maxsize=16384)
def _surface(text: str) -> tuple[str, frozenset[str], frozenset[str], int]:
    """(kind of question, direction classes, character trigrams, word count) of one text."""
    lower = text.lower().replace("\u2019", "'")
    kind = "statement"
    first = len(lower) + 1
    for name, rx in _KIND_RX:
        match = rx.search(lower)
        if match and match.start() < first:
            kind, first = name, match.start()
    words = _WORD.findall(lower)
    directions = frozenset(_DIRECTIONS[w] for w in words if w in _DIRECTIONS)
    folded = (
        " "
        + " ".join("".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c)) for w in words)
        + " "
    )
    grams = frozenset(folded[i : i + 3] for i in range(len(folded) - 2))
    return kind, directions, grams, len(words)


def _overlap(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a or b else 1.0


def pair_features(a: str, b: str, cosine: float) -> np.ndarray:
    fa, fb = features(a), features(b)
    sa, sb = _surface(a), _surface(b)
    only_a, only_b = set(fa.content) - set(fb.content), set(fb.content) - set(fa.content)
    reasons = set(objections(a, b))
    values = [
        cosine,
        _overlap(sa[2], sb[2]),
        _overlap(fa.wording, fb.wording),
        _overlap(fa.content, fb.content),
        len(only_a) + len(only_b),
        float(bool(only_a) and bool(only_b)),
        float(sa[0] != sb[0]),
        float(sa[1] != sb[1]),
        abs(math.log((sa[3] + 1) / (sb[3] + 1))),
        float(min(sa[3], sb[3]) <= 3),
        float(bool(reasons)),
    ] + [float(r in reasons) for r in REASONS]
    return np.asarray(values, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Verified:
    index: int
    text: str
    score: float  # cosine
    probability: float  # the verifier's
    payload: Any


class Verifier:
    def __init__(
        self,
        weights: np.ndarray,
        bias: float,
        mean: np.ndarray,
        scale: np.ndarray,
        threshold: float,
        floor: float = 0.5,
        max_checks: int = 8,
        info: dict | None = None,
        vetoes: tuple[str, ...] = (),
    ) -> None:
        self.weights, self.bias = np.asarray(weights, float), float(bias)
        self.mean, self.scale = np.asarray(mean, float), np.asarray(scale, float)
        self.threshold, self.floor, self.max_checks = threshold, floor, max_checks
        self.info = info or {}
        self.vetoes = tuple(vetoes)  # binary features that alone refuse a pair, whatever the score
        self._veto_columns = [FEATURES.index(name) for name in self.vetoes]

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> "Verifier":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path}: trained on other features; run `gateway cache train-verifier`")
        return cls(
            data["weights"],
            data["bias"],
            data["mean"],
            data["scale"],
            data["threshold"],
            data["floor"],
            data.get("max_checks", 8),
            data.get("info"),
            tuple(data.get("vetoes", ())),
        )

    def to_json(self) -> dict:
        return {
            "features": list(FEATURES),
            "weights": [round(w, 6) for w in self.weights.tolist()],
            "bias": round(self.bias, 6),
            "mean": [round(m, 6) for m in self.mean.tolist()],
            "scale": [round(s, 6) for s in self.scale.tolist()],
            "threshold": round(self.threshold, 6),
            "floor": self.floor,
            "max_checks": self.max_checks,
            "vetoes": list(self.vetoes),
            "info": self.info,
        }

    def logits(self, rows: np.ndarray) -> np.ndarray:
        return ((rows - self.mean) / self.scale) @ self.weights + self.bias

    def probability(self, a: str, b: str, cosine: float) -> float:
        return float(1.0 / (1.0 + np.exp(-self.logits(pair_features(a, b, cosine)[None, :])[0])))

    def best(self, text: str, vector: np.ndarray, candidates: Candidates) -> Verified | None:
        """The stored question most likely to share `text`'s answer, if the verifier clears it."""
        if len(candidates) == 0 or vector is None:
            return None
        scores = candidates.vectors @ np.asarray(vector, dtype=np.float32)
        above = np.flatnonzero(scores >= self.floor)
        if above.size == 0:
            return None
        if above.size > self.max_checks:
            above = above[np.argpartition(-scores[above], self.max_checks - 1)[: self.max_checks]]
        rows = np.stack([pair_features(text, candidates.texts[int(i)], float(scores[i])) for i in above])
        logits = self.logits(rows)
        if self._veto_columns:
            logits[rows[:, self._veto_columns].max(axis=1) > 0] = -np.inf
        pick = int(np.argmax(logits))
        if logits[pick] == -np.inf:
            return None
        probability = float(1.0 / (1.0 + np.exp(-logits[pick])))
        if probability < self.threshold:
            return None
        index = int(above[pick])
        return Verified(index, candidates.texts[index], float(scores[index]), probability, candidates.payloads[index])
