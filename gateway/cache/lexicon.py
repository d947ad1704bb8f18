"""Word lists of the semantic cache's guards (gateway/cache/semantic.py), French and English.

Entries are matched on lower-case, accent-folded text. "word" matches the whole word; "stem*" matches any
word starting with the stem; entries may span several words. Grow them from real traffic: each list says
which near-misses it catches.
"""

REWRITES = [  # idioms and multi-word terms -> one canonical token, before anything else
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
POLAR: dict[str, list[str]] = {
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
EXCLUSIVE: dict[str, list[str]] = {
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
EXCLUSIVE_FAMILIES = [("first", "last", "next"), ("buy", "sell"), ("public", "private"),
                       ("import", "export"), ("send", "receive")]
ANTONYM_PAIRS = {frozenset(p) for p in [
    ("start", "end"), ("start", "renew"), ("end", "renew"), ("add", "remove"), ("create", "remove"),
    ("increase", "decrease"), ("more", "less"), ("upgrade", "downgrade"), ("open", "close"),
    ("before", "after"), ("login", "logout"), ("safe", "unsafe"), ("include", "exclude"),
]}

# Support concepts: a substitution (each side names one the other lacks) rejects; an addition does not.
TOPICS: dict[str, list[str]] = {
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
SYNONYMS: dict[str, list[str]] = {
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

NEGATIONS = [
    "nolonger",
    "not", "no", "never", "none", "nothing", "nobody", "without", "cannot", "unable", "neither", "nor",
    "ne", "n'", "pas", "jamais", "sans", "aucun*", "aucune*", "rien", "non", "nulle part", "impossible",
    # verbs that negate what follows: "avoid getting a refund" is not "get a refund"
    "avoid*", "prevent*", "fail", "failed", "fails", "evit*", "empech*",
]

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "once": 1, "twice": 2, "double": 2,
    "single": 1, "dozen": 12, "half": 0.5,
    "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "sept": 7, "huit": 8, "neuf": 9, "dix": 10,
    "onze": 11, "douze": 12, "quinze": 15, "vingt": 20, "trente": 30, "quarante": 40, "cinquante": 50,
    "cent": 100, "mille": 1000, "moitie": 0.5, "demi": 0.5,
}
DATE_WORDS = {
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
UNITS = {
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
ALIASES = {
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
KNOWN_NAMES = {
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
NOT_NAMES = {
    "i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "hi", "hello", "hey", "bonjour", "bonsoir", "salut",
    "merci", "thanks", "thank", "please", "svp", "stp", "faq", "pdf", "sms", "url", "wifi", "wi-fi",
    "vat", "tva", "gdpr", "rgpd", "sav", "cgv", "api", "id", "urgent", "help", "aide", "oui", "yes", "no",
    "non", "dear", "cher", "chère", "madame", "monsieur", "sir", "madam",
}

STOPWORDS = set("""
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

EN_MARKERS = set("the is are my i you do does how what can where when why your to of for a an with have "
                  "has it this will would please order".split())
FR_MARKERS = set("le la les est sont mon ma mes je vous comment quel quelle quels quelles ou quand "
                  "pourquoi votre vos pour un une des du de avec puis peux ai j ne pas commande".split())
