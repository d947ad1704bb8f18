"""Difficulty of a chat request: a score in [0, 1] and the reasons behind it.

The router sends a request to the heavy tier when `score >= threshold` (see `tier_for`). The score comes
from a small logistic regression over two kinds of input:

- features of the conversation, computed with precompiled regexes on the last user message (code, stack
  traces, maths notation, reasoning requests, constraints, legal/medical/finance/technical vocabulary,
  routine support vocabulary, length, language...) and on the earlier turns (hard vocabulary in context);
- the request's sentence embedding (512-d, computed once per request by `gateway.embeddings`, of the last
  user message), when there is one.

Two models are shipped in one JSON weights file (`difficulty_model.json`, written by
`gateway.routing.train`): features ‖ embedding (`method="model"`) and features only (`method="features"`,
used when the embedding model is absent or `use_embedding` is off). Each model's bias was shifted at
training time so that 0.5 is its own calibrated threshold: one threshold in config serves both.

Pure CPU, no I/O per call: the weights are read once in `DifficultyScorer.load`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import orjson
from pydantic import BaseModel

from gateway.bounds import clip
from gateway.request import content_text, last_user_text

__all__ = [
    "DEFAULT_MODEL_PATH",
    "FEATURE_NAMES",
    "Difficulty",
    "DifficultyScorer",
    "DifficultySettings",
    "conversation_text",
    "extract_features",
    "last_user_text",
    "tier_for",
]

DEFAULT_MODEL_PATH = str(Path(__file__).with_name("difficulty_model.json"))

# Long pastes are scanned partly (bounds.clip): the head and the tail carry the question and the trace.
_CONTEXT_MESSAGES = 4
_CONTEXT_CHARS = 1500


class DifficultySettings(BaseModel):
    model_path: str | None = DEFAULT_MODEL_PATH  # None: the shipped weights
    use_embedding: bool = True


@dataclass(frozen=True)
class Difficulty:
    score: float  # in [0, 1]; heavy when score >= threshold
    reasons: tuple[str, ...]
    method: Literal["model", "features"]


def tier_for(score: float, threshold: float) -> Literal["light", "heavy"]:
    """The tier a score goes to: heavy at or above the threshold."""
    return "heavy" if score >= threshold else "light"


# --- text of a conversation -------------------------------------------------------------------------

def conversation_text(messages: list[dict]) -> tuple[str, list[str], int]:
    """(last user text, up to 4 earlier user/assistant texts, number of user turns). System text is
    ignored: it is the deployment's, not the request's."""
    last_index = -1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            last_index = i
            break
    if last_index < 0:
        return "", [], 0
    last = content_text(messages[last_index].get("content"))
    earlier = [content_text(m.get("content")) for m in messages[:last_index]
               if m.get("role") in ("user", "assistant")]
    turns = sum(1 for m in messages if m.get("role") == "user")
    return last, earlier[-_CONTEXT_MESSAGES:], turns


# --- features -----------------------------------------------------------------------------------------

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


def _rx(pattern: str, flags: int = 0) -> re.Pattern:
    """Compile, hoisting a shared leading \\b out of the alternatives: `\\b(?:a|b)` only tries the branches at
    word boundaries, several times faster than `\\ba|\\bb` on long text (the bounded branches are tried first)."""
    parts = _split_top(pattern)
    bounded = [p[2:] for p in parts if p.startswith("\\b")]
    others = [p for p in parts if not p.startswith("\\b")]
    if len(bounded) > 1:
        pattern = "|".join([r"\b(?:" + "|".join(bounded) + ")"] + others)
    return re.compile(pattern, flags)


# Patterns on the original text (case matters: CamelCase errors, code).
_CODE_FENCE = _rx(r"```|~~~")
_CODE = _rx(
    r"^[^\S\n]{4,}\S|^\t+\S"                              # indented lines
    r"|\bdef \w+\(|\bfunction\b\s*\w*\s*\(|=>|^[^\S\n]*return\b|\b(?:const|let|var)\s+\w+\s*=|\bimport \w+"
    r"|\bclass \w+[:({]|\bSELECT\b[\s\S]{1,200}?\bFROM\b|\bWHERE\b|\bGROUP BY\b|console\.\w+\("
    r"|[;{}]\s*$|\b\w+\.\w+\([^)]*\)|\b\w+\[\w*\]\s*=|\bnull\b|\bNone\b|\bself\b|\bawait\b|`[^`\n]{2,60}`",
    re.M,
)
_TRACE = _rx(
    r"\bTraceback\b|\b[A-Z]\w*(?:Error|Exception)\b|^[^\S\n]+at [\w.$<>]+\(|File \"[^\"]+\", line \d+"
    r"|\bFatal error\b|\bsegmentation fault\b|\bpanic:|\bline \d+, in\b|\.(?:java|py|js|ts|swift|go|rb):\d+",
    re.M,
)
_MATH_NOTATION = _rx(
    r"\^\s*\(?-?\w|[²³√∫∑∏π≡≠≤≥±∞]|\b\d*[a-zA-Z]\s*[+\-*/]\s*\d+\s*=|\s=\s*-?\d|\b[a-z]\(x\)"
    r"|\b(?:sqrt|ln|log|sin|cos|tan|exp)\s*\(|\[\[|\bO\(\w|\bp\s*[=<]\s*0[.,]\d|\b1/n\b|\bmod(?:ulo)?\b"
    r"|\b\d+\s*[×*]\s*\d+|\(\d+/\d+\)|\b\d+\s*/\s*\d+\b"
)

# Patterns on the lower-cased text.
_MATH_WORDS = _rx(
    r"\bprobabilit|\bexpected (?:value|number)|\bespérance|\bintegral|\bintégrale|\bderivative|\bdérivée"
    r"|\beigen|\bvaleurs propres|\bmatri(?:x|ce)\b|\bprove\b|\bdémontre|\bmontre que|\btheorem|\bthéorème"
    r"|\birrational|\birrationnel|\birreducible|\birréductible|\bconverge|\bdiverge|\bseries\b|\bsérie\b"
    r"|\bequation|\béquation|\bsolve\b|\brésous|\brésoudre|\bcompute\b|\bcalcul|\bcalculate|\bformula|\bformule"
    r"|\bhow many (?:distinct |different )?ways|\bde combien de façons|\bcombinatori|\bpermutation"
    r"|\bpoisson\b|\bvariance\b|\bstandard deviation|\bécart-type|\bbinomial|\bconditional probab"
    r"|\bparado(?:x|xe)\b|\bm/m/c\b|\bquadratic|\bpolynom|\blogarithm|\bcompound|\bcomposés|\bprime\b|\bpremier p"
    r"|\bstrat(?:egy|égie) gagnante|\bwinning strategy|\bexpected\b|\bmoyenne\b|\baverage\b|\bdistribution\b"
)
_REASON = _rx(
    r"\bexplain (?:why|the difference|what)|\bexpliqu\w* (?:pourquoi|la différence|le théorème|le paradoxe|la régul)"
    r"|\bwhy (?:does|is|do|might|would|isn't|doesn't)\b|\bpourquoi (?:ce|mon|ma|la|le|un|une|est|ne|faut|il)\b"
    r"|\bprove\b|\bjustif(?:y|ie)|\bderive\b|\bcompare\b|\bcompar(?:e|er|aison)\b|\btrade-?offs?\b|\bargue\b"
    r"|\bargument|\bdesign\b|\bconçois|\bconcevoir|\banaly[sz]e|\banalyser|\broot cause|\bcause (?:racine|probable)"
    r"|\bwhat would you recommend|\brecommand|\bpros and cons|\bavantages et inconvénients|\bpropose\b"
    r"|\bstrateg|\bstratégie|\bhow would you|\bcomment feriez|\bis it (?:legal|okay under|discriminat)"
    r"|\best-(?:il|ce) légal|\bhow strong|\bboth sides|\bdeux positions|\bshow the (?:formula|order|steps)"
    r"|\bdonne la formule|\bfind the bug|\btrouve l'erreur|\bwhat could (?:cause|explain)|\bqu'est-ce qui peut"
    r"|\bhow (?:do|would|should) we\b|\bcomment (?:trouver|détecter|optimiser|corriger)|\bwhat changed"
    r"|\bwhich (?:one|trade)|\blequel choisir|\bpitfalls|\bbiais|\bdistingue|\bexplique-moi"
    r"|\band why\b|\bet pourquoi\b|\bwhich is (?:better|safer|cheaper|faster|more|less)|\bvaut-il mieux|\bis it better"
    r"|\bshould we\b|\bfaut-il\b|\bwhat (?:could|might) explain|\bqu'est-ce qui (?:peut|pourrait) expliquer"
    r"|\bhow would you (?:estimate|decide|measure|model)|\bcomment (?:estimer|trancher|mesurer|modéliser)|\bweigh\b"
    r"|\bpèse\b|\bwhat happens (?:to|if|when)|\bque devient|\bque se passe-t-il|\bhow (?:can|could) that happen"
    r"|\bcomment est-ce possible|\bhow many different|\bcombien existe-t-il|\bestimate\b|\bestimer\b|\bwhy\?"
    r"|\bpourquoi \?"
)
_CONSTRAINT = _rx(
    r"\bif\b|\bunless\b|\bexcept\b|\bprovided\b|\bat (?:least|most)\b|\bwithin\b|\bbetween\b|\bgiven (?:that|the|a)\b"
    r"|\beach\b|\bover \d|\bunder \d|\babove\b|\bmore than\b|\bless than\b|\bnotwithstanding\b|\bwhereas\b"
    r"|\bsi\b|\bs'il\b|\bsauf\b|\bà condition|\bsous réserve|\bau (?:moins|plus)\b|\bentre\b|\bcompte tenu"
    r"|\bsachant\b|\bchacun|\bdès\b|\bau-delà|\bplus de \d|\bmoins de \d|\bnonobstant|\bsous \d|\bau prorata"
    r"|\bprorat|\bthen\b|\bpuis\b|\bindépendamment|\bindependently"
)
_LEGAL = _rx(
    r"\bgdpr\b|\brgpd\b|\bcnil\b|\bhipaa\b|\blaws?\b|\blegal(?:ly)?\b|\blégal|\bloi\b|\bjuridique|\bjurisprudence"
    r"|\bdirective\b|\bregulation\b|\brèglement (?:européen|sur|général)|\barticles? \d|\bart\. ?\d|\bclauses?\b"
    r"|\bcontracts?\b|\bcontrats?\b|\bliabilit|\bresponsabilité|\benforceable|\bopposable|\bjurisdiction"
    r"|\bcourt\b|\btribunal|\bjuge\b|\blawyer|\bavocat|\bstatute|\bconsumer (?:law|rights|protection)"
    r"|\bcode (?:de la consommation|du travail|de commerce|civil)|\blabou?r law|\bdroit (?:de |du |des |français|européen)"
    r"|\bwithdrawal right|\bright of withdrawal|\brétractation|\blegal guarantee|\bgarantie légale|\bvices? cachés?"
    r"|\bconformity|\bconformité|\bburden of proof|\bprouver\b|\bdiscriminat|\bnon-?compete|\bnon-concurrence"
    r"|\bgeo-?blocking|\bblocage géographique|\bterms of service|\bcgv\b|\bvoid\b|\bclause pénale|\bindemnité"
    r"|\bimplied warranty|\bdisclaim|\bconsentement|\bdata protection|\berasure|\beffacement|\bbrowsewrap"
    r"|\bclickwrap|\bprocessors?\b|\bsous-traitant|\bobligations?\b|\bfondement|\bact \d{4}\b"
)
_MEDICAL = _rx(
    r"\ballerg|\banaphyla|\bpregnan|\benceinte|\bgrossesse|\bbreastfeed|\ballait|\bmedication|\bmédicament"
    r"|\btraitement\b|\bdrugs?\b|\bdoses?\b|\bdosage|\bposolog|\bprescription|\bordonnances?\b|\bcontraindicat"
    r"|\bcontre-indic|\binteraction|\bdiabet|\bdiabét|\binsulin|\binsuline|\bmetformin|\bwarfarin|\banticoagul"
    r"|\bblood (?:pressure|sugar)|\bhypertension|\bceliac|\bcœliaque|\bcoeliaque|\blactose|\bintoleran|\bintoléran"
    r"|\btoxi[cq]|\bpoison|\bintoxi|\bsymptom|\bsymptôme|\bige\b|\bpeanuts?\b|\barachide|\bcacahu|\bsesame|\bsésame"
    r"|\bibuprof|\bparac[eé]tamol|\baspirin|\bantibioti|\bantihistamin|\bstatin|\bcortico|\bsafe to (?:use|eat|take)"
    r"|\bhealth data|\bdonnées de santé|\bbolus|\bcarbs?\b|\bglucides|\bcross-contamination|\bsupplement|\bcomplément"
    r"|\bbab(?:y|ies)\b|\bbébé|\bnourrisson|\binfant|\btoddler|\bmonth-old|\bde \d+ mois\b|\bswallow|\bavalé"
    r"|\bingest|\bingér|\bchew|\bmâch|\bcough|\btoux\b|\bsyrup|\bsirop|\bfever|\bfièvre|\brash\b|\beczema|\beczéma"
    r"|\bvitamin|\bnickel\b|\bhypoallerg|\bsafe (?:to|for)\b|\bis it safe|\bsans danger|\bsans risque|\bshould i worry"
    r"|\bm'inquiéter|\bdoctor\b|\bmédecin|\bside effects?|\beffets? secondaires?|\bskin\b|\bpeau\b|\basthm|\bepilep|\bépilep|\bcardia|\bheart condition"
    r"|\brenal\b|\brénal|\bkidney|\bhépat|\bhepat|\bcancer|\bchemo|\bchimio|\bimmun"
)
_RULES = _rx(
    r"\bapply\b|\bapplies\b|\bs'appliqu|\bbound by|\bengagés?|\bobligés?|\bobliged|\brequired to|\bmust we"
    r"|\bdo we have to|\bsommes-nous|\bhonou?r(?:ed)?\b|\brules?\b|\brègles?\b|\brèglementation|\bréglementation"
    r"|\bregulat|\brestrictions?\b|\bcompliance|\bcompliant|\bdangerous goods|\bmatières dangereuses"
    r"|\binflammable|\bflammable|\ballowed\b|\bautorisée?s?\b|\ble droit\b|\bthe right to\b|\bentitled|\ba-t-on le droit"
    r"|\bpermitted|\blegit|\bvalid\b|\bvalable|\btransférée?|\btransferred|\bregime\b|\brégime\b"
)
_FINANCE = _rx(
    r"\bvat\b|\btva\b|\btax|\btaxe|\bimpôt|\bfiscal|\breverse.charge|\bautoliquidation|\boss\b|\bguichet unique"
    r"|\bfranchise\b|\bcompound|\bcomposés|\binterest\b|\bintérêts|\bamorti[sz]|\bdepreciat|\bltv\b|\bcac\b|\bchurn"
    r"|\bdésabonnement mensuel|\bmargins?\b|\bmarges?\b|\broi\b|\bbreak even|\bpoint mort|\bprorat|\bcpi\b"
    r"|\bindice\b|\bifrs|\baccounting|\bcomptab|\bauto-?entrepreneur|\bmicro-?entrepr|\bvaleur vie client"
    r"|\blifetime value|\bthreshold\b|\bseuil\b"
)
_TECH = _rx(
    r"\balgorithm|\balgorithme|\bcomplexit|\bbig-o\b|\bdatabases?\b|\bbase de données|\bindex\b|\bqueries\b"
    r"|\bsql\b|\bpostgres|\bredis\b|\bmysql|\blatenc|\blatence|\bmemory leak|\bfuite|\bheap\b|\bthreads?\b"
    r"|\brace conditions?|\bconcurren|\bidempot|\barchitecture|\bmicroservice|\bmonoli?th|\bcap\b|\bdistributed"
    r"|\bdistribué|\blru\b|\bapi\b|\bsockets?\b|\basync|\bdocker|\bkubernetes|\bpods?\b|\bcontainer|\bconteneur"
    r"|\bdeploy|\bmise en production|\bregex|\bregular expression|\bexpression régulière|\bfunctions?\b"
    r"|\bfonctions?\b|\bscript\b|\bbash\b|\bshell\b|\bpython|\bjava\b|\bjavascript|\btypescript|\breact\b|\bvue\b"
    r"|\bdjango|\bnode\b|\bandroid \d|\bswift|\bquicksort|\btri (?:fusion|rapide)|\bhashmap|\bbinary search"
    r"|\brecursi|\brécursi|\bgradient|\bregulari[sz]ation|\brégularisation|\boverfit|\bsurapprentissage"
    r"|\ba/b test|\btest a/b|\bstatistic|\bstatistiq|\bp-value|\bsla\b|\bavailability|\bdisponibilité"
    r"|\bn\+1|\bquery\b|\brequête (?:sql|postgres)|\bexplain\b.{0,20}\bscan|\bparcours séquentiel|\bintervals?\b"
    r"|\brate limiter|\bqueue\b|\bfile d'attente|\bconsumers?\b|\bconsommateurs\b|\bcache\b|\bprofil(?:er|ing)|\boom"
)
_SUPPORT = _rx(
    r"\borders?\b|\bcommandes?\b|\bcommander\b|\bdeliver|\blivraison|\blivr[eé]|\bshipp|\bshipped|\bexpédi|\btracking"
    r"|\btrack\b|\bsuivi\b|\bparcel|\bpackage\b|\bcolis\b|\bpassword|\bmot de passe|\blog ?in\b|\bconnecter"
    r"|\baccount\b|\bcompte\b|\brefund|\brembours|\breturns?\b|\bretours?\b|\bretourner|\bexchange|\béchang|\bswap\b"
    r"|\binvoices?\b|\bfactures?\b|\bpromo|\bdiscount code|\bcode promo|\bcoupon|\bsize\b|\btaille\b"
    r"|\bin stock|\ben stock|\bdisponible\b|\bsubscription|\babonnement|\bnewsletter|\bunsubscribe|\bdésabonner"
    r"|\bcancel|\bannul|\brésili|\blabel\b|\bétiquette|\baddress|\badresse|\be-?mail\b|\bpaypal|\bapple pay"
    r"|\bpayment|\bpaiement|\bloyalty|\bfidélité|\bstore\b|\bmagasin|\bpoint relais|\bcustomer service"
    r"|\bservice client|\bconseiller|\bhuman\b|\bticket\b|\bnotice\b|\bmanual\b|\bwishlist|\bliste d'envies"
    r"|\bgift|\bcadeau|\bopening hours|\bhoraires|\bphone number|\bnuméro de téléphone|\bresend|\brenvoyer"
)
_CHAT = _rx(
    r"\bhello\b|\bhi\b|\bhey\b|\bgood (?:morning|afternoon|evening)|\bthanks?\b|\bthank you|\bcheers\b|\bsorry\b"
    r"|\bplease\b|\bbonjour|\bbonsoir|\bsalut\b|\bcoucou|\bmerci\b|\bdésolée?\b|\bs'il vous pla[iî]t|\bsvp\b"
    r"|\bhope\b|\bj'espère|\blol\b|\bmdr\b|:\)|!|\blove\b|\badore\b|\bgreat\b|\bsuper\b|\blovely\b|\badorable"
    r"|\bworried|\binquiète?|\bno worries|\bpas de souci|\bquick (?:one|question)|\bpetite question"
)
_ID_NUMBER = _rx(r"#\s?\d{3,}|\b\d{5,}\b|\b[A-Z]{2,}\d{2,}\b")
_QUANTITY = _rx(r"(?<![\d#])\d{1,4}(?:[.,]\d+)?\s?(?:%|€|\$|£|eur\b|euros?\b|k\b|ms\b|mb\b|mo\b|go\b|gb\b)?(?![\d])")
_FR_WORDS = _rx(
    r"\b(?:le|la|les|des|est|une|pour|que|qui|dans|avec|je|vous|mon|ma|mes|pas|sur|ce|il|et|du|au|nous|votre|c'est"
    r"|j'ai|ne|elle|sont|peut|être|quel|quelle|comment|pourquoi|combien)\b"
)
_EN_WORDS = _rx(
    r"\b(?:the|is|and|to|of|my|you|for|in|it|that|with|on|this|can|i|a|are|was|be|your|we|our|what|how|why|does"
    r"|do|if|at|from|an|have|has)\b"
)

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars", "log_lines", "code_block", "code", "stack_trace", "maths_notation", "maths_words",
    "reasoning", "constraints", "legal", "rules", "medical", "finance", "technical", "hard_density", "support", "chat",
    "id_numbers", "quantities", "questions", "french", "log_turns", "context_hard",
)

_HARD_GROUPS = ("code", "stack_trace", "maths_notation", "maths_words", "reasoning", "legal", "rules", "medical",
                "finance", "technical")


def _count(rx: re.Pattern, text: str) -> int:
    return sum(1 for _ in rx.finditer(text))


def _hard_counts(text: str, lower: str) -> dict[str, int]:
    return {
        "code": _count(_CODE, text),
        "stack_trace": _count(_TRACE, text),
        "maths_notation": _count(_MATH_NOTATION, text),
        "maths_words": _count(_MATH_WORDS, lower),
        "reasoning": _count(_REASON, lower),
        "legal": _count(_LEGAL, lower),
        "rules": _count(_RULES, lower),
        "medical": _count(_MEDICAL, lower),
        "finance": _count(_FINANCE, lower),
        "technical": _count(_TECH, lower),
    }


def extract_features(messages: list[dict]) -> tuple[np.ndarray, dict[str, int]]:
    """Feature vector (order of FEATURE_NAMES, float64) and the raw counts behind it (for reasons)."""
    last, earlier, turns = conversation_text(messages)
    text = clip(last)
    lower = text.lower()
    counts = _hard_counts(text, lower)
    fence = 1 if _CODE_FENCE.search(text) else 0
    counts.update(
        code_block=fence,
        constraints=_count(_CONSTRAINT, lower),
        support=_count(_SUPPORT, lower),
        chat=_count(_CHAT, lower),
        id_numbers=_count(_ID_NUMBER, text),
        quantities=_count(_QUANTITY, text),
        questions=text.count("?"),
        chars=len(last),
        lines=last.count("\n"),
        turns=turns,
    )
    fr = _count(_FR_WORDS, lower)
    en = _count(_EN_WORDS, lower)
    context_hard = 0
    for previous in earlier:
        p = previous[:_CONTEXT_CHARS]
        context_hard += sum(_hard_counts(p, p.lower()).values())
    counts["context_hard"] = context_hard
    hard_total = sum(counts[g] for g in _HARD_GROUPS)
    words = max(1, lower.count(" ") + 1)
    log1p = math.log1p
    vector = np.array([
        log1p(len(last)),
        log1p(counts["lines"]),
        float(fence),
        log1p(counts["code"]),
        log1p(counts["stack_trace"]),
        log1p(counts["maths_notation"]),
        log1p(counts["maths_words"]),
        log1p(counts["reasoning"]),
        log1p(counts["constraints"]),
        log1p(counts["legal"]),
        log1p(counts["rules"]),
        log1p(counts["medical"]),
        log1p(counts["finance"]),
        log1p(counts["technical"]),
        hard_total / (words / 20.0 + 1.0),
        log1p(counts["support"]),
        log1p(counts["chat"]),
        log1p(counts["id_numbers"]),
        log1p(counts["quantities"]),
        log1p(counts["questions"]),
        fr / (fr + en + 1.0),
        log1p(max(0, turns - 1)),
        log1p(context_hard),
    ], dtype=np.float64)
    return vector, counts


# --- reasons -------------------------------------------------------------------------------------------

_REASON_LABELS = {
    "code_block": "code block", "code": "code", "stack_trace": "stack trace", "maths_notation": "maths notation",
    "maths_words": "maths vocabulary", "reasoning": "reasoning request", "legal": "legal domain", "rules": "rules/obligations",
    "medical": "medical domain", "finance": "finance/tax domain", "technical": "technical domain",
    "support": "routine support wording", "chat": "chatty/polite wording", "id_numbers": "order/ticket number",
    "quantities": "quantities", "context_hard": "hard topic in earlier turns",
}


def _reasons(counts: dict[str, int], contributions: np.ndarray) -> list[str]:
    fired = []
    for i, name in enumerate(FEATURE_NAMES):
        c = float(contributions[i])
        if abs(c) < 0.15:
            continue
        if name == "constraints" and counts["constraints"]:
            label = f"{counts['constraints']} constraints"
        elif name == "log_chars":
            label = f"{'long' if c > 0 else 'short'} message ({counts['chars']} chars)"
        elif name in _REASON_LABELS and counts.get(name):
            label = _REASON_LABELS[name]
        else:
            continue
        fired.append((c, label if c > 0 else label + " (easier)"))
    fired.sort(key=lambda x: -abs(x[0]))
    return [label for _, label in fired[:5]]


# --- scorer --------------------------------------------------------------------------------------------

def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class _Linear:
    coef: np.ndarray  # on raw inputs (standardisation folded in)
    bias: float

    @classmethod
    def from_json(cls, data: dict) -> "_Linear":
        return cls(np.asarray(data["coef"], dtype=np.float64), float(data["bias"]))


class DifficultyScorer:
    """Scores a conversation. Build with `load`; `score` is pure and thread-safe."""

    def __init__(self, features_model: _Linear, embedding_model: _Linear | None, feature_mean: np.ndarray,
                 *, use_embedding: bool = True, info: dict | None = None) -> None:
        n = len(FEATURE_NAMES)
        if features_model.coef.shape != (n,):
            raise ValueError(f"features model has {features_model.coef.shape[0]} weights, expected {n}")
        self._features = features_model
        self._embedding = embedding_model if use_embedding else None
        if self._embedding is not None:
            self._emb_feat = self._embedding.coef[:n]
            self._emb_vec = self._embedding.coef[n:].astype(np.float32)
        self._mean = feature_mean
        self.info = info or {}

    @classmethod
    def load(cls, settings: DifficultySettings | None = None) -> "DifficultyScorer":
        settings = settings or DifficultySettings()
        path = Path(settings.model_path or DEFAULT_MODEL_PATH)
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            raise FileNotFoundError(f"difficulty weights not found at {path}; run `gateway route train`") from None
        if list(data["feature_names"]) != list(FEATURE_NAMES):
            raise ValueError(f"{path} was trained on other features; retrain with `gateway route train`")
        embedding = data.get("embedding_model")
        return cls(
            _Linear.from_json(data["features_model"]),
            _Linear.from_json(embedding) if embedding else None,
            np.asarray(data["feature_mean"], dtype=np.float64),
            use_embedding=settings.use_embedding,
            info=data.get("info", {}),
        )

    @property
    def uses_embedding(self) -> bool:
        return self._embedding is not None

    @property
    def embedding_dim(self) -> int:
        return 0 if self._embedding is None else int(self._emb_vec.shape[0])

    def score(self, messages: list[dict], vector: np.ndarray | None = None) -> Difficulty:
        x, counts = extract_features(messages)
        extra = []
        if self._embedding is not None and vector is not None and np.shape(vector) == self._emb_vec.shape:
            contributions = self._emb_feat * (x - self._mean)
            z = float(self._emb_feat @ x) + float(self._emb_vec @ vector) + self._embedding.bias
            method = "model"
            p = _sigmoid(z)
            extra.append(f"embedding classifier {p:.2f}")
        else:
            contributions = self._features.coef * (x - self._mean)
            z = float(self._features.coef @ x) + self._features.bias
            method = "features"
            p = _sigmoid(z)
            if self._embedding is None:
                why = "embedding off"
            elif vector is None:
                why = "no embedding"
            else:
                why = f"embedding of shape {np.shape(vector)} ignored"
            extra.append(f"features-only model {p:.2f} ({why})")
        return Difficulty(score=p, reasons=tuple(_reasons(counts, contributions) + extra), method=method)
