"""The learned politeness clauses (gateway/cache/manners.py) and how cache/semantic.py uses them."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.cache.manners import MannersModel, is_manners
from gateway.cache.semantic import _asking_politeness, clause_words, clauses_of, question_part
from gateway.cache.train import _json_strings, manners_clauses
from gateway.cli import main as cli

DATA = Path(__file__).resolve().parents[2] / "data" / "cache"


def test_politeness_the_word_lists_do_not_know_is_dropped_by_the_model():
    assert clause_words("greetings from a happy customer!") == "greetings from a happy customer"  # what it reads
    for opener in (
        "Greetings from a happy customer!",
        "Sorry for the late reply.",
        "Hello there, friendly support person!",
    ):
        assert question_part(f"{opener} Where is my parcel?") == "where is my parcel?", opener


def test_content_around_a_question_stays_even_among_politeness_words():
    # "sorry to bother you" is politeness, "moved" is not
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
    clauses = manners_clauses(_json_strings([str(DATA / "context_test.json")]), content_only=True)
    assert len(clauses) > 150
    read_as_manners = [clause for clause in clauses if is_manners(clause)]
    assert len(read_as_manners) <= 0.02 * len(clauses), read_as_manners


def test_small_talk_that_opens_a_message_is_dropped_and_a_question_with_content_is_not():
    for opener in ("Hey, how's your week going?", "Hi, how are you doing today?", "Hello, can anyone help me?"):
        assert question_part(f"{opener} Where is my order?") == "where is my order?", opener  # none trained on
    for first in ("Do you ship to Canada?", "Is it in stock?", "What do I do?"):
        assert question_part(f"{first} Where is my order?").startswith(first.lower()), first
    assert question_part("Hi, how are you?") == "how are you?"  # the last clause is the question: never asked
    assert not _asking_politeness("how are you")  # a question mark makes a clause a question


def test_held_out_questions_are_almost_never_read_as_small_talk():
    """The question clauses of the held-out pools, as if each opened a message."""
    texts = [json.loads(line)["text"] for name in HELD_OUT_POOLS for line in (DATA / name).read_text().splitlines()]
    questions = [clause for text in texts for clause in clauses_of(text.lower()) if "?" in clause]
    assert len(questions) > 500
    small_talk = [clause for clause in questions if _asking_politeness(clause)]
    assert len(small_talk) <= 0.01 * len(questions), len(small_talk)


HELD_OUT_POOLS = tuple(
    f"pool_{name}.jsonl" for name in ("test", "fresh", "fresh2", "fresh3", "fresh4", "fresh5", "fresh6", "fresh7")
)


def test_train_manners_builds_a_model_whose_margin_no_content_clause_reaches(tmp_path):
    manners = tmp_path / "manners.json"
    openers = ["Hope your week is going great!", "Happy Friday!", "Hey Anna,", "Hi, how are you?"]
    manners.write_text(json.dumps({"en_openers": openers}))
    content = tmp_path / "content.json"
    content.write_text(json.dumps({"en_before": ["I live in Canada.", "My parcel came broken.", "I paid by card."]}))
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"group": "g", "lang": "en", "text": "My order never arrived, what now"}) + "\n")
    questions = tmp_path / "questions.jsonl"
    rows = [{"group": "g", "lang": "en", "text": t} for t in ("Where is my order?", "Can I pay by card?", "How?")]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "model.json"
    args = ["cache", "train-manners", "--manners", str(manners), "--content", str(content), "--pool", str(pool)]
    args += ["--question-pool", str(questions)]
    assert cli([*args, "--folds", "2", "--k", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert "i live in canada" in data["content"] and "my order never arrived" in data["content"]  # every word
    assert data["opening_questions"]["manners"] == ["how are you"]  # every word of a question: all stopwords
    assert data["opening_questions"]["content"] == ["where is my order", "can i pay by card", "how"]
    model = MannersModel.load(out)
    assert model is not None and model.k == 1 and model.opening_questions is not None
    assert model("happy friday") and not any(model(clause) for clause in data["content"])
    asking = model.opening_questions
    assert asking("how are you") and not any(asking(clause) for clause in data["opening_questions"]["content"])


def test_without_a_model_file_the_word_lists_decide_alone(tmp_path):
    assert MannersModel.load(tmp_path / "absent.json") is None


def test_the_model_is_asked_about_a_bounded_number_of_clauses_whatever_the_message(monkeypatch):
    from gateway.cache import semantic

    asked = []
    monkeypatch.setattr(semantic, "_learned_politeness", lambda clause: asked.append(clause) or True)
    monkeypatch.setattr(semantic, "_asking_politeness", lambda clause: asked.append(clause) or True)
    text = " ".join(f"clause number {word} here." for word in ("one two three four five six " * 50).split())
    semantic._without_manners(text.lower() + " where is my order?")
    assert 0 < len(asked) <= 2 * semantic._EDGE_CLAUSES


def test_what_follows_the_question_goes_when_it_only_signs_off():
    for closer in ("Have a good one!", "Bonne journée à vous.", "Have a nice weekend!", "Belle journée 🌸"):
        assert question_part(f"Where is my order? {closer}") == "where is my order?", closer
    # a second question typed without its mark, a denial: kept
    assert question_part("Where is my order? do you take them back").endswith("do you take them back")
    assert question_part("Where is my order? Not me.").endswith("not me.")
    # without a question before it, a sign-off goes when the model reads it as one (its words are all filler)
    assert question_part("My parcel is late. Have a good one!") == "my parcel is late."


def test_a_sign_off_glued_to_a_question_typed_without_its_mark_starts_at_the_capital():
    assert question_part("where do i put my voucher Warm regards, Priya") == "where do i put my voucher"
    assert question_part("whens my photo order getting here Sent from my phone") == "whens my photo order getting here"
    # a capital that starts no sign-off is a name: nothing goes
    assert question_part("do you ship to Canada") == "do you ship to canada"
    assert question_part("is the Nike Air in stock") == "is the nike air in stock"
    assert question_part("Where Is My Order") == "where is my order"


def test_a_clause_of_filler_words_is_asked_too_and_an_emoji_ends_a_clause():
    for opener in ("Hey, one quick thing.", "So, here is the thing.", "Hey there 👋", "hi :)", "Salut 😊"):
        assert question_part(f"{opener} where is my order?") == "where is my order?", opener
    assert question_part("Where is my order? 😊") == "where is my order?"  # an emoji alone signs off


def test_content_glued_to_a_greeting_stays():
    """All the words of "hello i'm vegan" read as a greeting; "vegan" alone reads as content (the second look)."""
    assert question_part("Hello I'm vegan. Is the soup ok?") == "i'm vegan. is the soup ok?"
    assert question_part("Bonjour je suis en Norvège. Livrez-vous ici ?").startswith("je suis en norvège.")
