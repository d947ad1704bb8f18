"""Guarded semantic match: may a cached answer to question A be served for question B?

    settings = SemanticSettings(threshold=0.65)
    match = find_match(query_text, query_vec, candidates, threshold=settings.threshold)
    if match is not None: serve(match.payload)
    guard("Where is order 48213?", "Where is order 48231?")  # -> "number"

No embedding separates paraphrases from near-misses by cosine alone ("not", one digit of an order id or a
swapped pair of words all score 0.95+), so a hit needs (1) cosine >= threshold and (2) every guard below to
pass. The guards compare cheap surface features of both texts, computed once per text and memoised:

    number       numbers, amounts, quantities (digits and number words), their units and currencies,
                 dates (weekdays, months, today/tomorrow...) differ
    reference    order ids, tracking codes, invoice numbers, e-mails (tokens mixing letters and digits,
                 long digit runs) differ
    entity       a proper noun (capitalised word not at sentence start, or a known brand, carrier, city,
                 country) of one text is absent from the other (FR/EN names are aliased)
    negation     one text is negated (not, never, without, can't, ne...pas, jamais, sans...), the other not
    antonym      polar words differ (enable/disable, add/remove, cancel/renew, open/close, before/after,
                 upgrade/downgrade, more/less...; FR and EN stems map to the same classes)
    topic        each text names a support concept the other lacks (order vs subscription, refund vs
                 invoice, password vs e-mail): a substitution, not an addition
    substitution same language, the rest nearly identical, one content word swapped for an unknown other
    word order   same values or words in a different order (from A to B / from B to A)

Every guard is language-neutral where it can be: a French question and its English paraphrase share the
same numbers, names, polarity and concept classes, so they may hit; word-level checks run only when both
texts are in the same language. All regexes are compiled at import; everything here is pure, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_THRESHOLD",
    "SemanticSettings",
    "Match",
    "Candidates",
    "find_match",
    "guard",
    "features",
    "contains_personal_data",
]

DEFAULT_THRESHOLD = 0.65


class SemanticSettings(BaseModel):
    """Settings of the semantic cache (the store reads max_entries_per_intent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.0, le=1.0)
    max_entries_per_intent: int = Field(default=1000, gt=0)


# --------------------------------------------------------------------------------------------- lexicons
# Entries are matched on lower-case, accent-folded text. "word" matches the whole word; "stem*" matches
# any word starting with the stem; entries may span several words. Written once, compiled at import.

_REWRITES = [  # idioms and multi-word terms -> one canonical token, before anything else
    (r"\bweek[- ]end(s)?\b", "weekend"),
    (r"\bau moins\b", "at least"),
    (r"-(?:t-)?(je|tu|il|elle|on|nous|vous|ils|elles|ce)\b", r" \1"),  # puis-je, livrez-vous, est-ce
    (r"\boutside (of )?(the|my|your|this) country\b|\bhors de (france|mon pays)\b|\ba l'etranger\b"
     r"|\boverseas\b|\babroad\b", "international"),
    (r"\b(ne|n')\s+((?:[\w']+\s+){0,3}?)plus\b", r"\1 \2nolonger"),  # ne ... plus: not "more"
    (r"\bmettre a jour\b|\bmis a jour\b", "update"),
    (r"\bjours? ouvr(ables?|es?)\b|\bbusiness days?\b|\bworking days?\b", "workday"),
    (r"(\d)\s?(h|hrs?|kg|cm|km|gb|go|min)\b", r"\1 \2"),
    (r"(\d{1,2})\s?(am|pm)\b", lambda m: f"{int(m.group(1)) % 12 + (12 if m.group(2) == 'pm' else 0)} h"),
    (r"\bmots? de passe\b|\bmdp\b|\bpass ?word", "password"),
    (r"\be-?mail(s)?\b|\bcourriels?\b|\badresses? (e-?)?mail\b|\bemail address(es)?\b", "email"),
    (r"\bmoney back\b|\bget refunded\b", "refund"),
    (r"\bsend (it |them |this |items? |products? )?back\b", "return"),
    (r"\blog ?(in|into|on)\b|\bsign ?(in|on)\b|\bse connecter\b|\bme connecter\b|\bconnexion\b", "login"),
    (r"\blog ?(out|off)\b|\bsign ?out\b|\bdeconnect\w*|\bdeconnexion\b", "logout"),
    (r"\b(close|shut) (down )?(my|the|your|an|this) (account|profile)\b", "delete account"),
    (r"\bfermer (mon|le|un|ce) (compte|profil)\b", "supprimer compte"),
    (r"\bgift ?cards?\b|\bcartes? cadeaux?\b", "giftcard"),
    (r"\bcombien de temps\b|\bhow long\b|\bhow many days\b|\bcombien de jours\b", "duration"),
    (r"\btwo[- ]factor\b|\b2fa\b|\bdouble authentification\b|\bauthentification a deux facteurs\b", "twofa"),
    (r"\bturn(ed|ing)? off\b|\bswitch(ed|ing)? off\b|\bopt(ed|ing)? out\b", "disable"),
    (r"\bturn(ed|ing)? on\b|\bswitch(ed|ing)? on\b|\bopt(ed|ing)? in\b", "enable"),
    (r"\bsign(ed|ing)? up\b", "register"),
    (r"\bpick(ed|ing)? ?up\b|\bclick (and|&) collect\b", "pickup"),
]

# Polar classes: any difference rejects (one side saying "disable" and the other saying nothing is a
# near-miss too: "how do I set up 2FA" / "how do I disable 2FA").
_POLAR: dict[str, list[str]] = {
    "start": ["enable*", "activat*", "activer", "activez", "active", "subscribe", "subscribed", "subscribing",
              "abonner", "abonnez", "inscri*", "register*", "reabonn*"],
    "end": ["cancel*", "stop*", "end", "ending", "terminat*", "quit", "disabl*", "deactivat*", "unsubscrib*",
            "annul*", "resili*", "arret*", "desactiv*", "desabonn*", "desinscri*", "mettre fin", "suspend*"],
    "renew": ["renew*", "reactivat*", "renouvel*", "reconduct*", "reconduire", "reactiv*", "prolong*",
              "extend*"],
    "add": ["add", "adding", "added", "adds", "ajout*", "rajout*", "insert*"],
    "remove": ["remov*", "delet*", "eras*", "suppr*", "effac*", "enlev*"],
    "create": ["creat*", "creer", "cree", "creez", "creation", "new account", "nouveau compte"],
    "increase": ["increas*", "augment*", "raise", "raising", "higher", "hausse"],
    "decrease": ["decreas*", "reduce", "reducing", "diminu*", "baiss*", "lower"],
    "more": ["more", "over", "above", "exceed*", "at least", "superieur*", "au-dessus", "au dessus",
             "au-dela", "au dela", "plus de", "plus que", "minimum"],
    "less": ["less", "fewer", "under", "below", "at most", "inferieur*", "en dessous", "en-dessous",
             "moins", "maximum", "jusqu'a"],
    "upgrade": ["upgrad*", "surclass*", "offre superieure", "monter en gamme"],
    "downgrade": ["downgrad*", "retrograd*", "offre inferieure"],
    "open": ["open", "opens", "opened", "opening*", "ouvr*", "ouvert*", "ouverture*"],
    "close": ["close", "closes", "closed", "closing*", "ferm*", "fermeture*"],
    "before": ["before", "prior to", "avant", "earlier"],
    "after": ["after", "afterwards", "apres", "later", "plus tard"],
    "login": ["login"],
    "logout": ["logout"],
    "safe": ["safe", "secure", "securise*", "fiable"],
    "unsafe": ["unsafe", "insecure", "dangerous", "dangereu*", "risky", "arnaque", "scam"],
    "decline": ["declin*", "refus*", "reject*", "rejet*", "fail*", "echou*", "echec"],
    "include": ["includ*", "inclu*", "compris"],
    "express": ["express", "next day", "next-day", "same day", "same-day", "overnight", "lendemain",
                "prioritaire*", "priority"],
    "exclude": ["exclud*", "exclu*", "extra", "supplement*", "en plus"],
}

# Families where only a clash counts (both texts use the family, with different members).
_EXCLUSIVE: dict[str, list[str]] = {
    "first": ["first", "premier*", "premiere*", "1st", "1er", "1re"],
    "last": ["last", "latest", "previous", "dernier*", "derniere*", "precedent*"],
    "next": ["next", "upcoming", "prochain*", "suivant*"],
    "buy": ["buy*", "bought", "purchas*", "achet*", "achat*"],
    "sell": ["sell*", "sold", "vend*", "revend*", "resell*"],
    "public": ["public"],
    "private": ["private", "prive*"],
    "import": ["import*"],
    "export": ["export*"],
    "send": ["send*", "sent", "envoy*", "envoie*"],
    "receive": ["receiv*", "recu", "recue*", "recus", "recevoir", "recoi*", "got"],
}
_EXCLUSIVE_FAMILIES = [("first", "last", "next"), ("buy", "sell"), ("public", "private"),
                       ("import", "export"), ("send", "receive")]
_ANTONYM_PAIRS = {frozenset(p) for p in [
    ("start", "end"), ("start", "renew"), ("end", "renew"), ("add", "remove"), ("create", "remove"),
    ("increase", "decrease"), ("more", "less"), ("upgrade", "downgrade"), ("open", "close"),
    ("before", "after"), ("login", "logout"), ("safe", "unsafe"), ("include", "exclude"),
]}

# Support concepts: a substitution (each side names one the other lacks) rejects; an addition does not.
_TOPICS: dict[str, list[str]] = {
    "order": ["order*", "commande*", "parcel*", "package*", "colis", "purchase*"],
    "subscription": ["subscription*", "membership*", "plan", "plans", "abonnement*", "forfait*", "premium"],
    "password": ["password*", "passcode*"],
    "email": ["email*"],
    "username": ["username*", "user name", "identifiant*", "pseudo*"],
    "address": ["address*", "adresse*", "moved", "demenag*"],
    "card": ["card", "cards", "carte", "cartes", "credit card", "debit card"],
    "giftcard": ["giftcard"],
    "payment": ["pay", "paying", "paid", "payment*", "paie*", "paye*", "payer", "paiement*", "regler",
                "reglement*", "checkout"],
    "charge": ["charg*", "debit*", "prelev*", "billed"],
    "invoice": ["invoice*", "receipt*", "bill", "bills", "factur*", "justificatif*", "vat", "tva"],
    "refund": ["refund*", "reimburs*", "rembours*"],
    "return": ["return*", "retour*", "retourn*", "renvoy*", "renvoi*"],
    "exchange": ["exchang*", "swap*", "echang*"],
    "shipping": ["ship*", "deliver*", "livr*", "expedi*", "postage", "frais de port", "courier*",
                 "transporteur*"],
    "track": ["track*", "suivi*", "suivre", "follow*"],
    "account": ["account*", "compte*", "profil*"],
    "hours": ["hour*", "horaire*", "heure*"],
    "contact": ["contact*", "joindre", "reach", "call", "calling", "appel*", "phone*", "telephon*", "chat",
                "agent*", "human*", "humain*", "conseiller*", "talk to", "speak to", "speak with",
                "parler", "support", "customer service", "service client*"],
    "notification": ["notif*", "alert*"],
    "newsletter": ["newsletter*", "mailing*", "lettre d'information"],
    "twofa": ["twofa", "authenticat*", "authentif*", "verification code", "code de verification"],
    "discount": ["discount*", "coupon*", "promo*", "voucher*", "reduction*", "remise*", "soldes", "sale"],
    "warranty": ["warrant*", "guarant*", "garanti*"],
    "stock": ["stock*", "availab*", "disponib*", "rupture"],
    "size": ["size*", "taille*", "pointure*"],
    "colour": ["colour*", "color*", "couleur*"],
    "price": ["price*", "cost*", "fee", "fees", "prix", "cout*", "tarif*", "frais", "how much",
              "combien"],
    "duration": ["duration", "delai*", "delay*", "late", "retard*"],
    "free": ["free", "gratuit*", "offert*"],
    "international": ["international*", "abroad", "etranger", "outside the country", "overseas",
                      "hors de france"],
    "store": ["store*", "shop", "shops", "magasin*", "boutique*"],
    "pickup": ["pickup", "retrait", "relais"],
    "damage": ["damag*", "broken", "defect*", "faulty", "abime*", "endommag*", "cass*", "defectu*"],
    "wrong": ["wrong", "incorrect*", "erreur*", "mistake*", "error*", "tromp*"],
    "data": ["data", "donnees", "gdpr", "rgpd", "privacy", "confidentialit*"],
    "language": ["language*", "langue*", "english", "anglais", "french", "francais"],
}

# Words that mean the same in a support question: mapped to one token before comparing the wording of
# two same-language texts (the "substitution" check), so swapping one for another is not a near-miss.
_SYNONYMS: dict[str, list[str]] = {
    "modify": ["chang*", "updat*", "modif*", "edit*", "correct*", "corrig*", "fix", "amend*"],
    "item": ["item*", "product*", "article*", "produit*", "thing*", "something", "goods"],
    "obtain": ["download*", "telecharg*", "copy", "copie*", "find", "trouv*", "access*", "receive*",
               "obtain*", "obten*", "recuper*", "see", "view", "voir", "consult*"],
    "hours": ["time", "times", "heure*", "hour*", "horaire*", "when"],
    "customer": ["client*", "customer*"],
    "contact": ["contact*", "joindre", "reach*", "call*", "appel*", "talk*", "speak*", "parler", "chat*"],
    "person": ["person*", "human*", "someone", "somebody", "agent*", "conseiller*", "humain*",
               "quelqu'un", "representative*", "employee*"],
    "delivery": ["ship*", "deliver*", "livr*", "expedi*", "sent", "send*", "envoi*", "envoy*"],
    "order": ["order*", "commande*", "parcel*", "package*", "colis", "shipment*"],
    "remember": ["remember*", "souviens", "souvenir", "rappel*", "forgot*", "oubli*", "lost", "perdu*"],
    "cancel": ["cancel*", "annul*", "resili*", "terminat*", "end", "stop*", "arret*"],
    "account": ["account*", "compte*", "profil*"],
    "quickly": ["quick*", "fast*", "rapid*", "soon*", "vite"],
    "method": ["method*", "way", "ways", "option*", "moyen*", "mode", "modes", "facon*", "solution*"],
    "policy": ["polic*", "politique*", "rule*", "regle*", "condition*", "terms"],
}

_NEGATIONS = [
    "nolonger",
    "not", "no", "never", "none", "nothing", "nobody", "without", "cannot", "unable", "neither", "nor",
    "ne", "n'", "pas", "jamais", "sans", "aucun*", "aucune*", "rien", "non", "nulle part", "impossible",
    # verbs that negate what follows: "avoid getting a refund" is not "get a refund"
    "avoid*", "prevent*", "fail", "failed", "fails", "evit*", "empech*",
]

_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "once": 1, "twice": 2, "double": 2,
    "single": 1, "dozen": 12, "half": 0.5,
    "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "sept": 7, "huit": 8, "neuf": 9, "dix": 10,
    "onze": 11, "douze": 12, "quinze": 15, "vingt": 20, "trente": 30, "quarante": 40, "cinquante": 50,
    "cent": 100, "mille": 1000, "moitie": 0.5, "demi": 0.5,
}
_DATE_WORDS = {
    **{w: f"wd{i}" for i, ws in enumerate([
        ("monday", "mondays", "lundi", "lundis"), ("tuesday", "tuesdays", "mardi", "mardis"),
        ("wednesday", "wednesdays", "mercredi", "mercredis"), ("thursday", "thursdays", "jeudi", "jeudis"),
        ("friday", "fridays", "vendredi", "vendredis"), ("saturday", "saturdays", "samedi", "samedis"),
        ("sunday", "sundays", "dimanche", "dimanches")], 1) for w in ws},
    **{w: f"mo{i}" for i, ws in enumerate([
        ("january", "janvier"), ("february", "fevrier"), ("march", "mars"), ("april", "avril"),
        ("may", "mai"), ("june", "juin"), ("july", "juillet"), ("august", "aout"),
        ("september", "septembre"), ("october", "octobre"), ("november", "novembre"),
        ("december", "decembre")], 1) for w in ws},
    "today": "d0", "aujourd'hui": "d0", "aujourd": "d0", "tonight": "d0n", "ce soir": "d0n",
    "tomorrow": "d+1", "demain": "d+1", "yesterday": "d-1", "hier": "d-1",
    "weekend": "we", "weekends": "we", "holiday": "hol", "holidays": "hol", "ferie": "hol", "feries": "hol",
    "christmas": "xmas", "noel": "xmas", "morning": "am", "matin": "am", "evening": "pm", "soir": "pm",
    "afternoon": "pm2", "apres-midi": "pm2", "night": "night", "nuit": "night",
}
_UNITS = {
    "€": "eur", "eur": "eur", "euro": "eur", "euros": "eur", "$": "usd", "usd": "usd", "dollar": "usd",
    "dollars": "usd", "£": "gbp", "gbp": "gbp", "pound": "gbp", "pounds": "gbp", "chf": "chf",
    "franc": "chf", "francs": "chf",
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour", "heure": "hour",
    "heures": "hour", "min": "minute", "minute": "minute", "minutes": "minute", "day": "day", "days": "day",
    "jour": "day", "jours": "day", "week": "week", "weeks": "week", "semaine": "week", "semaines": "week",
    "month": "month", "months": "month", "mois": "month", "year": "year", "years": "year", "an": "year",
    "ans": "year", "annee": "year", "annees": "year", "%": "pct", "percent": "pct", "pourcent": "pct",
    "kg": "kg", "g": "g", "cm": "cm", "m": "m", "km": "km", "gb": "gb", "go": "gb", "tb": "tb",
    "items": "item", "item": "item", "articles": "item", "article": "item", "times": "times", "fois": "times",
}

# Known names matched in any case, and FR/EN spellings of the same place.
_ALIASES = {
    "belgique": "belgium", "allemagne": "germany", "espagne": "spain", "italie": "italy",
    "suisse": "switzerland", "angleterre": "england", "royaume-uni": "uk", "united kingdom": "uk",
    "etats-unis": "usa", "united states": "usa", "us": "usa", "pays-bas": "netherlands",
    "hollande": "netherlands", "autriche": "austria", "irlande": "ireland", "pologne": "poland",
    "grece": "greece", "suede": "sweden", "danemark": "denmark", "norvege": "norway",
    "londres": "london", "bruxelles": "brussels", "geneve": "geneva", "lisbonne": "lisbon",
    "anvers": "antwerp", "tva": "vat", "rgpd": "gdpr", "canada": "canada", "japon": "japan",
    "chine": "china", "maroc": "morocco", "tunisie": "tunisia", "algerie": "algeria", "bresil": "brazil",
    "mexique": "mexico", "australie": "australia", "inde": "india", "russie": "russia",
}
_KNOWN_NAMES = {
    "paypal", "klarna", "visa", "mastercard", "amex", "american express", "apple pay", "google pay",
    "alma", "stripe", "lydia", "dhl", "ups", "fedex", "tnt", "gls", "dpd", "colissimo", "chronopost",
    "mondial relay", "la poste", "usps", "royal mail", "amazon", "iphone", "ipad", "macbook", "samsung",
    "galaxy", "pixel", "dyson", "nike", "adidas", "apple", "google", "microsoft", "sony", "playstation",
    "xbox", "nintendo", "netflix", "spotify", "ikea", "france", "belgium", "germany", "spain", "italy",
    "switzerland", "uk", "usa", "canada", "netherlands", "luxembourg", "portugal", "austria", "ireland",
    "poland", "greece", "sweden", "denmark", "norway", "japan", "china", "morocco", "tunisia", "algeria",
    "brazil", "mexico", "australia", "india", "russia", "corse", "corsica", "paris", "lyon", "marseille",
    "bordeaux", "nantes", "lille", "toulouse", "nice", "strasbourg", "rennes", "montpellier", "london",
    "brussels", "geneva", "lisbon", "antwerp", "berlin", "madrid", "rome", "europe", "dom-tom",
}
# Capitalised words that are not names (greetings, acronyms of the domain, pronoun I).
_NOT_NAMES = {
    "i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "hi", "hello", "hey", "bonjour", "bonsoir", "salut",
    "merci", "thanks", "thank", "please", "svp", "stp", "faq", "pdf", "sms", "url", "wifi", "wi-fi",
    "vat", "tva", "gdpr", "rgpd", "sav", "cgv", "api", "id", "urgent", "help", "aide", "oui", "yes", "no",
    "non", "dear", "cher", "chère", "madame", "monsieur", "sir", "madam",
}

_STOPWORDS = set("""
a an the of to in on at by for from with and or but if so as is are was were be been being am do does did
done doing have has had having i me my mine we our you your yours he she it its they them their this that
these those there here what which who whom whose when where why how can could would should will shall may
might must get got getting want wanted wants need needs needed like would just also still yet already
please help possible way any some all much many very really too than then there's it's i'm i've i'd
let know tell make made give about into up out again ever hi hello thanks thank able go going
le la les l un une des du de d au aux a et ou mais si donc que qu qui quoi quel quelle quels quelles n c
comment pourquoi quand combien ou est sont suis es etre ete ai as avez avons ont avoir fait faire
je j me m moi mon ma mes tu te t ton ta tes il elle on nous vous votre vos leur leurs ce cet cette ces
se s y en sur dans par pour avec chez puis peux peut pouvez pouvons veux voudrais voudrait souhaite
souhaiterais aimerais besoin possible svp merci bonjour est-ce ca cela toujours deja encore tres
take takes took prend prendre until jusqu there existe exist exists is-it way process able unable
not no never none nothing without cannot can ne pas jamais sans aucun aucune rien non nolonger
est-il est-elle sont-ils y-a-t-il a-t-il t il-y yes oui ok something anything
""".split())

_EN_MARKERS = set("the is are my i you do does how what can where when why your to of for a an with have "
                  "has it this will would please order".split())
_FR_MARKERS = set("le la les est sont mon ma mes je vous comment quel quelle quels quelles ou quand "
                  "pourquoi votre vos pour un une des du de avec puis peux ai j ne pas commande".split())


def _fold(text: str) -> str:
    """Lower-case, strip accents, normalise apostrophes and contractions."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u00a0", " ")
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _CONTRACTIONS.sub(lambda m: _CONTRACTION_MAP[m.group(0)], text)
    text = _NT.sub(" not", text)
    text = _ELISION.sub(lambda m: m.group(1) + "' ", text)
    for pattern, repl in _REWRITE_PATTERNS:
        text = pattern.sub(repl, text)
    return text


_CONTRACTION_MAP = {"can't": "can not", "cannot": "can not", "won't": "will not", "shan't": "shall not",
                    "ain't": "is not", "where's": "where is", "what's": "what is", "how's": "how is",
                    "it's": "it is", "there's": "there is", "that's": "that is", "who's": "who is"}
_CONTRACTIONS = re.compile(r"\b(" + "|".join(re.escape(k) for k in _CONTRACTION_MAP) + r")\b")
_NT = re.compile(r"n't\b")
_ELISION = re.compile(r"\b([ldjmnstc]|qu|jusqu|lorsqu|puisqu)'\s*")
_REWRITE_PATTERNS = [(re.compile(p), r) for p, r in _REWRITES]


def _compile_lexicon(lexicon: dict[str, list[str]]) -> list[tuple[str, re.Pattern]]:
    compiled = []
    for name, entries in lexicon.items():
        alts = []
        for entry in entries:
            if entry.endswith("*"):
                alts.append(re.escape(entry[:-1]) + r"[\w'-]*")
            else:
                alts.append(re.escape(entry) + r"(?![\w])")
        compiled.append((name, re.compile(r"(?<![\w])(?:" + "|".join(alts) + ")")))
    return compiled


_POLAR_RX = _compile_lexicon(_POLAR)
_EXCLUSIVE_RX = _compile_lexicon(_EXCLUSIVE)
_TOPIC_RX = _compile_lexicon(_TOPICS)
_SYNONYM_RX = _compile_lexicon(_SYNONYMS)
_NEGATION_RX = re.compile(r"(?<![\w])(?:" + "|".join(
    re.escape(n[:-1]) + r"\w*" if n.endswith("*") else re.escape(n) + (r"(?![\w])" if n[-1] != "'" else "")
    for n in _NEGATIONS) + ")")
_KNOWN_RX = re.compile(r"(?<![\w])(" + "|".join(
    re.escape(n) for n in sorted(set(_KNOWN_NAMES) | set(_ALIASES), key=len, reverse=True)) + r")(?![\w])")

_TOKEN = re.compile(r"[\w][\w'-]*|[€$£%]")
_RAW_WORD = re.compile(r"[^\W\d_][\w'-]*|\d[\w-]*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n]\s*|[\"«(]\s*)$")
_ORDINAL = r"(?:st|nd|rd|th|er|ere|eme|e|re)"
_NUMBER = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)*)" + _ORDINAL + r"?(?![\w])")
_CODE = re.compile(r"(?<![\w])#?(?!\d+" + _ORDINAL + r"(?![\w]))"
                   r"((?=[\w-]*\d)(?=[\w-]*[a-z])[a-z0-9]+(?:[-_/][a-z0-9]+)*|\d{5,})(?![\w])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"https?://\S+|www\.\S+")
_PHONE = re.compile(r"(?<![\w])(?:\+\d{1,3}[\s.-]?)?(?:\d[\s.-]?){9,12}\d(?![\w])")


@dataclass(frozen=True, slots=True)
class TextFeatures:
    lang: str                      # "en", "fr" or "?"
    numbers: tuple[str, ...]       # canonical numbers in order of appearance
    units: frozenset[tuple[str, str]]  # (number, unit) when a unit follows the number
    dates: tuple[str, ...]         # canonical weekday / month / relative-day tokens, in order
    codes: frozenset[str]          # ids, tracking codes, e-mails, urls
    names: tuple[str, ...]         # canonical proper nouns, in order
    words: frozenset[str]          # every canonical word (to find a name written in lower case)
    negated: bool
    polar: frozenset[str]
    exclusive: frozenset[str]
    topics: frozenset[str]
    content: tuple[str, ...]       # content words (synonyms mapped to their class), in order
    wording: tuple[str, ...]       # content words as written (stemmed), in order


@lru_cache(maxsize=65536)
def features(text: str) -> TextFeatures:
    """Surface features of one text; memoised (a cached question is compared many times)."""
    folded = _fold(text)
    codes = set(_EMAIL.findall(folded)) | set(_URL.findall(folded))
    scrubbed = _URL.sub(" ", _EMAIL.sub(" ", folded))
    for match in _CODE.finditer(scrubbed):
        codes.add(match.group(1).replace("_", "-"))

    tokens = [t.rstrip("'") for t in _TOKEN.findall(scrubbed)]
    numbers: list[str] = []
    units: set[tuple[str, str]] = set()
    for match in _NUMBER.finditer(scrubbed):
        value = _canonical_number(match.group(1))
        if value is None:
            continue
        numbers.append(value)
        after = scrubbed[match.end():].lstrip()
        before = scrubbed[:match.start()].rstrip()
        unit = _unit_at(after) or (_UNITS.get(before[-1]) if before and before[-1] in "€$£" else None)
        if unit:
            units.add((value, unit))
    for i, token in enumerate(tokens):
        if token in _NUMBER_WORDS:
            value = _format_number(_NUMBER_WORDS[token])
            numbers.append(value)
            if i + 1 < len(tokens) and tokens[i + 1] in _UNITS:
                units.add((value, _UNITS[tokens[i + 1]]))
    dates = [_DATE_WORDS[t] for t in tokens if t in _DATE_WORDS]
    if "ce soir" in scrubbed:
        dates.append("d0n")

    names = _names(text, scrubbed)
    words = frozenset(_ALIASES.get(t, t) for t in tokens) | frozenset(names)
    topics = frozenset(name for name, rx in _TOPIC_RX if rx.search(scrubbed))
    wording = tuple(_stem(t) for t in tokens if _is_content(t))
    content = tuple(_class_of(t) or w for t, w in zip((t for t in tokens if _is_content(t)), wording))
    return TextFeatures(
        lang=_language(tokens, text),
        numbers=tuple(numbers),
        units=frozenset(units),
        dates=tuple(dates),
        codes=frozenset(codes),
        names=tuple(names),
        words=words,
        negated=bool(_NEGATION_RX.search(scrubbed)),
        polar=frozenset(name for name, rx in _POLAR_RX if rx.search(scrubbed)),
        exclusive=frozenset(name for name, rx in _EXCLUSIVE_RX if rx.search(scrubbed)),
        topics=topics,
        content=content,
        wording=wording,
    )


def _canonical_number(raw: str) -> str | None:
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", raw):  # 1,000 -> 1000
        raw = raw.replace(",", "")
    raw = raw.replace(",", ".")
    try:
        return _format_number(float(raw))
    except ValueError:
        return raw


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _unit_at(after: str) -> str | None:
    match = re.match(r"[€$£%]|[\w]+", after)
    return _UNITS.get(match.group(0)) if match else None


def _names(raw: str, scrubbed: str) -> list[str]:
    """Proper nouns: known names (any case) and capitalised words not at a sentence start."""
    found: list[tuple[int, str]] = []
    for match in _KNOWN_RX.finditer(scrubbed):
        found.append((match.start(), _ALIASES.get(match.group(1), match.group(1))))
    known_spans = {name for _, name in found}
    for match in _RAW_WORD.finditer(raw):
        word = match.group(0)
        if not word[0].isupper() or _SENTENCE_START.search(raw[:match.start()]):
            continue
        key = _fold(word).strip("'-")
        if key in _NOT_NAMES or key in _DATE_WORDS or (len(key) > 1 and key in _UNITS):
            continue
        key = _ALIASES.get(key, key)
        if key not in known_spans and not any(key in span.split() for span in known_spans):
            found.append((match.start(), key))
    found.sort()
    return [name for _, name in found]


def _is_content(token: str) -> bool:
    return token[0].isalpha() and token not in _STOPWORDS and token not in _NUMBER_WORDS


@lru_cache(maxsize=16384)
def _class_of(token: str) -> str | None:
    for name, rx in _SYNONYM_RX:
        if rx.fullmatch(token):
            return "=" + name
    for name, rx in _TOPIC_RX:
        if rx.fullmatch(token):
            return "#" + name
    for name, rx in _POLAR_RX:
        if rx.fullmatch(token):
            return "#" + name
    return None


def _stem(token: str) -> str:
    for suffix in ("ing", "es", "s", "ed", "e"):
        if len(token) > len(suffix) + 3 and token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def _language(tokens: list[str], raw: str) -> str:
    en = sum(t in _EN_MARKERS for t in tokens)
    fr = sum(t in _FR_MARKERS for t in tokens)
    if any(c in raw for c in "éèêàçùâîôû") or "?" in raw and " ?" in raw:
        fr += 1
    if en > fr:
        return "en"
    if fr > en:
        return "fr"
    return "?"


# ------------------------------------------------------------------------------------------------ guard

def guard(a_text: str, b_text: str) -> str | None:
    """The reason A's answer must not serve B, or None when no guard objects. Symmetric."""
    return compare(features(a_text), features(b_text))


def compare(a: TextFeatures, b: TextFeatures) -> str | None:
    """First objection of the checks below, in order (cheapest and most specific first)."""
    for check in _CHECKS:
        reason = check(a, b)
        if reason:
            return reason
    return None


def objections(a_text: str, b_text: str) -> list[str]:
    """Every guard that objects (diagnostics; `guard` stops at the first)."""
    a, b = features(a_text), features(b_text)
    return [reason for check in _CHECKS if (reason := check(a, b))]


def _check_reference(a: TextFeatures, b: TextFeatures) -> str | None:
    return "reference" if a.codes != b.codes else None


def _check_number(a: TextFeatures, b: TextFeatures) -> str | None:
    if Counter(a.numbers) != Counter(b.numbers):
        big = {n for n in set(a.numbers) ^ set(b.numbers) if len(n) >= 5}
        return "reference" if big else "number"
    if _unit_clash(a.units, b.units) or _unit_clash(b.units, a.units):
        return "number"
    if Counter(a.dates) != Counter(b.dates):
        return "date"
    return None


def _check_entity(a: TextFeatures, b: TextFeatures) -> str | None:
    if any(n not in b.words for n in a.names) or any(n not in a.words for n in b.names):
        return "entity"
    return None


def _check_negation(a: TextFeatures, b: TextFeatures) -> str | None:
    return "negation" if a.negated != b.negated else None


def _check_antonym(a: TextFeatures, b: TextFeatures) -> str | None:
    if a.polar != b.polar:
        diff = a.polar ^ b.polar
        clash = any(frozenset((x, y)) in _ANTONYM_PAIRS for x in diff for y in a.polar | b.polar if x != y)
        return "antonym" if clash else "polarity"
    for family in _EXCLUSIVE_FAMILIES:
        fa, fb = a.exclusive.intersection(family), b.exclusive.intersection(family)
        if fa and fb and fa != fb:
            return "antonym"
    return None


def _check_topic(a: TextFeatures, b: TextFeatures) -> str | None:
    return "topic" if (a.topics - b.topics) and (b.topics - a.topics) else None


def _check_order(a: TextFeatures, b: TextFeatures) -> str | None:
    if _order_differs(a.numbers, b.numbers) or _order_differs(a.names, b.names) \
            or _order_differs(a.dates, b.dates):
        return "word order"
    return None


def _check_wording(a: TextFeatures, b: TextFeatures) -> str | None:
    if a.lang == b.lang and a.lang != "?":
        if len(a.wording) >= 2 and a.wording != b.wording and Counter(a.wording) == Counter(b.wording):
            return "word order"
        return _substitution(a.content, b.content)
    return None


_CHECKS = (_check_reference, _check_number, _check_entity, _check_negation, _check_antonym, _check_topic,
           _check_order, _check_wording)


def _unit_clash(a: frozenset, b: frozenset) -> bool:
    a_units, b_units = dict(a), dict(b)
    return any(n in b_units and b_units[n] != u for n, u in a_units.items())


def _order_differs(a: tuple, b: tuple) -> bool:
    return len(a) >= 2 and Counter(a) == Counter(b) and a != b


def _substitution(a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    """Same wording but one content word swapped for another that is not its synonym."""
    only_a = Counter(a) - Counter(b)
    only_b = Counter(b) - Counter(a)
    shared = sum((Counter(a) & Counter(b)).values())
    if only_a and only_b and shared >= 1 and sum(only_a.values()) <= 2 and sum(only_b.values()) <= 2:
        return "substitution"
    return None


# ------------------------------------------------------------------------------------------------ match

@dataclass(frozen=True, slots=True)
class Match:
    index: int
    text: str
    score: float
    payload: Any


@dataclass(frozen=True, slots=True)
class Candidates:
    """Cached questions of one partition (intent, system prompt): a matrix of unit vectors and the
    parallel texts and payloads. Build it once per partition change, search it per request."""

    vectors: np.ndarray            # (n, d) float32, rows L2-normalised
    texts: Sequence[str]
    payloads: Sequence[Any]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, np.ndarray, Any]]) -> "Candidates":
        rows = list(rows)
        if not rows:
            return cls(np.zeros((0, 0), dtype=np.float32), [], [])
        texts, vectors, payloads = zip(*rows)
        return cls(np.ascontiguousarray(np.stack(vectors), dtype=np.float32), list(texts), list(payloads))

    def __len__(self) -> int:
        return len(self.texts)


def find_match(query_text: str, query_vec: np.ndarray,
               candidates: Candidates | Sequence[tuple[str, np.ndarray, Any]],
               *, threshold: float = DEFAULT_THRESHOLD, max_checks: int = 8) -> Match | None:
    """The most similar candidate at or above `threshold` that passes every guard, or None.

    One matrix-vector product; guards run only on the (at most `max_checks`) best candidates above the
    threshold, best first."""
    if not isinstance(candidates, Candidates):
        candidates = Candidates.from_rows(candidates)
    if len(candidates) == 0 or query_vec is None:
        return None
    scores = candidates.vectors @ np.asarray(query_vec, dtype=np.float32)
    above = np.flatnonzero(scores >= threshold)
    if above.size == 0:
        return None
    if above.size > max_checks:
        above = above[np.argpartition(-scores[above], max_checks - 1)[:max_checks]]
    query = features(query_text)
    for index in above[np.argsort(-scores[above], kind="stable")]:
        text = candidates.texts[index]
        if compare(query, features(text)) is None:
            return Match(int(index), text, float(scores[index]), candidates.payloads[index])
    return None


def contains_personal_data(text: str) -> bool:
    """True when the text carries an e-mail, phone number, url, or an id/code (letters with digits,
    or five digits or more): such questions are cached only for intents with allow_personal_data."""
    folded = _fold(text)
    return bool(_EMAIL.search(folded) or _PHONE.search(folded) or _URL.search(folded)
                or _CODE.search(_EMAIL.sub(" ", folded)))
