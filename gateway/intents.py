"""Intent detection: a bounded label per request, from the configured support intents.

    config = load_intents("config/intents.yaml")
    detector = IntentDetector(config, embedder)          # one batch encode of every example, at start-up
    detector.detect("Où est mon colis ?", vector)        # -> "order_status"
    detector.detect(text, None)                          # model absent: keyword fallback
    detector.detect(text, vector, header="refund")       # `x-intent` header wins when it names an intent
    detector.labels                                      # ("refund", ..., "other"): the metric label set

Scoring (one matrix-vector product): every intent has its examples' normalised centroid and the examples
themselves; an intent's score is the mean of its centroid similarity and its best example similarity.
The centroid rewards the general topic, the nearest example rescues phrasings the centroid averages away.
The best intent wins when its score reaches `min_similarity` and beats the runner-up by `min_margin`;
otherwise the answer is "other" (never cached semantically).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from gateway.embeddings import Embedder

__all__ = ["OTHER", "IntentSpec", "IntentsConfig", "IntentsConfigError", "IntentDetector", "load_intents"]

OTHER = "other"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class IntentsConfigError(ValueError):
    """The intents file is missing, not YAML, or fails validation; the message names file and field."""


class IntentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    examples: list[str] = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)
    cacheable: bool = True
    ttl_s: int = Field(default=3600, gt=0)
    allow_personal_data: bool = False
    semantic_threshold: float | None = Field(default=None, ge=0.0, le=1.0)

    @field_validator("name")
    @classmethod
    def _name_is_a_label(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower_snake_case (a metric label), at most 48 characters")
        if value == OTHER:
            raise ValueError(f"'{OTHER}' is implicit and cannot be configured")
        return value

    @field_validator("examples", "keywords")
    @classmethod
    def _no_blank(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values]
        if any(not v for v in cleaned):
            raise ValueError("entries must be non-empty strings")
        return cleaned


class IntentsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intents: list[IntentSpec] = []  # none configured: every request is "other"
    min_similarity: float = Field(default=0.45, ge=0.0, le=1.0)
    min_margin: float = Field(default=0.02, ge=0.0, le=1.0)
    default_semantic_threshold: float = Field(default=0.65, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _unique_names(self) -> "IntentsConfig":
        seen: set[str] = set()
        for spec in self.intents:
            if spec.name in seen:
                raise ValueError(f"duplicate intent name '{spec.name}'")
            seen.add(spec.name)
        return self

    def get(self, name: str) -> IntentSpec | None:
        for spec in self.intents:
            if spec.name == name:
                return spec
        return None

    def threshold_for(self, name: str) -> float:
        spec = self.get(name)
        if spec is not None and spec.semantic_threshold is not None:
            return spec.semantic_threshold
        return self.default_semantic_threshold


def load_intents(path: str | Path) -> IntentsConfig:
    """Read and validate an intents YAML file; errors name the file and the offending field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IntentsConfigError(f"{path}: cannot read intents file ({exc.strerror or exc})") from exc
    except yaml.YAMLError as exc:
        raise IntentsConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise IntentsConfigError(f"{path}: expected a mapping with an 'intents' list at the top level")
    try:
        return IntentsConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _field_path(raw, err["loc"])
            problems.append(f"{path}: {where}: {err['msg']}")
        raise IntentsConfigError("\n".join(problems)) from exc


def _field_path(raw: dict, loc: tuple) -> str:
    """'intents[3] (refund).ttl_s' rather than 'intents.3.ttl_s'."""
    parts: list[str] = []
    node: Any = raw
    for key in loc:
        if isinstance(key, int):
            parts[-1] += f"[{key}]"
            try:
                node = node[key]
                if isinstance(node, dict) and "name" in node:
                    parts[-1] += f" ({node['name']})"
            except (IndexError, KeyError, TypeError):
                node = None
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def _keyword_matcher(intents: list[IntentSpec]) -> tuple[re.Pattern, dict[str, set[tuple[str, str, int]]]]:
    """One regex for every keyword: at each word start it matches the longest keyword there. Every shorter
    keyword that is a prefix of that one matches there too, so each found keyword credits itself and its
    prefixes: (intent, keyword, weight) triples, the weight being the keyword's length."""
    owners: dict[str, list[str]] = {}
    for spec in intents:
        for keyword in spec.keywords:
            owners.setdefault(keyword.lower(), []).append(spec.name)
    keywords = sorted(owners, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(?=(" + _trie_pattern(keywords) + "))") if keywords else re.compile(r"(?!)")
    credit = {k: {(name, p, len(p)) for p in keywords if k.startswith(p) for name in owners[p]} for k in keywords}
    return pattern, credit


def _trie_pattern(words: list[str]) -> str:
    """A regex matching the longest of `words` at a position, factored by common prefixes (r(?:efund|embours)):
    Python's engine tries a flat alternation word by word, a factored one letter by letter."""
    trie: dict = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict) -> str:
        branches = [re.escape(char) + build(child) for char, child in node.items() if char]
        branches.sort(key=len, reverse=True)  # longer continuations first: the longest keyword wins
        if "" in node:
            return "(?:" + "|".join(branches) + ")?" if branches else ""
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return build(trie)


class IntentDetector:
    """Nearest-centroid (+ nearest-example) intent detection with a keyword fallback."""

    def __init__(self, config: IntentsConfig, embedder: "Embedder | None" = None) -> None:
        self.config = config
        self._names = [spec.name for spec in config.intents]
        self._labels = tuple(self._names) + (OTHER,)
        self._known = frozenset(self._names)
        self._keyword_rx, self._keyword_credit = _keyword_matcher(config.intents)
        self._matrix: np.ndarray | None = None
        if embedder is not None and embedder.available and self._names:
            self._build_matrix(embedder)

    def _build_matrix(self, embedder: "Embedder") -> None:
        texts = [ex for spec in self.config.intents for ex in spec.examples]
        vectors = embedder.encode(texts)
        owners = np.repeat(np.arange(len(self._names)), [len(s.examples) for s in self.config.intents])
        centroids = np.stack([vectors[owners == i].mean(axis=0) for i in range(len(self._names))])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        # one matrix: the k centroids first, then every example; one product scores both
        self._matrix = np.ascontiguousarray(np.vstack([centroids, vectors]), dtype=np.float32)
        self._owners = owners
        # per intent, the row range of its examples (examples are grouped by intent, in order)
        bounds = np.cumsum([0] + [len(s.examples) for s in self.config.intents]) + len(self._names)
        self._example_starts = bounds[:-1]

    @property
    def labels(self) -> tuple[str, ...]:
        """The bounded label set (configured intents, then "other"): safe as a metric label."""
        return self._labels

    @property
    def uses_embeddings(self) -> bool:
        return self._matrix is not None

    def spec(self, name: str) -> IntentSpec | None:
        return self.config.get(name)

    def detect(self, text: str, vector: np.ndarray | None = None, header: str | None = None) -> str:
        if header:
            name = header.strip().lower()
            if name in self._known:
                return name
            # an unknown header value is ignored: the label set stays bounded
        if vector is not None and self._matrix is not None:
            return self._by_vector(vector)
        return self._by_keywords(text) if self._names else OTHER

    def scores(self, vector: np.ndarray) -> dict[str, float]:
        """Per-intent score (mean of centroid and best-example similarity); for diagnostics."""
        if self._matrix is None:
            raise RuntimeError("intent detector built without an embedding model")
        return dict(zip(self._names, self._score_vector(vector).tolist()))

    def _score_vector(self, vector: np.ndarray) -> np.ndarray:
        assert self._matrix is not None
        sims = self._matrix @ np.asarray(vector, dtype=np.float32)
        k = len(self._names)
        best_example = np.maximum.reduceat(sims[k:], self._example_starts - k)
        return 0.5 * (sims[:k] + best_example)

    def _by_vector(self, vector: np.ndarray) -> str:
        scores = self._score_vector(vector)
        order = np.argsort(scores)
        best, runner_up = scores[order[-1]], scores[order[-2]] if len(order) > 1 else -1.0
        if best < self.config.min_similarity or best - runner_up < self.config.min_margin:
            return OTHER
        return self._names[int(order[-1])]

    def _by_keywords(self, text: str) -> str:
        """Each intent scores the lengths of its keywords found at a word start; a tie is "other"."""
        found = {m.group(1) for m in self._keyword_rx.finditer(text.lower())}
        if not found:
            return OTHER
        scores: dict[str, int] = {}
        for name, _, weight in {credit for keyword in found for credit in self._keyword_credit[keyword]}:
            scores[name] = scores.get(name, 0) + weight
        best = max(scores.values())
        winners = [name for name, score in scores.items() if score == best]
        return winners[0] if len(winners) == 1 else OTHER
