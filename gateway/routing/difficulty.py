"""Difficulty of a chat request: a score in [0, 1] and the reasons behind it.

The router sends a request to the heavy tier when `score >= threshold` (see `tier_for`). The score comes
from a small logistic regression over two kinds of input:

- features of the conversation (`gateway.routing.features`): vocabulary and structure (code, stack traces,
  maths notation, domain words, length, language, earlier turns) and the form of the task
  (`gateway.routing.form`: transform a given text or look a fact up, versus judgement on a case, a situation
  with complications, an amount or a date to work out from several numbers);
- the request's sentence embedding (512-d, computed once per request by `gateway.embeddings`, of the last
  user message), when there is one.

Two models are shipped in one JSON weights file (`difficulty_model.json`, written by
`gateway.routing.train`): features ‖ embedding (`method="model"`) and features only (`method="features"`,
used when the embedding model is absent or `use_embedding` is off). Each model's bias was shifted at
training time so that 0.5 is its own calibrated threshold: one threshold in config serves both.

Pure CPU, no I/O per call: the weights are read once in `DifficultyScorer.load`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import orjson
from pydantic import BaseModel

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

DEFAULT_MODEL_PATH = str(Path(__file__).with_name("difficulty_model.json"))


class DifficultySettings(BaseModel):
    model_path: str | None = DEFAULT_MODEL_PATH  # None: the shipped weights
    use_embedding: bool = True


@dataclass(frozen=True)
class Difficulty:
    score: float  # in [0, 1]; heavy when score >= threshold
    reasons: tuple[str, ...]
    method: Literal["model", "features"]
    # (signal, its share of the log-odds against an average request), largest first: what decided.
    signals: tuple[tuple[str, float], ...] = ()


def tier_for(score: float, threshold: float) -> Literal["light", "heavy"]:
    """The tier a score goes to: heavy at or above the threshold."""
    return "heavy" if score >= threshold else "light"


# --- reasons -------------------------------------------------------------------------------------------


def _signals(counts: dict[str, int], contributions: np.ndarray) -> list[tuple[float, str]]:
    fired = []
    for i, name in enumerate(FEATURE_NAMES):
        c = float(contributions[i])
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


def _reasons(fired: list[tuple[float, str]]) -> list[str]:
    return [label if c > 0 else label + " (easier)" for c, label in fired[:5]]


# --- scorer --------------------------------------------------------------------------------------------


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class _Linear:
    coef: np.ndarray  # on raw inputs (standardisation folded in)
    bias: float

    @classmethod
    def from_json(cls, data: dict) -> "_Linear":
        return cls(np.asarray(data["coef"], dtype=np.float64), float(data["bias"]))


class DifficultyScorer:
    """Scores a conversation. Build with `load`; `score` is pure and thread-safe."""

    def __init__(
        self,
        features_model: _Linear,
        embedding_model: _Linear | None,
        feature_mean: np.ndarray,
        *,
        use_embedding: bool = True,
        info: dict | None = None,
        embedding_mean: np.ndarray | None = None,
    ) -> None:
        n = len(FEATURE_NAMES)
        if features_model.coef.shape != (n,):
            raise ValueError(f"features model has {features_model.coef.shape[0]} weights, expected {n}")
        self._features = features_model
        self._embedding = embedding_model if use_embedding else None
        if self._embedding is not None:
            self._emb_feat = self._embedding.coef[:n]
            self._emb_vec = self._embedding.coef[n:].astype(np.float32)
            # The vector's share of the log-odds is measured against the training mean (weights files without
            # one: against zero).
            self._emb_offset = float(self._emb_vec @ embedding_mean) if embedding_mean is not None else 0.0
        self._mean = feature_mean
        self.info = info or {}

    @classmethod
    def load(cls, settings: DifficultySettings | None = None) -> "DifficultyScorer":
        settings = settings or DifficultySettings()
        path = Path(settings.model_path or DEFAULT_MODEL_PATH)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise FileNotFoundError(f"difficulty weights not found at {path}; run `gateway route train`") from None
        if list(data["feature_names"]) != list(FEATURE_NAMES):
            raise ValueError(f"{path} was trained on other features; retrain with `gateway route train`")
        embedding = data.get("embedding_model")
        return cls(
            _Linear.from_json(data["features_model"]),
            _Linear.from_json(embedding) if embedding else None,
            np.asarray(data["feature_mean"], dtype=np.float64),
            use_embedding=settings.use_embedding,
            info=data.get("info", {}),
            embedding_mean=(
                np.asarray(embedding["mean"], dtype=np.float32) if embedding and embedding.get("mean") else None
            ),
        )

    @property
    def uses_embedding(self) -> bool:
        return self._embedding is not None

    @property
    def embedding_dim(self) -> int:
        return 0 if self._embedding is None else int(self._emb_vec.shape[0])

    def score(self, messages: list[dict], vector: np.ndarray | None = None) -> Difficulty:
        x, counts = extract_features(messages)
        extra = []
        if self._embedding is not None and vector is not None and np.shape(vector) == self._emb_vec.shape:
            contributions = self._emb_feat * (x - self._mean)
            meaning = float(self._emb_vec @ vector)
            z = float(self._emb_feat @ x) + meaning + self._embedding.bias
            method = "model"
            p = _sigmoid(z)
            extra.append(f"embedding classifier {p:.2f}")
            fired = _signals(counts, contributions) + [(meaning - self._emb_offset, "sentence meaning (embedding)")]
        else:
            contributions = self._features.coef * (x - self._mean)
            z = float(self._features.coef @ x) + self._features.bias
            method = "features"
            p = _sigmoid(z)
            if self._embedding is None:
                why = "embedding off"
            elif vector is None:
                why = "no embedding"
            else:
                why = f"embedding of shape {np.shape(vector)} ignored"
            extra.append(f"features-only model {p:.2f} ({why})")
            fired = _signals(counts, contributions)
        fired.sort(key=lambda x: -abs(x[0]))
        return Difficulty(
            score=p,
            reasons=tuple(_reasons([f for f in fired if abs(f[0]) >= 0.15]) + extra),
            method=method,
            signals=tuple((label, round(c, 3)) for c, label in fired),
        )
