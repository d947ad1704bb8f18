"""Difficulty scorer: features, the shipped models, thresholds, metrics, calibration, training, CLI."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re

import numpy as np
import pytest

from gateway.routing.cli import register_cli, routed_cost_ratio
from gateway.routing.difficulty import (
    FEATURE_NAMES,
    Difficulty,
    DifficultyScorer,
    DifficultySettings,
    extract_features,
    last_user_text,
    tier_for,
)
from gateway.routing.train import calibrate, fit_logistic, metrics, roc_auc, train

LONG_EASY = (
    "Hi there, I hope you're doing well! So, a bit of background: I ordered a birthday present for my nephew "
    "about ten days ago, a little wooden garage with cars, and he turns five on Sunday. My sister keeps asking "
    "me whether it will arrive in time because the whole party is built around it (don't ask). The website "
    "said 3 to 5 days, but the tracking page hasn't moved since Tuesday. I'm not angry, just a bit worried. "
    "Could you tell me where the parcel is and whether it'll be there before Sunday? Thanks a lot!"
)
SHORT_HARD = "Is a no-refund clause on sale items enforceable under EU consumer law?"
SHORT_MATHS = "Solve 3x^2 - 7x + 2 = 0."


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def counts(text: str) -> dict[str, int]:
    return extract_features(user(text))[1]


@pytest.fixture(scope="module")
def scorer() -> DifficultyScorer:
    return DifficultyScorer.load(DifficultySettings())


# --- features -------------------------------------------------------------------------------------------


def test_features_detect_code_and_stack_traces():
    text = (
        "Why does this fail?\n```python\ndef total(items):\n    return sum(i.price for i in items)\n```\n"
        "Traceback (most recent call last):\n  File \"shop.py\", line 3, in total\nAttributeError: 'dict'"
    )
    c = counts(text)
    assert c["code_block"] == 1 and c["code"] >= 2 and c["stack_trace"] >= 2
    assert counts("Where is my order 55102?")["code"] == 0
    assert counts("I want to return a jacket, how do I print the return label?")["code"] == 0


def test_features_detect_maths_legal_medical_and_constraints():
    assert counts(SHORT_MATHS)["maths_notation"] >= 1
    assert counts("Quelle est la probabilité d'avoir deux six ?")["maths_words"] >= 1
    assert counts(SHORT_HARD)["legal"] >= 2
    assert counts("Au regard du RGPD, peut-on garder les factures ?")["legal"] >= 1
    assert counts("My son has a peanut allergy, is it safe to eat?")["medical"] >= 2
    assert (
        counts("Refund if returned within 30 days, unless used, except defective items, at least 50%")["constraints"]
        >= 4
    )
    plain = counts("Can I change my delivery address please?")
    assert sum(plain[k] for k in ("code", "maths_notation", "legal", "medical", "finance")) == 0
    assert plain["support"] >= 2


def test_feature_vector_shape_language_and_turns():
    x_fr, _ = extract_features(user("Bonjour, où est ma commande ? Je ne l'ai pas reçue."))
    x_en, _ = extract_features(user("Hello, where is my order? I have not received it."))
    assert len(x_fr) == len(FEATURE_NAMES) and all(isinstance(v, float) for v in x_fr)
    french = FEATURE_NAMES.index("french")
    assert x_fr[french] > 0.5 > x_en[french]
    convo = [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Thanks"},
    ]
    assert extract_features(convo)[1]["turns"] == 2


def test_last_user_text_reads_content_parts():
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url"}]},
    ]
    assert last_user_text(messages) == "second"
    assert last_user_text([{"role": "system", "content": "x"}]) == ""


# --- the shipped scorer ---------------------------------------------------------------------------------


def test_long_chatty_easy_scores_lower_than_short_hard(scorer):
    for hard in (SHORT_HARD, SHORT_MATHS):
        assert scorer.score(user(LONG_EASY), None).score < scorer.score(user(hard), None).score
    assert tier_for(scorer.score(user(LONG_EASY), None).score, 0.5) == "light"
    assert tier_for(scorer.score(user(SHORT_HARD), None).score, 0.5) == "heavy"


def test_features_only_fallback_says_so(scorer):
    result = scorer.score(user(SHORT_HARD), None)
    assert isinstance(result, Difficulty)
    assert result.method == "features"
    assert any("features-only" in r and "no embedding" in r for r in result.reasons)
    assert 0.0 <= result.score <= 1.0
    off = DifficultyScorer.load(DifficultySettings(use_embedding=False))
    assert not off.uses_embedding
    assert off.score(user(SHORT_HARD), np.ones(512, dtype=np.float32) / 512**0.5).method == "features"


def test_wrong_vector_shape_falls_back(scorer):
    if not scorer.uses_embedding:
        pytest.skip("weights shipped without the embedding model")
    result = scorer.score(user(SHORT_HARD), np.zeros(3, dtype=np.float32))
    assert result.method == "features"


def test_embedding_model_is_used_with_a_vector(scorer):
    if not scorer.uses_embedding:
        pytest.skip("weights shipped without the embedding model")
    rng = np.random.default_rng(0)
    vector = rng.normal(size=scorer.embedding_dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    result = scorer.score(user(SHORT_HARD), vector)
    assert result.method == "model"
    assert any(r.startswith("embedding classifier") for r in result.reasons)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.score = 0.0  # frozen


def test_real_embeddings_keep_chatty_easy_light():
    from gateway.embeddings import Embedder

    embedder = Embedder.load()
    if not embedder.available:
        pytest.skip("embedding model not installed")
    scorer = DifficultyScorer.load()
    v_easy, v_hard = embedder.encode([LONG_EASY, SHORT_HARD])
    easy, hard = scorer.score(user(LONG_EASY), v_easy), scorer.score(user(SHORT_HARD), v_hard)
    assert easy.method == hard.method == "model"
    assert easy.score < 0.5 <= hard.score


def test_hard_context_lifts_a_short_follow_up(scorer):
    follow_up = "And what if it was bought 18 months ago?"
    context = [
        {
            "role": "user",
            "content": "Under the EU legal guarantee of conformity, who must prove the defect, "
            "given the 2022 directive changes?",
        },
        {"role": "assistant", "content": "The seller, during the presumption period."},
        {"role": "user", "content": follow_up},
    ]
    assert scorer.score(context, None).score > scorer.score(user(follow_up), None).score


def test_threshold_boundary():
    assert tier_for(0.5, 0.5) == "heavy"
    assert tier_for(np.nextafter(0.5, 0.0), 0.5) == "light"
    assert tier_for(0.0, 0.0) == "heavy"
    assert tier_for(1.0, 1.0) == "heavy"
    m = metrics([0.2, 0.5, 0.7], [0, 0, 1], 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 1, 0)


# --- metrics --------------------------------------------------------------------------------------------


def brute_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)) / (len(pos) * len(neg))


def test_roc_auc():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert np.isnan(roc_auc([0.1, 0.2], [1, 1]))
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(60), 1)  # many ties
    labels = rng.random(60) < 0.4
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels))


def test_metrics_on_tiny_inputs():
    m = metrics([0.9, 0.6, 0.4, 0.1, 0.7], [1, 1, 1, 0, 0], 0.5)
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["hard_recall"] == pytest.approx(2 / 3)
    assert m["hard_precision"] == pytest.approx(2 / 3)
    assert m["heavy_share"] == pytest.approx(3 / 5)
    assert m["auc"] == pytest.approx(4 / 6)


# --- calibration ----------------------------------------------------------------------------------------


def test_calibrate_hits_target_recall():
    rng = np.random.default_rng(2)
    labels = rng.random(400) < 0.4
    scores = np.clip(rng.normal(np.where(labels, 0.65, 0.35), 0.15), 0, 1)
    for target in (0.8, 0.9, 0.95, 1.0):
        t = calibrate(scores, labels, target_recall=target)
        recall = metrics(scores, labels, t)["hard_recall"]
        assert recall >= target
        # the highest such threshold: the next hard score up would fall below the target
        higher = scores[labels & (scores >= t)].min()
        assert metrics(scores, labels, np.nextafter(higher, 1.0))["hard_recall"] < target


def test_calibrate_heavy_share_specificity_and_accuracy():
    scores = np.array([0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    labels = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    t = calibrate(scores, labels, target_heavy_share=0.3)
    assert (scores >= t).mean() == pytest.approx(0.3)
    t = calibrate(scores, labels, target_specificity=1.0)
    assert metrics(scores, labels, t)["fp"] == 0 and 0.6 < t < 0.7
    t = calibrate(scores, labels)
    assert metrics(scores, labels, t)["accuracy"] == pytest.approx(0.9)
    with pytest.raises(ValueError):
        calibrate(scores, labels, target_recall=0.9, target_heavy_share=0.5)


# --- training -------------------------------------------------------------------------------------------


def test_fit_logistic_separates_and_regularises():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    w, b = fit_logistic(X, y, 1.0)
    assert w[0] > 0 > w[1] and abs(w[2]) < abs(w[0]) / 3
    w_strong, _ = fit_logistic(X, y, 1000.0)
    assert np.linalg.norm(w_strong) < np.linalg.norm(w)


def toy_rows():
    easy = [
        "Where is my order {}?",
        "Can I return the shoes from order {}?",
        "Bonjour, où est mon colis {} ?",
        "How do I reset my password? Account {}.",
        "Je voudrais changer l'adresse de la commande {}.",
    ]
    hard = [
        "Solve {}x^2 - 3x + 1 = 0 and prove the roots are real.",
        "Is clause {} of our contract enforceable under GDPR article 17?",
        "Why does this crash?\n```\nTraceback\nKeyError: 'x{}'\n```",
        "Quelle est la probabilité d'obtenir {} six en dix lancers ?",
        "My son has a severe peanut allergy: is dose {} mg of your syrup safe with his medication?",
    ]
    rows = [{"prompt": t.format(10000 + i), "label": "easy"} for i in range(4) for t in easy]
    rows += [{"prompt": t.format(i + 2), "label": "hard"} for i in range(4) for t in hard]
    return rows


def test_train_is_deterministic_and_loads(tmp_path):
    rows = toy_rows()
    a = train(rows, None, tmp_path / "a.json", seed=7)
    b = train(rows, None, tmp_path / "b.json", seed=7)
    assert a["features_model"] == b["features_model"]
    assert a["embedding_models"] == []
    scorer = DifficultyScorer.load(DifficultySettings(model_path=str(tmp_path / "a.json")))
    assert not scorer.uses_embedding
    assert scorer.score(user("Where is my order 77777?")).score < 0.5
    assert scorer.score(user("Is clause 9 of the contract enforceable under GDPR?")).score >= 0.5
    with pytest.raises(ValueError):
        train([r for r in rows if r["label"] == "easy"], None, None)


# --- cost and CLI ---------------------------------------------------------------------------------------


def test_routed_cost_ratio():
    light = lambda p, c: p * 1 + c * 1  # noqa: E731
    heavy = lambda p, c: p * 10 + c * 10  # noqa: E731
    routed, all_heavy, ratio = routed_cost_ratio([100, 100], [True, False], light, heavy, completion_tokens=0)
    assert (routed, all_heavy) == (1100, 2000)
    assert ratio == pytest.approx(0.55)
    assert routed_cost_ratio([50], [True], light, heavy)[2] == pytest.approx(1.0)


def test_cli_eval_final_line(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    rows = [
        {"prompt": LONG_EASY, "label": "easy"},
        {"prompt": SHORT_HARD, "label": "hard"},
        {"messages": user("Where is my order 55102?"), "label": "easy"},
        {"prompt": SHORT_MATHS, "label": "hard"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["route", "eval", str(path), "--threshold", "0.5", "--no-embedding"])
    assert args.func(args) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"accuracy ([\d.]+) hard_recall ([\d.]+) auc ([\d.]+) heavy_share ([\d.]+)", last)
    assert match, last
    assert all(0.0 <= float(v) <= 1.0 for v in match.groups())
    assert float(match.group(4)) == pytest.approx(0.5)  # the two hard prompts, nothing else


def _neighbour_inputs_by_definition(near, vector):
    """What `_Neighbours.inputs` must return: argpartition's k nearest and numpy's means."""
    sims = near.vectors @ vector
    share = float(near.hard[np.argpartition(-sims, near.k - 1)[: near.k]].mean())
    m, n = near.margin_m, near.n_hard
    hard = float(np.partition(sims[:n], n - m)[-m:].mean())
    easy = float(np.partition(sims[n:], len(sims) - n - m)[-m:].mean())
    return share, hard - easy, hard, easy


def test_neighbour_inputs_equal_their_definition_bit_for_bit(scorer):
    near = scorer._heads[128].neighbours
    rng = np.random.default_rng(7)
    vectors = [near.vectors[3], near.vectors[-4], np.zeros(128, np.float32)]  # a training row: exact ties
    vectors += [rng.standard_normal(128).astype(np.float32) for _ in range(200)]
    broken = vectors[-1].copy()
    broken[5] = np.nan
    vectors += [broken, near.vectors[0] + np.float32(np.inf) * near.vectors[1]]  # NaN and inf cosines
    with np.errstate(invalid="ignore"):  # inf x 0 in the broken vectors' products
        for vector in vectors:
            assert repr(near.inputs(vector)) == repr(_neighbour_inputs_by_definition(near, vector))


def test_neighbour_inputs_with_a_tie_at_the_kth_nearest():
    from gateway.routing.difficulty import _Neighbours

    # rows 0-2 hard, 3-6 easy; rows 1 and 4 tie for the 3rd nearest of (1, 0)
    vectors = np.array([[1, 0], [0.6, 0.8], [0, 1], [0.9, 0.43589], [0.6, 0.8], [0, -1], [-1, 0]], np.float32)
    near = _Neighbours(vectors, np.array([1, 1, 1, 0, 0, 0, 0], np.float32), 3, 1.0, 0.5, 2, 1.0, 0.0, 3)
    for vector in (np.array([1, 0], np.float32), np.array([0.8, 0.6], np.float32)):
        assert near.inputs(vector) == _neighbour_inputs_by_definition(near, vector)
