"""Language detection: the partitions of the semantic cache."""

from __future__ import annotations

import random

from gateway.cache.language import UNKNOWN, LanguageDetector, _script, _script_of_letters, word_log_odds


def test_languages_and_scripts():
    detector = LanguageDetector.load()
    assert detector.detect("Où est mon colis ? Je l'attends depuis une semaine.") == "fr"
    assert detector.detect("Where is my parcel? I have been waiting for a week.") == "en"
    assert detector.detect("Где мой заказ?") == "x-cyrillic"
    assert detector.detect("ok") == UNKNOWN


def test_script_reads_latin_text_as_latin_without_looking_letters_up():
    rng = random.Random(3)
    alphabet = "aéÿz ?.1\u024f\u0250\u0391\u03b1\u0416\u05d0\u4e2d\u3042\uac00"
    texts = ["", "été", "ça coûte 5 €", "Ωmega", "\u024f\u0250"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(20000)]
    for text in texts:
        assert _script(text) == _script_of_letters(text), text


def test_words_that_vote_for_the_other_language_decide_or_make_it_unknown():
    detector = LanguageDetector.load()
    # its letters read as English ("roaming"), its words ("prix", "du") vote French by 5 or more: French
    assert detector.detect("prix du roaming ?") == "fr"
    assert detector.detect("le roaming est inclus ?") == "fr"
    assert detector.detect("horaires magasin") == "fr"  # English by its letters, French by both words
    assert detector.detect("cost per lesson") == "en"  # French by its letters
    assert detector.detect("roaming price?") == "en"
    assert detector.detect("store hours") == "en"
    assert detector.detect("quel est le prix du roaming ?") == "fr"  # its letters say French too
    assert detector.detect("¿Dónde está mi pedido de la tienda?") == "es"  # only English and French words vote
    # letters one way, words the other by less than `words_decide`: do not know
    weak = next(w for w, odds in detector._word_odds.items() if 2 <= odds < 5 and w.isalpha() and len(w) > 3)
    assert detector._unless_words_disagree("en", f" {weak} ") == UNKNOWN


def test_word_log_odds_keep_the_words_of_one_language():
    odds = word_log_odds(["le prix du forfait", "le prix", "prix du wifi"] * 3, ["the price", "wifi price"] * 3)
    assert odds["prix"] > 1 and odds["le"] > 1 and odds["price"] < -1 and odds["the"] < -1
    assert "wifi" not in odds  # both languages use it: it votes for neither


def test_the_words_settle_a_close_call_between_english_and_french():
    detector = LanguageDetector.load()
    # typed without its accents, the letters cannot tell French from English; "offrir", "un", "ami" can
    assert detector.detect("comment offrir un ebook a un ami ?") == "fr"
    assert detector.detect("mes documents sont en word, c'est accepte ?") == "fr"


def test_words_of_both_languages_decide_only_when_their_net_names_the_letters_language():
    detector = LanguageDetector.load()
    # an English loan phrase in a French question: "click", "and", "collect" outvote "c'est" by their number
    assert detector.detect("click and collect c'est possible ?") == UNKNOWN
    assert detector.detect("comment marche le click and collect ?") == UNKNOWN
    # the same loan phrase inside a clearly French sentence: the letters and the net of the words agree
    assert detector.detect("Est-ce que je peux annuler ma commande click and collect déjà passée ?") == "fr"
    assert detector.detect("Is the Bordeaux boutique open on Sundays?") == "en"


def test_what_is_around_the_question_can_make_its_language_unknown():
    from gateway.cache.semantic import language_part

    detector = LanguageDetector.load()

    def message(text: str) -> str:
        return detector.detect_message(text, language_part(text))

    # a space before the question mark is French typography; "svp" is French politeness
    assert message("late check out possible ?") == UNKNOWN
    assert message("early check in possible svp") == UNKNOWN
    assert message("Hi, where is my order? Thanks!") == "en"
    assert message("Bonjour, où est ma commande ? Merci") == "fr"
    assert message("Bonjour, est-ce que vous livrez en Belgique ?") == "fr"
