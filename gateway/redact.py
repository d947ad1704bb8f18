"""Personal data out of text, for the opt-in request log: e-mails, IBANs, card numbers, order ids, postal
addresses and phone numbers, in French and English.

    redact("Mon IBAN est FR76 3000 6000 0112 3456 7890 189")  ->  "Mon IBAN est [IBAN]"

Every pattern runs in linear time: each quantifier that can repeat is bounded, and no repeated group can
match the same text two ways more than a bounded number of times, so the work per starting position is a
constant (tests/test_redact.py feeds adversarial inputs). Checksums keep false positives down where the
format has one (IBAN mod 97, card Luhn); a phone needs 9 to 15 digits, a longer run is a [NUMBER]. When in
doubt the text is redacted: this log must not leak, and a number too many hidden costs nothing.
"""

from __future__ import annotations

import re
from typing import Callable

__all__ = ["redact"]

_LETTER = r"A-Za-zÀ-ÖØ-öø-ÿ"


def _iban(match: re.Match[str]) -> str:
    text = re.sub(r"[ -]", "", match.group(0)).upper()
    if not 15 <= len(text) <= 34:
        return match.group(0)
    digits = "".join(str(int(c, 36)) for c in text[4:] + text[:4])
    return "[IBAN]" if int(digits) % 97 == 1 else match.group(0)


def _card(match: re.Match[str]) -> str:
    digits = [int(c) for c in match.group(0) if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return "[CARD]" if total % 10 == 0 else match.group(0)


def _phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    if digits < 9:
        return match.group(0)
    return "[PHONE]" if digits <= 15 else "[NUMBER]"


def _order(match: re.Match[str]) -> str:
    return match.group(0)[: match.start("id") - match.start()] + "[ORDER]"


_STREET_FR = (
    r"rue|avenue|av\.|boulevard|bd|place|chemin|all[ée]e|impasse|quai|route|cours|square|passage"
    r"|r[ée]sidence|lieu-dit|faubourg|fbg"
)
_STREET_EN = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Close|Court|Ct|Way|Place|Pl"
    r"|Square|Sq|Terrace|Crescent|Highway|Hwy|Parkway|Pkwy"
)
_ORDER_WORDS = (
    r"order|orders|commande|cde|cmd|invoice|facture|ticket|tracking|suivi|colis|parcel|package"
    r"|r[ée]f[ée]rence|reference|ref|dossier|case"
)

_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"), "[EMAIL]"),
    # IBAN: country, check digits, then up to 30 letters/digits in groups of four (mod 97 decides).
    (re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b"), _iban),
    # Card: 13 to 19 digits, single spaces or dashes between them (Luhn decides).
    (re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"), _card),
    # Order id after a word that announces one ("order #A-12345", "commande n° 48213", "ref: XK42-77").
    (
        re.compile(
            rf"\b(?:{_ORDER_WORDS})\b[^\w\n]{{0,3}}(?:(?:id|no|n|nr|num[ée]ro|number|is|est|de|du)\b[^\w\n]{{0,3}}){{0,3}}"
            r"(?P<id>(?=[A-Za-z-]{0,29}\d)[A-Za-z0-9][A-Za-z0-9-]{2,29})\b",
            re.IGNORECASE,
        ),
        _order,
    ),
    # Order-like references on their own: "#48213", "CMD-2024-118", "ORD123456".
    (re.compile(r"(?<![\w#])#\d{4,20}\b|\b[A-Z]{2,5}-?\d{4,12}(?:-\d{1,8})?\b"), "[ORDER]"),
    # Postal addresses. FR: "12 bis, rue de la Paix", "75002 Paris"; EN: "221B Baker Street", "SW1A 1AA",
    # "CA 94103".
    (
        re.compile(
            rf"\b\d{{1,4}}(?:\s?(?:bis|ter|[A-Da-d])\b)?,?\s{{1,3}}(?:{_STREET_FR})\b"
            rf"(?:\s{{1,3}}[{_LETTER}0-9'’-]{{1,30}}){{1,6}}",
            re.IGNORECASE,
        ),
        "[ADDRESS]",
    ),
    (
        re.compile(
            rf"\b\d{{1,5}}[A-Za-z]?,?\s{{1,3}}(?:[A-Z][{_LETTER}'’-]{{0,30}}\s{{1,3}}){{1,4}}(?:{_STREET_EN})\b\.?"
        ),
        "[ADDRESS]",
    ),
    (
        re.compile(
            rf"\b(?:F-)?\d{{5}}\s{{1,3}}[A-ZÀ-Ö][{_LETTER}'’-]{{1,30}}(?:[ -][A-ZÀ-Ö][{_LETTER}'’-]{{1,30}}){{0,3}}"
            r"(?:\s{1,3}CEDEX(?:\s{1,3}\d{1,2})?)?"
        ),
        "[ADDRESS]",
    ),
    (re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b|\b[A-Z]{2}\s\d{5}(?:-\d{4})?\b"), "[ADDRESS]"),
    # Phones, FR and international: "06 12 34 56 78", "+33 (0)6 12 34 56 78", "(555) 123-4567".
    (re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d\s.()/-]{6,30}\d(?!\w)"), _phone),
]


def redact(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
