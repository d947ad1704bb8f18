"""The form of the task a chat request asks for: a group of difficulty features that read structure, not topic.

Easy forms: transform a text that is given (translate, format, sort, spell, round...), look one fact up (do you
sell, what does X mean, where is my order), one bare arithmetic operation. Hard forms: a question that asks for
judgement on a case (who is responsible, can they refuse, should we, is it fair, which is better), a situation
with complications (but, already, even though), several asks in one, an amount or a date to work out from
several given numbers, a maths question. Topic words (legal, medical, finance, technical) are counted broadly
here too, so that the model can learn them against prompts that share them and differ in difficulty.
"""

from __future__ import annotations

import math

__all__ = ["FORM_CASED", "FORM_NAMES", "FORM_PATTERNS", "FORM_REASON_LABELS", "form_features"]


# --- structure (original case) ----------------------------------------------------------------------------

_ID_NUMBER = r"#\s?\d{3,}|\b\d{5,}\b|\b[A-Z]{2,}[-\d]{2,}\w*|\b\d{4}-\d{3,}\b"
_QUANTITY = r"(?<![\d#\w-])\d{1,4}(?:[ ,.]\d{3})*(?:[.,]\d+)?(?![\d-])"
_SENTENCE = r"[.!?…](?:\s|$)"
# A date or a day of the month: 31st, le 31, 12/03, 2024-03-05, month and weekday names (lower case).
_DATE = (
    r"\b\d{1,2}(?:st|nd|rd|th)\b|\ble \d{1,2}\b|\b\d{1,2}/\d{1,2}\b|\b\d{4}-\d{2}-\d{2}\b|\bleap\b|\bbissextile"
    r"|\b(?:january|february|march|april|may|june|july|august|september|october|november|december|janvier|février"
    r"|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre|monday|tuesday|wednesday|thursday"
    r"|friday|saturday|sunday|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|christmas|noël|bank holiday"
    r"|jour férié|business days|jours ouvrés|jours ouvrables)\b"
)

# --- the form of the task (lower case) ---------------------------------------------------------------------

# Transform a text that is given: the answer is in the request.
_TRANSFORM = (
    r"^(?:please |can you |could you |pouvez-vous |peux-tu |merci de )?(?:translate|traduis|traduire|tradui[st]"
    r"|format|formate|mets? (?:ce|cette|ces|en forme|au propre)|put (?:this|these)|turn this|rewrite|réécris"
    r"|reformule|make (?:this|a|it)|fais une liste|make a list|list\b|liste\b|sort\b|trie\b|range\b|order these"
    r"|count\b|compte (?:les|le nombre)|spell|épelle|corrige"
    r"|correct (?:the|this)|summari[sz]e (?:this|in one)|résume (?:en|ce)|convert|convertis|round|arrondis"
    r"|print|affiche|copy|copie|write ['\"‘’«]|écris ['\"«])"
    r"|\b(?:into|in|to|en) (?:french|english|german|spanish|italian|anglais|allemand|espagnol|italien)\b"
    r"|\bin one sentence|\ben une phrase|\bbullet|\bà puces|\bin (?:a )?(?:table|column|code block|bold)\b"
    r"|\ben colonne|\bdans un bloc"
)
# Look up one fact about the shop, a word or the world.
_LOOKUP = (
    r"^(?:hi,? |hello,? |bonjour,? )?(?:do you (?:sell|ship|deliver|have|accept|offer|charge)|does (?:the|it|your)"
    r"|is (?:there|your)|are (?:you|your) |can i (?:pay|get|add|choose|download|use|change)|where (?:is|are|do|can) "
    r"|what(?:'s| is| are) your"
    r"|what (?:does|do) .{1,30} (?:mean|stand for)|what time|when (?:do|does|will|is) |how long does"
    r"|how (?:do|can) i (?:reset|change|turn off|cancel|unsubscribe|download|track|log)|how many (?:days|items|words)"
    r"|\w+-vous |(?:où|ou) (?:est|en est|trouver|sont)|quel(?:le)? est votre|que (?:signifie|veut dire)"
    r"|comment (?:dit-on|réinitialiser|changer|désactiver|suivre)|puis-je )"
)
# One operation on two numbers: "what's 20% of 80", "7 times 8", "add 19.99 and 5.01".
_ARITH = (
    r"\b\d+(?:[.,]\d+)?\s*(?:%|percent|pour ?cent)\s*(?:of|de)\s*\d|\b\d+(?:[.,]\d+)?\s*(?:[x×*+/-]|times|fois|plus"
    r"|minus|moins|divided by|divisé par)\s*\d|\b(?:add|additionne|subtract|multiply|calcule[sz]?|calculate)\b"
)
# A question that asks for a decision on a case: who is responsible, can they refuse, should we, is it fair.
_JUDGEMENT = (
    r"\bwho(?:'s| is)? (?:responsible|liable|right|pays|should|must|do i go|absorbs?|to blame)|\bwhose\b|\bon us\b"
    r"|\bis (?:that|it|this) (?:fair|legal|ok|okay|allowed|fraud|discrimination|ethical|acceptable|on me|worth"
    r"|true|my fault|our)|\bcan (?:they|we|i|you|he|she) (?:really|still|legally|rely|ask|claim|keep|charge|refuse"
    r"|give|undo|cancel a|be|get that|exige)|\b(?:do|must) (?:i|we) (?:have to|really)|\bshould (?:we|i)\b"
    r"|\b(?:have|has) the right|\bentitled|\bwhat do (?:we|i) (?:risk|do)|\bwhat would you|\bwhich (?:would|one)"
    r"|\bwhat (?:should|happens|would change)|\bhow should (?:we|i)|\bbetter (?:to|deal|value)|\bis it better"
    r"|\bwhat could be|\bhow (?:could|would) (?:i|you|we)|\bwho do i"
    r"|\bà qui\b|\bqui (?:paie|est responsable|a raison|doit)|\bc'est (?:à moi|à qui|ma responsabilité)"
    r"|\b(?:a-t-on|ont-ils|ai-je|j'ai|avons-nous|ils ont) (?:encore )?(?:le droit|raison|un recours)"
    r"|\b(?:sommes-nous|suis-je) (?:obligés?|vraiment|tenus?)|\bje suis vraiment|\bpeut-(?:il|elle|on) (?:vraiment|invoquer"
    r"|exiger|annuler|transférer|réclamer)|\bpeut-on\b|\bfaut-il\b|\bvaut-il mieux|\bque (?:risque|doit-on|faire)"
    r"|\bqu'est-ce qui|\blequel\b|\best-ce (?:acceptable|légal|juste|possible)|\bquels recours"
    r"|\bcomment (?:gérer|réagir|corriger|prioriser|le vérifier)|\bpropose\b|\bweigh"
)
# A situation with complications: the answer depends on how its facts interact.
_COMPLICATION = (
    r"\bbut\b|\beven though|\balthough|\bwhile\b|\bsince\b|\bbecause\b|\balready|\bstill\b|\bnever\b|\bby mistake"
    r"|\bwithout (?:asking|saying|paying)|\binstead of|\bmais\b|\balors que|\bpuisque|\bparce que|\bdéjà|\bsans (?:rien"
    r"|vérifier|mentionner|demander)|\bau lieu d|\bpar erreur|\bmême si|\bpendant (?:mes|que)|\bthen\b|\bpuis\b"
    r"|\bnow\b|\bmaintenant\b"
)
# Several asks in one message: "..., and what/how/who...", "et que/quel...".
_MULTI_ASK = (
    r"\b(?:and|or) (?:what|how|who|which|when|why|is|are|does|do|can|should|if|whose|where)\b"
    r"|\bet (?:que|quel|quelle|quels|comment|qui|si|est-ce|combien|dans quel|pour quel)\b|\bin order\b|\bdans quel ordre"
)
# Asks for a quantity that has to be worked out.
_ASK_AMOUNT = (
    r"\bhow (?:much|many|long|far|big)|\bwhat (?:do|should|will) (?:i|we) (?:pay|owe|get)|\bwhat should i have"
    r"|\bwhich is (?:cheaper|better|the better)|\bwhat's the (?:due|minimum|latest|real)|\bwhen exactly|\bon which date"
    r"|\bminimum number|\bcombien\b|\bquel (?:montant|écart)|\bquelle (?:date|part)|\bà quelle date|\bquand exactement"
    r"|\bà combien|\bdans combien"
)
# Legal, medical, finance and technical vocabulary (weak on their own).
_LEGAL = (
    r"\bgdpr\b|\brgpd\b|\blaws?\b|\blegal|\blégal|\bloi\b|\bjuridique|\bclauses?\b|\bcontracts?\b|\bcontrats?\b"
    r"|\bliab|\bresponsab|\benforce|\bopposable|\bjurisdiction|\bcourts?\b|\btribunal|\blawyer|\bavocat"
    r"|\bwarrant|\bguarantee|\bgarantie|\bwithdrawal|\brétractation|\bdiscriminat|\bterms and conditions"
    r"|\bconditions générales|\bforce majeure|\bdispute|\blitige|\bfraud|\bfraude|\bdata|\bdonnées|\binsurance"
    r"|\bassurance|\bpolicy\b|\bpolitique de"
)
_MEDICAL = (
    r"\ballerg|\bpregnan|\benceinte|\bbreastfeed|\ballait|\bmedic|\bmédic|\bdrugs?\b|\bdoses?\b|\bdosage|\bsymptom"
    r"|\bsymptôme|\bparac[eé]tamol|\bibuprof|\baspirin|\bantibio|\bpainkiller|\banti-douleur|\bswallow|\bavalé"
    r"|\bvet\b|\bvéto|\bdoctor|\bmédecin|\bpharmac|\bbaby|\bbébé|\binfant|\bnourrisson|\bnewborn|\bnut\b|\bpeanut"
)
_FINANCE = (
    r"\bvat\b|\btva\b|\bgst\b|\btax|\btaxe|\bimpôt|\bfiscal|\binterest|\bintérêt|\bapr\b|\binflation|\bmargin"
    r"|\bmarge|\bloan|\bprêt\b|\bcrédit|\bcredit|\binvest|\bplacer|\bsavings|\bépargne|\bmortgage|\binvoice|\bfacture"
    r"|\brefund|\brembours|\bcustoms|\bdouane"
)
_TECH = (
    r"\bsql\b|\bapi\b|\bpython|\bjava|\bscript|\bfunction|\bfonction|\bcode\b|\bbug|\berror|\berreur|\blogs?\b"
    r"|\bmemory|\bmémoire|\bserver|\bserveur|\bdatabase|\bbase de données|\bcdn\b|\bwebhook|\bidempot|\bload balancer"
    r"|\bworkers?\b|\bthreads?\b|\bcomplexit|\balgorithm|\balgorithme|\brecursi|\brécursi|\bunit tests?|\btests unitaires"
)
_MATHS = (
    r"\bprove\b|\bdémontre|\bprime|\bpremiers?\b|\bprobab|\bstandard deviation|\bécart-type|\bdistribution"
    r"|\bhow many ways|\bde combien de façons|\bequation|\béquation|\bsolve|\brésous|\bintegral|\bderivative"
    r"|\bdérivée|\bdivisible|\bsum of|\bsomme de"
)
_ROUTINE = (
    r"\border (?:number|#)|\bmy order|\bma commande|\btracking|\bsuivi\b|\bpassword|\bmot de passe|\bnewsletter"
    r"|\bin stock|\ben stock|\bsize\b|\btaille\b|\bopening hours|\bhoraires|\bresend|\brenvoyer"
)
FORM_NAMES: tuple[str, ...] = (
    "words_per_sentence",
    "sentences",
    "maths_question",
    "transform",
    "lookup",
    "arithmetic",
    "judgement",
    "complications",
    "multi_ask",
    "ask_amount",
    "amounts",
    "amount_from_numbers",
    "dates",
    "date_reasoning",
    "legal_topic",
    "medical_topic",
    "finance_topic",
    "technical_topic",
    "routine",
    "context_judgement",
    "we_speaker",
    "third_parties",
    "alternatives",
    "situation_then_question",
)

FORM_REASON_LABELS = {
    "maths_question": "maths question",
    "transform": "transforms a given text",
    "lookup": "looks up one fact",
    "arithmetic": "one arithmetic operation",
    "judgement": "asks for judgement on a case",
    "complications": "situation with complications",
    "multi_ask": "several questions in one",
    "ask_amount": "asks for an amount",
    "amounts": "numbers",
    "amount_from_numbers": "amount to work out from numbers",
    "dates": "dates",
    "date_reasoning": "date arithmetic",
    "legal_topic": "legal topic",
    "medical_topic": "medical topic",
    "finance_topic": "finance/tax topic",
    "technical_topic": "technical topic",
    "routine": "routine support wording",
    "context_judgement": "judgement asked in earlier turns",
    "we_speaker": "asked by the business (we, our)",
    "third_parties": "other people involved",
    "alternatives": "a choice to make",
    "situation_then_question": "a situation, then a question",
}


# Who speaks and about whom: a business asking about its own policy ("we", "our", "on"), people other than the
# writer and the shop (a customer, the courier, my mother), and a choice to make ("or not", "X or Y?").
_WE = r"\b(?:we|we're|we've|our|ours|us|nous|notre|nos|on)\b"
_THIRD_PARTY = (
    r"\b(?:customers?|clients?|clientes?|couriers?|drivers?|livreurs?|carriers?|transporteurs?|sellers?|vendeurs?"
    r"|landlord|propriétaire|neighbou?rs?|voisine?s?|employees?|salariée?s?|colleagues?|collègues?|suppliers?"
    r"|fournisseurs?|he|she|they|him|her|his|their|il|elle|ils|elles|lui|leur|leurs|mother|father|mum|mom|dad|mère"
    r"|père|son|daughter|fils|fille|husband|wife|mari|femme|ex-wife|ex-husband|partner|someone|quelqu'un|bank"
    r"|banque|insurer|assureur|airline|influencer|influenceur|user|users|utilisateurs?)\b"
)
_ALTERNATIVE = (
    r"\bor not\b|\bou pas\b|\bou non\b|\bor (?:should|do|can|must|is|would)\b|\bou (?:faut-il|doit-on|peut-on|est-ce)"
    r"|\bor (?:just|only)\b|\bou (?:seulement|juste)\b|\bwhether\b|\bsi oui\b|\bif so\b"
)

# Read by features.PATTERNS in the same pass as the vocabulary; names prefixed "form_".
FORM_PATTERNS = {
    "form_ids": _ID_NUMBER,
    "form_quantities": _QUANTITY,
    "form_sentences": _SENTENCE,
    "form_dates": _DATE,
    "form_transform": _TRANSFORM,
    "form_lookup": _LOOKUP,
    "form_arithmetic": _ARITH,
    "form_judgement": _JUDGEMENT,
    "form_complications": _COMPLICATION,
    "form_multi_ask": _MULTI_ASK,
    "form_ask_amount": _ASK_AMOUNT,
    "form_legal": _LEGAL,
    "form_medical": _MEDICAL,
    "form_finance": _FINANCE,
    "form_technical": _TECH,
    "form_maths": _MATHS,
    "form_routine": _ROUTINE,
    "form_we": _WE,
    "form_third_party": _THIRD_PARTY,
    "form_alternative": _ALTERNATIVE,
}
FORM_CASED = frozenset({"form_ids", "form_quantities", "form_sentences"})


def form_features(
    found: dict[str, int], words: int, context_judgement: int, questions: int, ends_with_question: bool
) -> tuple[list[float], dict[str, int]]:
    """Values (order of FORM_NAMES) and the counts behind them, from the FORM_PATTERNS counts of the last user
    text, its number of words and the judgement asks of the earlier turns."""
    ids = found["form_ids"]
    amounts = max(0, found["form_quantities"] - ids)
    ask_amount = found["form_ask_amount"]
    judgement = found["form_judgement"]
    dates = found["form_dates"]
    sentences = max(1, found["form_sentences"])
    c = {
        "sentences": sentences,
        "maths_question": found["form_maths"],
        "transform": found["form_transform"],
        "lookup": found["form_lookup"],
        "arithmetic": found["form_arithmetic"],
        "judgement": judgement,
        "complications": found["form_complications"],
        "multi_ask": found["form_multi_ask"],
        "ask_amount": ask_amount,
        "amounts": amounts,
        "amount_from_numbers": ask_amount * max(0, amounts - 1),
        "dates": dates,
        "date_reasoning": dates * (ask_amount + judgement),
        "legal_topic": found["form_legal"],
        "medical_topic": found["form_medical"],
        "finance_topic": found["form_finance"],
        "technical_topic": found["form_technical"],
        "routine": found["form_routine"],
        "context_judgement": context_judgement,
        "we_speaker": found["form_we"],
        "third_parties": found["form_third_party"],
        "alternatives": found["form_alternative"],
        # sentences that state facts before the closing question
        "situation_then_question": max(0, sentences - questions) if ends_with_question else 0,
    }
    log1p = math.log1p
    values = [log1p(words / sentences)] + [log1p(c[name]) for name in FORM_NAMES[1:]]
    return values, c
