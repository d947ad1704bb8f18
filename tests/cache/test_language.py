"""Language detection: the partitions of the semantic cache."""

from __future__ import annotations

import random
import unicodedata
from collections import Counter

from gateway.cache.language import _SCRIPTS, UNKNOWN, LanguageDetector, _script


def _script_by_every_letter(text: str) -> str | None:
    """`_script` without its shortcut for Latin text: every letter above U+024F looked up by name."""
    counts: Counter[str] = Counter()
    letters = 0
    for char in text:
        if char.isalpha():
            letters += 1
            if ord(char) > 0x24F:
                name = unicodedata.name(char, "")
                for prefix, label in _SCRIPTS:
                    if name.startswith(prefix):
                        counts[label] += 1
                        break
    if not counts:
        return None
    label, count = counts.most_common(1)[0]
    return label if count * 2 >= letters else None


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
        assert _script(text) == _script_by_every_letter(text), text
