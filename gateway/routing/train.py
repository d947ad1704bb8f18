"""Training, evaluation and calibration of the difficulty scorer.

    rows = [row for path in DEFAULT_TRAIN_PATHS for row in read_rows(path)]
    info = train(rows, embedder=Embedder.load(), out_path="my_model.json", progress=print)
    scorer = DifficultyScorer.load(DifficultySettings())
    evaluate(scorer, read_rows("data/routing/prompts_test.jsonl"), 0.5, embedder)

Two L2-regularised logistic regressions are fitted by Newton's method (deterministic): features ‖ embedding
(‖ the share of hard prompts among the request's nearest training prompts, when cross-validation says it
helps), and features only (the fallback when no embedding model is installed). Regularisation strengths are chosen
by repeated stratified k-fold cross-validation on the training rows (out-of-fold log-loss); the
out-of-fold scores then pick each model's threshold (target hard recall), and the bias is shifted so that
this threshold becomes 0.5. Standardisation is folded into the weights, so scoring is one dot product.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import ArrayLike

from gateway.routing.difficulty import (
    FEATURE_NAMES,
    DifficultyScorer,
    extract_features,
    last_user_text,
)

__all__ = [
    "DEFAULT_TRAIN_PATHS",
    "calibrate",
    "cross_val_scores",
    "evaluate",
    "fit_logistic",
    "metrics",
    "neighbour_inputs",
    "neighbour_margin",
    "neighbour_share",
    "read_rows",
    "roc_auc",
    "row_messages",
    "score_rows",
    "train",
]

# The ordinary prompts, varied ones (easy with digits and legal words, hard in casual wording), the dev half of
# the adversarial pairs and the training pairs (same words, other difficulty; long chatty easy ones against short
# hard ones), and support pairs (ordinary requests that mention an error code, an amount, an allergy or illness,
# a company, or chat at length, against a twin that needs judgement). prompts_test.jsonl, prompts_holdout.jsonl
# and adversarial_test.jsonl stay out: they are measured.
DEFAULT_TRAIN_PATHS = (
    "data/routing/prompts.jsonl",
    "data/routing/prompts_varied.jsonl",
    "data/routing/adversarial_dev.jsonl",
    "data/routing/prompts_pairs.jsonl",
    "data/routing/prompts_support_pairs.jsonl",
    "data/routing/prompts_support_pairs2.jsonl",
    "data/routing/prompts_support_mix.jsonl",
    "data/routing/prompts_conversations.jsonl",
)
# Strong L2 on purpose: our prompts separate almost perfectly, and the held-out traffic is written by others.
FEATURE_LAMBDAS = (3.0, 10.0, 30.0)
EMBEDDING_LAMBDAS = (30.0, 100.0, 300.0)
# Nearest-neighbour inputs: the share of hard prompts among the K training prompts whose vectors are nearest
# (cosine), and the margin: mean cosine of the M nearest hard training prompts minus that of the M nearest easy
# ones (how much closer the request sits to hard prompts than to easy ones, not only which side wins the vote).
# Tried with and without; cross-validation keeps them only when their log-loss is lower.
NEIGHBOURS = 9
NEIGHBOUR_MARGIN = 5
NEIGHBOUR_LAMBDA = 1.0
# Thresholds: each model's is the one with the best out-of-fold accuracy among those that keep the out-of-fold
# hard recall at TARGET_RECALL (a hard request sent light costs quality, an easy one sent heavy only money).
TARGET_RECALL = 0.95
# The chosen candidate's out-of-fold scores, from which the threshold is read, average this many repeats of the
# 5-fold split (the choice among candidates uses 2): with 2, the static head's threshold moved between 0.47 and
# 0.54 from one pair of seeds to the next.
THRESHOLD_REPEATS = 6

Progress = Callable[[str], None]


# --- data ----------------------------------------------------------------------------------------------


def row_messages(row: dict) -> list[dict]:
    if "messages" in row:
        return row["messages"]
    return [{"role": "user", "content": row["prompt"]}]


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a JSONL file: {"prompt"|"messages", "label": "easy"|"hard"}. Bad lines raise with their number."""
    rows = []
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if row.get("label") not in ("easy", "hard") or not ("prompt" in row or "messages" in row):
                raise ValueError(f"{path}:{n}: need 'prompt' or 'messages' and label 'easy' or 'hard'")
            rows.append(row)
    return rows


def _labels(rows: list[dict]) -> np.ndarray:
    return np.array([1 if r["label"] == "hard" else 0 for r in rows], dtype=np.int8)


def _feature_matrix(rows: list[dict]) -> np.ndarray:
    return np.stack([extract_features(row_messages(r))[0] for r in rows])


def _embed(rows: list[dict[str, Any]], embedder: Any) -> np.ndarray:
    return embedder.encode([last_user_text(row_messages(r)) for r in rows]).astype(np.float64)


# --- metrics -------------------------------------------------------------------------------------------


def roc_auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Rank-based ROC AUC (Mann-Whitney U), ties counted half. NaN when one class is missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def metrics(scores: ArrayLike, labels: ArrayLike, threshold: float) -> dict[str, Any]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    heavy = s >= threshold
    tp = int((heavy & y).sum())
    fp = int((heavy & ~y).sum())
    fn = int((~heavy & y).sum())
    tn = int((~heavy & ~y).sum())
    n = len(s)
    return {
        "n": n,
        "threshold": float(threshold),
        "accuracy": (tp + tn) / n if n else float("nan"),
        "hard_precision": tp / (tp + fp) if tp + fp else float("nan"),
        "hard_recall": tp / (tp + fn) if tp + fn else float("nan"),
        "auc": roc_auc(s, y),
        "heavy_share": (tp + fp) / n if n else float("nan"),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def calibrate(
    scores: ArrayLike,
    labels: ArrayLike,
    target_recall: float | None = None,
    target_heavy_share: float | None = None,
    *,
    target_specificity: float | None = None,
) -> float:
    """A threshold (heavy when score >= threshold) from labelled scores.

    target_recall: the highest threshold whose hard recall is at least the target. target_heavy_share: the
    highest threshold that sends at least that share of requests heavy. target_specificity: the lowest
    threshold that keeps at least that share of easy requests light. None of them: the threshold with the best
    accuracy (ties go to the higher recall). A threshold sits halfway between the two scores it separates.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    if len(s) == 0:
        raise ValueError("no scores to calibrate on")
    targets = [t for t in (target_recall, target_heavy_share, target_specificity) if t is not None]
    if len(targets) > 1:
        raise ValueError("give one of target_recall, target_heavy_share, target_specificity")
    if targets and not 0.0 < targets[0] <= 1.0:
        raise ValueError("target must be in (0, 1]")
    if target_recall is not None or target_heavy_share is not None:
        target = targets[0]
        pool = s[y] if target_recall is not None else s
        if len(pool) == 0:
            raise ValueError("no hard examples to calibrate recall on")
        k = math.ceil(target * len(pool) - 1e-9)
        cut = np.sort(pool)[::-1][k - 1]  # the k-th highest must stay heavy
        below = s[s < cut]
        return float((cut + below.max()) / 2.0) if len(below) else float(cut)
    if target_specificity is not None:
        easy = np.sort(s[~y])[::-1]
        if len(easy) == 0:
            raise ValueError("no easy examples to calibrate specificity on")
        allowed = math.floor((1.0 - target_specificity) * len(easy) + 1e-9)  # easy ones that may go heavy
        if allowed >= len(easy):
            return float(s.min())
        cut = easy[allowed]  # the highest easy score that must stay light
        above = s[s > cut]
        return float((cut + above.min()) / 2.0) if len(above) else float(np.nextafter(cut, np.inf))
    values = np.unique(s)
    candidates = np.concatenate([[values[0]], (values[1:] + values[:-1]) / 2.0, [values[-1] + 1e-9]])
    best, best_key = float(candidates[0]), None
    for t in candidates:
        heavy = s >= t
        key = (float((heavy == y).mean()), float((heavy & y).sum()))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


def best_accuracy_threshold(scores: ArrayLike, labels: ArrayLike, min_recall: float) -> float:
    """The threshold with the best accuracy among those whose hard recall is at least min_recall (ties: the
    higher recall); the min_recall threshold itself when none does better."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    floor = calibrate(s, y, target_recall=min_recall)
    values = np.unique(s[s <= floor])
    candidates = np.concatenate([(values[1:] + values[:-1]) / 2.0, [floor]]) if len(values) > 1 else [floor]
    best, best_key = floor, None
    for t in candidates:
        heavy = s >= t
        key = (float((heavy == y).mean()), float((heavy & y).sum()), float(t))
        if best_key is None or key > best_key:
            best, best_key = float(t), key
    return best


# --- model fitting -------------------------------------------------------------------------------------


def fit_logistic(
    X: np.ndarray, y: np.ndarray, penalty: np.ndarray | float, iters: int = 50
) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method; the bias is not penalised.

    Minimises sum(log-loss) + 0.5 * sum(penalty * w**2). Deterministic.
    """
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    lam = np.append(np.broadcast_to(np.asarray(penalty, dtype=np.float64), (d,)), 1e-8)
    w = np.zeros(d + 1)
    yf = y.astype(np.float64)
    for _ in range(iters):
        z = np.clip(A @ w, -35, 35)
        p = 1.0 / (1.0 + np.exp(-z))
        grad = A.T @ (p - yf) + lam * w
        hess = (A * (p * (1 - p))[:, None]).T @ A + np.diag(lam)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def _fit_raw(X: np.ndarray, y: np.ndarray, penalty: np.ndarray) -> tuple[np.ndarray, float]:
    """Fit on standardised inputs and fold the standardisation into (coef, bias) on raw inputs."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std < 1e-9] = 1.0
    w, b = fit_logistic((X - mean) / std, y, penalty)
    coef = w / std
    return coef, b - float(coef @ mean)


def _predict(coef: np.ndarray, bias: float, X: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(X @ coef + bias, -35, 35)))


def stratified_folds(y: np.ndarray, k: int, seed: int, groups: list[str] | None = None) -> np.ndarray:
    """Fold index (0..k-1) of each row, classes spread evenly, shuffled by seed. Rows of one group (the two
    prompts of a pair, which share words) always fall in the same fold."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups if groups is not None else [""] * len(y)):
        members.setdefault(g or f"#{i}", []).append(i)
    # Groups of the same make-up (one easy, one hard, ...) are dealt round-robin, in a shuffled order.
    by_kind: dict[tuple[int, int], list[list[int]]] = {}
    for idx in members.values():
        hard = int(sum(int(y[i]) for i in idx))
        by_kind.setdefault((hard, len(idx) - hard), []).append(idx)
    start = 0
    for kind in sorted(by_kind):
        batch = by_kind[kind]
        for n, j in enumerate(rng.permutation(len(batch))):
            fold[batch[j]] = (start + n) % k
        start += len(batch)
    return fold


def row_groups(rows: list[dict[str, Any]]) -> list[str]:
    """The pair each row belongs to ("" when none): cross-validation keeps a pair together."""
    return [str(r.get("pair") or "") for r in rows]


def unit_rows(V: np.ndarray) -> np.ndarray:
    return V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)


def neighbour_share(
    queries: np.ndarray, vectors: np.ndarray, labels: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """The share of hard labels among each query's k nearest rows of `vectors` (unit rows, cosine), leaving
    out the pairs (query, row) marked in `exclude`. The scorer does the same for one request."""
    sims = queries @ vectors.T
    if exclude is not None:
        sims[exclude] = -np.inf
    k = min(k, vectors.shape[0])
    nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return labels[nearest].mean(axis=1)


def neighbour_margin(
    queries: np.ndarray, vectors: np.ndarray, labels: np.ndarray, m: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Mean cosine of each query's m nearest hard rows of `vectors` minus that of its m nearest easy rows,
    leaving out the pairs marked in `exclude`. The scorer does the same for one request."""
    sims = queries @ vectors.T
    if exclude is not None:
        sims[exclude] = -np.inf
    hard = np.asarray(labels).astype(bool)
    sides = []
    for side in (sims[:, hard], sims[:, ~hard]):
        mm = min(m, side.shape[1])
        top = -np.partition(-side, mm - 1, axis=1)[:, :mm]
        top[~np.isfinite(top)] = 0.0  # a left-out row: counted as unrelated
        sides.append(top.mean(axis=1))
    return sides[0] - sides[1]


def neighbour_inputs(
    queries: np.ndarray, vectors: np.ndarray, labels: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """(share of hard among the k nearest, hard-minus-easy margin of the NEIGHBOUR_MARGIN nearest) per query."""
    return np.column_stack(
        [
            neighbour_share(queries, vectors, labels, k, exclude),
            neighbour_margin(queries, vectors, labels, NEIGHBOUR_MARGIN, exclude),
        ]
    )


def _own_neighbour_inputs(V: np.ndarray, y: np.ndarray, groups: list[str] | None, k: int) -> np.ndarray:
    """neighbour_inputs of training rows among themselves, leaving out each row and its pair (as for a new
    request, whose neighbours never include itself)."""
    g = np.array(groups if groups is not None else [""] * len(y), dtype=object)
    exclude = (g[:, None] == g[None, :]) & (g[:, None] != "")
    np.fill_diagonal(exclude, True)
    return neighbour_inputs(V, V, y, k, exclude)


def cross_val_scores(
    X: np.ndarray,
    y: np.ndarray,
    penalty: np.ndarray,
    k: int = 5,
    seed: int = 0,
    groups: list[str] | None = None,
    neighbours: tuple[np.ndarray, int] | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities of each row. `neighbours` (unit vectors, K): X gets the neighbour inputs (share,
    margin) as last columns, worked out within each fold's training rows only."""
    out = np.empty(len(y))
    fold = stratified_folds(y, k, seed, groups)
    for f in range(k):
        test = fold == f
        X_train, X_test = X[~test], X[test]
        if neighbours is not None:
            V, K = neighbours
            train_groups = None if groups is None else [g for g, t in zip(groups, test) if not t]
            own = _own_neighbour_inputs(V[~test], y[~test], train_groups, K)
            theirs = neighbour_inputs(V[test], V[~test], y[~test], K)
            X_train, X_test = np.hstack([X_train, own]), np.hstack([X_test, theirs])
        coef, bias = _fit_raw(X_train, y[~test], penalty)
        out[test] = _predict(coef, bias, X_test)
    return out


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


# A candidate: its penalty and, for the nearest-neighbour inputs, (unit vectors, K); the penalty then has two
# more values, the neighbour share's and the margin's.
Candidate = tuple[np.ndarray, tuple[np.ndarray, int] | None]


def _select(
    X: np.ndarray,
    y: np.ndarray,
    candidates: list[Candidate] | list[np.ndarray],
    seed: int,
    groups: list[str] | None = None,
    repeats: int = 2,
    progress: Progress | None = None,
    label: str = "",
) -> tuple[Candidate, np.ndarray, list[dict[str, Any]]]:
    """The candidate with the lowest repeated-CV log-loss, its out-of-fold scores (mean of the repeats), the
    table. A candidate is a penalty, or (penalty, neighbours) as `cross_val_scores` takes them."""
    table: list[dict[str, Any]] = []
    best: tuple[float, Candidate, np.ndarray] | None = None
    for n, candidate in enumerate(candidates, 1):
        penalty, neighbours = candidate if isinstance(candidate, tuple) else (candidate, None)
        runs = [
            cross_val_scores(X, y, penalty, seed=seed + r, groups=groups, neighbours=neighbours) for r in range(repeats)
        ]
        loss = float(np.mean([_log_loss(p, y) for p in runs]))
        auc = float(np.mean([roc_auc(p, y) for p in runs]))
        shown = penalty[:-2] if neighbours is not None else penalty
        table.append(
            {"penalty": sorted({float(v) for v in shown}), "cv_log_loss": round(loss, 4), "cv_auc": round(auc, 4)}
        )
        if neighbours is not None:
            table[-1]["neighbours"] = neighbours[1]
        if progress is not None:
            extra = f" + {neighbours[1]} nearest" if neighbours is not None else ""
            progress(
                f"{label}: penalty {n}/{len(candidates)} {table[-1]['penalty']}{extra}: cross-validated "
                f"log-loss {loss:.4f}, AUC {auc:.4f}"
            )
        if best is None or loss < best[0]:
            best = (loss, (penalty, neighbours), np.mean(runs, axis=0))
    assert best is not None
    return best[1], best[2], table


def _steady_oof(
    X: np.ndarray,
    y: np.ndarray,
    penalty: np.ndarray,
    neighbours: tuple[np.ndarray, int] | None,
    seed: int,
    groups: list[str] | None,
    first: np.ndarray,
    selection_repeats: int = 2,
) -> np.ndarray:
    """Out-of-fold scores of the chosen candidate averaged over THRESHOLD_REPEATS repeats (`first`: the mean of
    the selection's repeats, seeds seed..seed+1, reused)."""
    more = [
        cross_val_scores(X, y, penalty, seed=seed + r, groups=groups, neighbours=neighbours)
        for r in range(selection_repeats, THRESHOLD_REPEATS)
    ]
    return (first * selection_repeats + np.sum(more, axis=0)) / max(THRESHOLD_REPEATS, selection_repeats)


def _round(values: np.ndarray, digits: int = 6) -> list[float]:
    return [float(f"{v:.{digits}g}") for v in values]


def train(
    rows: list[dict[str, Any]],
    embedders: Sequence[Any] | Any = (),
    out_path: str | Path | None = None,
    *,
    seed: int = 0,
    target_recall: float = TARGET_RECALL,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit the features-only model and one features ‖ embedding model per available embedder (the scorer picks
    the one whose dimension matches the request's vector), write the weights file (when out_path is given) and
    return its dict. `progress(line)`, when given, hears about each stage."""
    y = _labels(rows)
    if y.min() == y.max():
        raise ValueError("training rows need both labels")
    if embedders is None:
        embedders = ()
    elif not isinstance(embedders, (list, tuple)):
        embedders = (embedders,)
    groups = row_groups(rows)
    say = progress or (lambda line: None)
    say(f"features of {len(rows)} prompts ({int(y.sum())} hard, {len({g for g in groups if g})} pairs)")
    F = _feature_matrix(rows)
    nf = F.shape[1]

    def shifted(bias: float, oof: np.ndarray) -> tuple[float, float, dict[str, Any]]:
        threshold = best_accuracy_threshold(oof, y, min_recall=target_recall)
        threshold = min(max(threshold, 1e-6), 1 - 1e-6)
        return bias - math.log(threshold / (1 - threshold)), threshold, metrics(oof, y, threshold)

    (penalty, _), oof, table_f = _select(
        F, y, [np.full(nf, lam) for lam in FEATURE_LAMBDAS], seed, groups, progress=say, label="features model"
    )
    oof = _steady_oof(F, y, penalty, None, seed, groups, oof)
    coef_f, bias_f = _fit_raw(F, y, penalty)
    bias_f, thr_f, cv_f = shifted(bias_f, oof)
    info: dict[str, Any] = {
        "trained_on": len(rows),
        "hard": int(y.sum()),
        "seed": seed,
        "target_recall": target_recall,
        "features_model": {
            "cv": table_f,
            "chosen_penalty": float(penalty[0]),
            "oof_threshold": thr_f,
            "oof_metrics": cv_f,
        },
        "embedding_models": [],
    }
    model: dict[str, Any] = {
        "version": 2,
        "feature_names": list(FEATURE_NAMES),
        "feature_mean": _round(F.mean(axis=0)),
        "features_model": {"coef": _round(coef_f), "bias": bias_f},
        "embedding_models": [],
    }
    for embedder in embedders:
        if embedder is None or not getattr(embedder, "available", False):
            continue
        name = getattr(embedder, "kind", getattr(embedder, "name", "?"))
        say(f"embedding {len(rows)} prompts with {getattr(embedder, 'name', name)}")
        E = _embed(rows, embedder)
        X = np.hstack([F, E])
        V = unit_rows(E)
        candidates: list[Candidate] = []
        for with_neighbours in (None, (V, NEIGHBOURS)):
            extra = [NEIGHBOUR_LAMBDA] * 2 if with_neighbours is not None else []
            for lf, le in product(FEATURE_LAMBDAS, EMBEDDING_LAMBDAS):
                penalty = np.concatenate([np.full(nf, lf), np.full(E.shape[1], le), extra])
                candidates.append((penalty, with_neighbours))
        (penalty, neighbours), oof, table_e = _select(
            X, y, candidates, seed, groups, progress=say, label=f"{name} model"
        )
        say(f"{name} model: {THRESHOLD_REPEATS} repeats of the chosen candidate's out-of-fold scores")
        oof = _steady_oof(X, y, penalty, neighbours, seed, groups, oof)
        head: dict[str, Any] = {"embedder": name, "dim": int(E.shape[1]), "mean": _round(E.mean(axis=0), 4)}
        if neighbours is not None:
            own = _own_neighbour_inputs(V, y, groups, NEIGHBOURS)
            X = np.hstack([X, own])
            # float16 is plenty for a cosine ranking; base64 keeps the weights file small
            head["neighbours"] = {
                "k": NEIGHBOURS,
                "mean": round(float(own[:, 0].mean()), 4),
                "margin_m": NEIGHBOUR_MARGIN,
                "margin_mean": round(float(own[:, 1].mean()), 4),
                "labels": [int(v) for v in y],
                "vectors_f16_b64": base64.b64encode(V.astype("<f2").tobytes()).decode("ascii"),
            }
        coef_e, bias_e = _fit_raw(X, y, penalty)
        bias_e, thr_e, cv_e = shifted(bias_e, oof)
        head.update(coef=_round(coef_e), bias=bias_e)
        model["embedding_models"].append(head)
        info["embedding_models"].append(
            {
                "embedder": name,
                "cv": table_e,
                "chosen_penalty": [float(penalty[0]), float(penalty[nf])],
                "neighbours": NEIGHBOURS if neighbours is not None else 0,
                "oof_threshold": thr_e,
                "oof_metrics": cv_e,
            }
        )
    model["info"] = info
    if out_path is not None:
        Path(out_path).write_bytes(orjson.dumps(model, option=orjson.OPT_INDENT_2))
        say(f"wrote {out_path}")
    return model


# --- evaluation ----------------------------------------------------------------------------------------


def score_rows(
    scorer: DifficultyScorer,
    rows: list[dict[str, Any]],
    embedder: Any = None,
    second: Any = None,
    threshold: float = 0.5,
) -> tuple[np.ndarray, str]:
    """Scores of rows (embedding the last user message when the scorer and the embedder allow) and the
    method; with `second` (a routing.second_opinion.SecondOpinion), scores near `threshold` are scored again
    as the gateway does."""
    vectors = None
    if scorer.uses_embedding and embedder is not None and getattr(embedder, "available", False):
        vectors = embedder.encode([last_user_text(row_messages(r)) for r in rows])
    results = [scorer.score(row_messages(r), None if vectors is None else vectors[i]) for i, r in enumerate(rows)]
    methods = {d.method for d in results}
    looked = 0
    if second is not None:
        for i, row in enumerate(rows):
            if second.wanted(results[i], threshold):
                again = second.rescore_now(row_messages(row), last_user_text(row_messages(row)))
                if again is not None:
                    results[i], looked = again, looked + 1
    method = "+".join(sorted(methods)) + (f", second opinion ({second.model}) on {looked}" if second else "")
    return np.array([d.score for d in results]), method


def evaluate(
    scorer: DifficultyScorer,
    rows: list[dict[str, Any]],
    threshold: float,
    embedder: Any = None,
    second: Any = None,
) -> dict[str, Any]:
    """Accuracy, hard precision/recall, ROC AUC and heavy share of the scorer on labelled rows."""
    scores, method = score_rows(scorer, rows, embedder, second, threshold)
    result = metrics(scores, _labels(rows), threshold)
    result["method"] = method
    result["scores"] = scores.tolist()
    return result
