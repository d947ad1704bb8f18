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
import re

__all__ = ["FORM_NAMES", "FORM_REASON_LABELS", "form_features"]


def _split_top(pattern: str) -> list[str]:
    """Top-level alternatives of a regex (not inside a group or a class)."""
    parts, depth, in_class, start, i = [], 0, False, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def rx(pattern: str, flags: int = 0) -> re.Pattern:
    """Compile, hoisting a shared leading \\b out of the alternatives: `\\b(?:a|b)` only tries the branches at
    word boundaries, several times faster than `\\ba|\\bb` on long text (the bounded branches are tried first)."""
    parts = _split_top(pattern)
    bounded = [p[2:] for p in parts if p.startswith("\\b")]
    others = [p for p in parts if not p.startswith("\\b")]
    if len(bounded) > 1:
        pattern = "|".join([r"\b(?:" + "|".join(bounded) + ")"] + others)
    return re.compile(pattern, flags)


_rx = rx

# --- structure (original case) ----------------------------------------------------------------------------

_ID_NUMBER = _rx(r"#\s?\d{3,}|\b\d{5,}\b|\b[A-Z]{2,}[-\d]{2,}\w*|\b\d{4}-\d{3,}\b")
_QUANTITY = _rx(r"(?<![\d#\w-])\d{1,4}(?:[ ,.]\d{3})*(?:[.,]\d+)?(?![\d-])")
_SENTENCE = _rx(r"[.!?…](?:\s|$)")
# A date or a day of the month: 31st, le 31, 12/03, 2024-03-05, month and weekday names (lower case).
_DATE = _rx(
    r"\b\d{1,2}(?:st|nd|rd|th)\b|\ble \d{1,2}\b|\b\d{1,2}/\d{1,2}\b|\b\d{4}-\d{2}-\d{2}\b|\bleap\b|\bbissextile"
    r"|\b(?:january|february|march|april|may|june|july|august|september|october|november|december|janvier|février"
    r"|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre|monday|tuesday|wednesday|thursday"
    r"|friday|saturday|sunday|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|christmas|noël|bank holiday"
    r"|jour férié|business days|jours ouvrés|jours ouvrables)\b"
)

# --- the form of the task (lower case) ---------------------------------------------------------------------

# Transform a text that is given: the answer is in the request.
_TRANSFORM = _rx(
    r"^(?:please |can you |could you |pouvez-vous |peux-tu |merci de )?(?:translate|traduis|traduire|tradui[st]"
    r"|format|formate|mets? (?:ce|cette|ces|en forme|au propre)|put (?:this|these)|turn this|rewrite|réécris"
    r"|reformule|make (?:this|a|it)|fais une liste|make a list|list\b|liste\b|sort\b|trie\b|range\b|order these"
    r"|count\b|compte (?:les|le nombre)|spell|épelle|corrige"
    r"|correct (?:the|this)|summari[sz]e (?:this|in one)|résume (?:en|ce)|convert|convertis|round|arrondis"
    r"|print|affiche|copy|copie|write ['\"‘’«]|écris ['\"«])"
    r"|\b(?:into|in|to|en) (?:french|english|german|spanish|italian|anglais|allemand|espagnol|italien)\b"
    r"|\bin one sentence|\ben une phrase|\bbullet|\bà puces|\bin (?:a )?(?:table|column|code block|bold)\b"
    r"|\ben colonne|\bdans un bloc",
    re.M,
)
# Look up one fact about the shop, a word or the world.
_LOOKUP = _rx(
    r"^(?:hi,? |hello,? |bonjour,? )?(?:do you (?:sell|ship|deliver|have|accept|offer|charge)|does (?:the|it|your)"
    r"|is (?:there|your)|are (?:you|your) |can i (?:pay|get|add|choose|download|use|change)|where (?:is|are|do|can) "
    r"|what(?:'s| is| are) your"
    r"|what (?:does|do) .{1,30} (?:mean|stand for)|what time|when (?:do|does|will|is) |how long does"
    r"|how (?:do|can) i (?:reset|change|turn off|cancel|unsubscribe|download|track|log)|how many (?:days|items|words)"
    r"|\w+-vous |(?:où|ou) (?:est|en est|trouver|sont)|quel(?:le)? est votre|que (?:signifie|veut dire)"
    r"|comment (?:dit-on|réinitialiser|changer|désactiver|suivre)|puis-je )",
    re.M,
)
# One operation on two numbers: "what's 20% of 80", "7 times 8", "add 19.99 and 5.01".
_ARITH = _rx(
    r"\b\d+(?:[.,]\d+)?\s*(?:%|percent|pour ?cent)\s*(?:of|de)\s*\d|\b\d+(?:[.,]\d+)?\s*(?:[x×*+/-]|times|fois|plus"
    r"|minus|moins|divided by|divisé par)\s*\d|\b(?:add|additionne|subtract|multiply|calcule[sz]?|calculate)\b"
)
# A question that asks for a decision on a case: who is responsible, can they refuse, should we, is it fair.
_JUDGEMENT = _rx(
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
_COMPLICATION = _rx(
    r"\bbut\b|\beven though|\balthough|\bwhile\b|\bsince\b|\bbecause\b|\balready|\bstill\b|\bnever\b|\bby mistake"
    r"|\bwithout (?:asking|saying|paying)|\binstead of|\bmais\b|\balors que|\bpuisque|\bparce que|\bdéjà|\bsans (?:rien"
    r"|vérifier|mentionner|demander)|\bau lieu d|\bpar erreur|\bmême si|\bpendant (?:mes|que)|\bthen\b|\bpuis\b"
    r"|\bnow\b|\bmaintenant\b"
)
# Several asks in one message: "..., and what/how/who...", "et que/quel...".
_MULTI_ASK = _rx(
    r"\b(?:and|or) (?:what|how|who|which|when|why|is|are|does|do|can|should|if|whose|where)\b"
    r"|\bet (?:que|quel|quelle|quels|comment|qui|si|est-ce|combien|dans quel|pour quel)\b|\bin order\b|\bdans quel ordre"
)
# Asks for a quantity that has to be worked out.
_ASK_AMOUNT = _rx(
    r"\bhow (?:much|many|long|far|big)|\bwhat (?:do|should|will) (?:i|we) (?:pay|owe|get)|\bwhat should i have"
    r"|\bwhich is (?:cheaper|better|the better)|\bwhat's the (?:due|minimum|latest|real)|\bwhen exactly|\bon which date"
    r"|\bminimum number|\bcombien\b|\bquel (?:montant|écart)|\bquelle (?:date|part)|\bà quelle date|\bquand exactement"
    r"|\bà combien|\bdans combien"
)
# Legal, medical, finance and technical vocabulary (weak on their own).
_LEGAL = _rx(
    r"\bgdpr\b|\brgpd\b|\blaws?\b|\blegal|\blégal|\bloi\b|\bjuridique|\bclauses?\b|\bcontracts?\b|\bcontrats?\b"
    r"|\bliab|\bresponsab|\benforce|\bopposable|\bjurisdiction|\bcourts?\b|\btribunal|\blawyer|\bavocat"
    r"|\bwarrant|\bguarantee|\bgarantie|\bwithdrawal|\brétractation|\bdiscriminat|\bterms and conditions"
    r"|\bconditions générales|\bforce majeure|\bdispute|\blitige|\bfraud|\bfraude|\bdata|\bdonnées|\binsurance"
    r"|\bassurance|\bpolicy\b|\bpolitique de"
)
_MEDICAL = _rx(
    r"\ballerg|\bpregnan|\benceinte|\bbreastfeed|\ballait|\bmedic|\bmédic|\bdrugs?\b|\bdoses?\b|\bdosage|\bsymptom"
    r"|\bsymptôme|\bparac[eé]tamol|\bibuprof|\baspirin|\bantibio|\bpainkiller|\banti-douleur|\bswallow|\bavalé"
    r"|\bvet\b|\bvéto|\bdoctor|\bmédecin|\bpharmac|\bbaby|\bbébé|\binfant|\bnourrisson|\bnewborn|\bnut\b|\bpeanut"
)
_FINANCE = _rx(
    r"\bvat\b|\btva\b|\bgst\b|\btax|\btaxe|\bimpôt|\bfiscal|\binterest|\bintérêt|\bapr\b|\binflation|\bmargin"
    r"|\bmarge|\bloan|\bprêt\b|\bcrédit|\bcredit|\binvest|\bplacer|\bsavings|\bépargne|\bmortgage|\binvoice|\bfacture"
    r"|\brefund|\brembours|\bcustoms|\bdouane"
)
_TECH = _rx(
    r"\bsql\b|\bapi\b|\bpython|\bjava|\bscript|\bfunction|\bfonction|\bcode\b|\bbug|\berror|\berreur|\blogs?\b"
    r"|\bmemory|\bmémoire|\bserver|\bserveur|\bdatabase|\bbase de données|\bcdn\b|\bwebhook|\bidempot|\bload balancer"
    r"|\bworkers?\b|\bthreads?\b|\bcomplexit|\balgorithm|\balgorithme|\brecursi|\brécursi|\bunit tests?|\btests unitaires"
)
_MATHS = _rx(
    r"\bprove\b|\bdémontre|\bprime|\bpremiers?\b|\bprobab|\bstandard deviation|\bécart-type|\bdistribution"
    r"|\bhow many ways|\bde combien de façons|\bequation|\béquation|\bsolve|\brésous|\bintegral|\bderivative"
    r"|\bdérivée|\bdivisible|\bsum of|\bsomme de"
)
_ROUTINE = _rx(
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
}


def _count(pattern: re.Pattern, text: str) -> int:
    return sum(1 for _ in pattern.finditer(text))


def form_features(text: str, lower: str, earlier: list[str]) -> tuple[list[float], dict[str, int]]:
    """Values (order of FORM_NAMES) and the counts behind them, for the scanned last user text (original and
    lower case) and the earlier turns (already cut)."""
    stripped = lower.strip()
    ids = _count(_ID_NUMBER, text)
    amounts = max(0, _count(_QUANTITY, text) - ids)
    ask_amount = _count(_ASK_AMOUNT, lower)
    judgement = _count(_JUDGEMENT, lower)
    dates = _count(_DATE, lower)
    sentences = max(1, _count(_SENTENCE, text))
    c = {
        "sentences": sentences,
        "maths_question": _count(_MATHS, lower),
        "transform": _count(_TRANSFORM, stripped),
        "lookup": _count(_LOOKUP, stripped),
        "arithmetic": _count(_ARITH, lower),
        "judgement": judgement,
        "complications": _count(_COMPLICATION, lower),
        "multi_ask": _count(_MULTI_ASK, lower),
        "ask_amount": ask_amount,
        "amounts": amounts,
        "amount_from_numbers": ask_amount * max(0, amounts - 1),
        "dates": dates,
        "date_reasoning": dates * (ask_amount + judgement),
        "legal_topic": _count(_LEGAL, lower),
        "medical_topic": _count(_MEDICAL, lower),
        "finance_topic": _count(_FINANCE, lower),
        "technical_topic": _count(_TECH, lower),
        "routine": _count(_ROUTINE, lower),
        "context_judgement": sum(_count(_JUDGEMENT, p.lower()) for p in earlier),
    }
    words = lower.count(" ") + 1 if stripped else 0
    log1p = math.log1p
    values = [log1p(words / sentences)] + [log1p(c[name]) for name in FORM_NAMES[1:]]
    return values, c
