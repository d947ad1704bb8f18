"""The learned politeness clauses (gateway/cache/manners.py) and how cache/semantic.py uses them."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.cache.manners import MannersModel, is_manners
from gateway.cache.semantic import question_part, unknown_words
from gateway.cache.train import _json_strings, manners_clauses
from gateway.cli import main as cli

DATA = Path(__file__).resolve().parents[2] / "data" / "cache"


def test_politeness_the_word_lists_do_not_know_is_dropped_by_the_model():
    assert unknown_words("greetings from a happy customer!") == "happy customer"  # what the model is asked
    for opener in (
        "Greetings from a happy customer!",
        "Sorry for the late reply.",
        "Hello there, friendly support person!",
    ):
        assert question_part(f"{opener} Where is my parcel?") == "where is my parcel?", opener


def test_content_around_a_question_stays_even_among_politeness_words():
    # "sorry to bother you" is politeness, "moved" is not: the model reads only the words the lists do not know
    assert question_part("Sorry to bother you, I moved, how do I update my address?") == (
        "i moved, how do i update my address?"
    )
    assert question_part("Sorry to bother you I moved, how do I update my address?").startswith("i moved,")
    assert "canada" in question_part("Hi, I'm writing from Canada. Do you ship here?")
    assert "broken" in question_part("Hello, my parcel came broken. Can I get a refund?")
    assert "2" in question_part("Hi, I ordered 2 mats. Where are they?")  # a digit: never asked
    assert question_part("Is it in stock? It is for my daughter.").endswith("for my daughter.")


def test_held_out_content_clauses_are_almost_never_read_as_politeness():
    """context_test.json was written with context_train.json (alternate lines) and never trained on."""
    clauses = manners_clauses(_json_strings([str(DATA / "context_test.json")]), unknown_only=True)
    assert len(clauses) > 150
    read_as_manners = [clause for clause in clauses if is_manners(clause)]
    assert len(read_as_manners) <= 0.02 * len(clauses), read_as_manners


def test_train_manners_builds_a_model_whose_margin_no_content_clause_reaches(tmp_path):
    manners = tmp_path / "manners.json"
    manners.write_text(json.dumps({"en_openers": ["Hope your week is going great!", "Happy Friday!", "Hey Anna,"]}))
    content = tmp_path / "content.json"
    content.write_text(json.dumps({"en_before": ["I live in Canada.", "My parcel came broken.", "I paid by card."]}))
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"group": "g", "lang": "en", "text": "My order never arrived, what now"}) + "\n")
    out = tmp_path / "model.json"
    args = ["cache", "train-manners", "--manners", str(manners), "--content", str(content), "--pool", str(pool)]
    assert cli([*args, "--folds", "2", "--k", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "live canada" in data["content"] and "order arrived" in data["content"]  # the words the lists miss
    model = MannersModel.load(out)
    assert model is not None and model.k == 1
    assert model("happy friday") and not any(model(clause) for clause in data["content"])


def test_without_a_model_file_the_word_lists_decide_alone(tmp_path):
    assert MannersModel.load(tmp_path / "absent.json") is None
