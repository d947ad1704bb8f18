"""Language detection: the partitions of the semantic cache."""

from __future__ import annotations

import random

from gateway.cache.language import UNKNOWN, LanguageDetector, _script, _script_of_letters


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


def test_function_words_that_say_another_language_make_it_unknown():
    detector = LanguageDetector.load()
    # its letters read as English ("roaming"), its function words ("du") as French: do not know
    assert detector.detect("prix du roaming ?") == UNKNOWN
    assert detector.detect("le roaming est inclus ?") == UNKNOWN
    assert detector.detect("roaming price?") == "en"
    assert detector.detect("quel est le prix du roaming ?") == "fr"  # enough French to outweigh one English word
    assert detector.detect("¿Dónde está mi pedido de la tienda?") == "es"  # "de", "la" are Spanish too
