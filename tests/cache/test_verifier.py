"""The pair verifier: soft word matching lets a reworded question through, a swapped or added content word
does not; its vetoes short-cut exactly what the feature columns say; boosted trees and the calibration."""

import json
from pathlib import Path

import numpy as np
import pytest

from gateway.cache.semantic import Candidates
from gateway.cache.train import _threshold_for, fit_trees, wilson_upper
from gateway.cache.verifier import FEATURES, Trees, Verifier, pair_features
from gateway.static_embedding import StaticModel

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model():
    return StaticModel.load()


@pytest.fixture(scope="module")
def verifier():
    return Verifier.load()


def served(verifier, model, stored: str, asked: str) -> bool:
    candidates = Candidates.from_rows([(stored, model.embed(stored), "answer")])
    return verifier.best(asked, model.embed(asked), candidates) is not None


@pytest.mark.parametrize(
    "stored, asked",
    [
        ("Comment résilier mon abonnement ?", "comment annuler mon abonement"),  # another verb, a typo
        ("How can I erase my profile?", "How can I delete my profile?"),  # close in the word table
        ("Do you ship to Canada?", "Do u ship to Canada please?"),  # light words added
    ],
)
def test_a_reworded_question_hits(verifier, model, stored, asked):
    assert served(verifier, model, stored, asked)
    assert served(verifier, model, asked, stored)


@pytest.mark.parametrize(
    "stored, asked",
    [
        ("How do I delete my account?", "How do I delete my card?"),  # one content word swapped
        ("Do you ship to Canada?", "Do you ship gift cards to Canada?"),  # a qualifier added
        ("How do I cancel my membership?", "How do I pause my membership?"),
        ("Can I transfer money to my savings?", "Can I transfer money from my savings?"),
        ("What is the status of my loan application?", "How do I apply for a loan?"),
    ],
)
def test_a_sibling_misses(verifier, model, stored, asked):
    assert not served(verifier, model, stored, asked)
    assert not served(verifier, model, asked, stored)


def test_the_quick_vetoes_decide_as_the_feature_columns(verifier):
    texts = [json.loads(line)["text"] for line in (ROOT / "data/cache/pool_dev.jsonl").open(encoding="utf-8")]
    columns = [FEATURES.index(name) for name in verifier.vetoes]
    assert columns, "the shipped verifier has vetoes"
    fired = 0
    for a in texts[::4]:
        for b in texts[1::5]:
            expected = bool(pair_features(a, b, 0.7)[columns].max() > 0)
            assert verifier.vetoed(a, b) == expected, (a, b)
            fired += expected
    assert fired > 0


def test_boosted_trees_learn_a_rule_and_survive_json(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((600, len(FEATURES)))
    y = ((x[:, 0] > 0.5) & (x[:, 3] < 0.7)).astype(float)
    trees = fit_trees(x, y, rounds=60)
    assert ((trees(x) > 0) == (y == 1)).mean() > 0.95
    verifier = Verifier(None, 0.0, None, None, threshold=0.5, trees=trees, vetoes=("unmatched",))
    path = tmp_path / "v.json"
    path.write_text(json.dumps(verifier.to_json()), encoding="utf-8")
    again = Verifier.load(path)
    assert isinstance(again.trees, Trees)
    assert np.allclose(again.logits(x), verifier.logits(x), atol=1e-4)


def test_unknown_veto_is_refused():
    with pytest.raises(ValueError, match="unknown veto"):
        Verifier(None, 0.0, None, None, threshold=0.5, vetoes=("no_such_feature",))


def test_the_threshold_meets_the_upper_bound_not_the_point_estimate():
    decisions = (
        [(0.99 - i / 1000, True) for i in range(60)] + [(0.9, False)] + [(0.85 - i / 1000, True) for i in range(20)]
    )
    assert _threshold_for(decisions, 0.02) == pytest.approx(0.85 - 19 / 1000)  # 1 wrong in 81: 1.2%
    assert _threshold_for(decisions, 0.02, z=1.0) == pytest.approx(0.99 - 59 / 1000)  # its bound is 3.2%
    assert wilson_upper(0, 60, 1.0) < 0.02 < wilson_upper(1, 81, 1.0)
    tied = [(0.9, True), (0.9, False)] + [(0.8, True)] * 3
    assert _threshold_for(tied, 0.0) == 1.0  # a tie is served or refused together
