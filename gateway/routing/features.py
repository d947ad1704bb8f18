"""Features of a chat request for the difficulty scorer, in two groups.

- Vocabulary and structure (this module): code, stack traces, maths notation, constraints, legal, medical,
  finance and technical vocabulary, routine support wording, length, language, earlier turns.
- The form of the task (`gateway.routing.form`): transform a given text, look up a fact, one arithmetic
  operation, versus judgement on a case, a situation with complications, several asks, an amount or a date to
  work out from given numbers.

Vocabulary alone learns the keywords of its training data ("calculate", "between", "contract" are not
difficulty); the model weighs both groups against pairs of prompts that share words and differ in difficulty.
"""

from __future__ import annotations

import math
from typing import Any

from gateway.bounds import clip
from gateway.request import content_text
from gateway.routing.form import FORM_CASED, FORM_NAMES, FORM_PATTERNS, FORM_REASON_LABELS, form_features
from gateway.routing.scan import WordPatterns

__all__ = ["FEATURE_NAMES", "REASON_LABELS", "conversation_text", "extract_features"]

# Long pastes are scanned partly (bounds.clip): the head and the tail carry the question and the trace.
_CONTEXT_MESSAGES = 4
_CONTEXT_CHARS = 1500


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
    earlier = [content_text(m.get("content")) for m in messages[:last_index] if m.get("role") in ("user", "assistant")]
    turns = sum(1 for m in messages if m.get("role") == "user")
    return last, earlier[-_CONTEXT_MESSAGES:], turns


# --- features -----------------------------------------------------------------------------------------


# Patterns on the original text (case matters: CamelCase errors, code).
_CODE_FENCE = r"```|~~~"
# A call `a.b(...)` or an assignment `a[i] =`: the word is read once for both (the cue is searched over the whole
# text, first among the cues that are; `\w+` can only end where `.` or `[` follows, so this matches as the two
# cues `\b\w+\.\w+\([^)]*\)|\b\w+\[\w*\]\s*=` did, at ~2/3 of their cost).
_CODE = (
    r"\b\w+(?:\.\w+\([^)]*\)|\[\w*\]\s*=)"
    r"|^[^\S\n]{4,}\S|^\t+\S"  # indented lines
    r"|\bdef \w+\(|\bfunction\b\s*\w*\s*\(|=>|^[^\S\n]*return\b|\b(?:const|let|var)\s+\w+\s*=|\bimport \w+"
    r"|\bclass \w+[:({]|\bSELECT\b[\s\S]{1,200}?\bFROM\b|\bWHERE\b|\bGROUP BY\b|console\.\w+\("
    r"|[;{}]\s*$|\bnull\b|\bNone\b|\bself\b|\bawait\b|`[^`\n]{2,60}`"
)
_TRACE = (
    r"\bTraceback\b|\b[A-Z]\w*(?:Error|Exception)\b|^[^\S\n]+at [\w.$<>]+\(|File \"[^\"]+\", line \d+"
    r"|\bFatal error\b|\bsegmentation fault\b|\bpanic:|\bline \d+, in\b|\.(?:java|py|js|ts|swift|go|rb):\d+"
)
_MATH_NOTATION = (
    r"\^\s*\(?-?\w|[²³√∫∑∏π≡≠≤≥±∞]|\b\d*[a-zA-Z]\s*[+\-*/]\s*\d+\s*=|\s=\s*-?\d|\b[a-z]\(x\)"
    r"|\b(?:sqrt|ln|log|sin|cos|tan|exp)\s*\(|\[\[|\bO\(\w|\bp\s*[=<]\s*0[.,]\d|\b1/n\b|\bmod(?:ulo)?\b"
    r"|\b\d+\s*[×*]\s*\d+|\(\d+/\d+\)|\b\d+\s*/\s*\d+\b"
)

# Patterns on the lower-cased text.
_MATH_WORDS = (
    r"\bprobabilit|\bexpected (?:value|number)|\bespérance|\bintegral|\bintégrale|\bderivative|\bdérivée"
    r"|\beigen|\bvaleurs propres|\bmatri(?:x|ce)\b|\bprove\b|\bdémontre|\bmontre que|\btheorem|\bthéorème"
    r"|\birrational|\birrationnel|\birreducible|\birréductible|\bconverge|\bdiverge|\bseries\b|\bsérie\b"
    r"|\bequation|\béquation|\bsolve\b|\brésous|\brésoudre|\bcompute\b|\bcalcul|\bcalculate|\bformula|\bformule"
    r"|\bhow many (?:distinct |different )?ways|\bde combien de façons|\bcombinatori|\bpermutation"
    r"|\bpoisson\b|\bvariance\b|\bstandard deviation|\bécart-type|\bbinomial|\bconditional probab"
    r"|\bparado(?:x|xe)\b|\bm/m/c\b|\bquadratic|\bpolynom|\blogarithm|\bcompound|\bcomposés|\bprime\b|\bpremier p"
    r"|\bstrat(?:egy|égie) gagnante|\bwinning strategy|\bexpected\b|\bmoyenne\b|\baverage\b|\bdistribution\b"
)
_REASON = (
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
_CONSTRAINT = (
    r"\bif\b|\bunless\b|\bexcept\b|\bprovided\b|\bat (?:least|most)\b|\bwithin\b|\bgiven (?:that|the|a)\b"
    r"|\bover \d|\bunder \d|\babove\b|\bmore than\b|\bless than\b|\bnotwithstanding\b|\bwhereas\b"
    r"|\bsi\b|\bs'il\b|\bsauf\b|\bà condition|\bsous réserve|\bau (?:moins|plus)\b|\bcompte tenu"
    r"|\bsachant\b|\bdès\b|\bau-delà|\bplus de \d|\bmoins de \d|\bnonobstant|\bsous \d|\bau prorata"
    r"|\bprorat|\bindépendamment|\bindependently"
)
_LEGAL = (
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
_MEDICAL = (
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
_RULES = (
    r"\bapply\b|\bapplies\b|\bs'appliqu|\bbound by|\bengagés?|\bobligés?|\bobliged|\brequired to|\bmust we"
    r"|\bdo we have to|\bsommes-nous|\bhonou?r(?:ed)?\b|\brules?\b|\brègles?\b|\brèglementation|\bréglementation"
    r"|\bregulat|\brestrictions?\b|\bcompliance|\bcompliant|\bdangerous goods|\bmatières dangereuses"
    r"|\binflammable|\bflammable|\ballowed\b|\bautorisée?s?\b|\ble droit\b|\bthe right to\b|\bentitled|\ba-t-on le droit"
    r"|\bpermitted|\blegit|\bvalid\b|\bvalable|\btransférée?|\btransferred|\bregime\b|\brégime\b"
)
_FINANCE = (
    r"\bvat\b|\btva\b|\btax|\btaxe|\bimpôt|\bfiscal|\breverse.charge|\bautoliquidation|\boss\b|\bguichet unique"
    r"|\bfranchise\b|\bcompound|\bcomposés|\binterest\b|\bintérêts|\bamorti[sz]|\bdepreciat|\bltv\b|\bcac\b|\bchurn"
    r"|\bdésabonnement mensuel|\bmargins?\b|\bmarges?\b|\broi\b|\bbreak even|\bpoint mort|\bprorat|\bcpi\b"
    r"|\bindice\b|\bifrs|\baccounting|\bcomptab|\bauto-?entrepreneur|\bmicro-?entrepr|\bvaleur vie client"
    r"|\blifetime value|\bthreshold\b|\bseuil\b"
)
_TECH = (
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
_SUPPORT = (
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
_CHAT = (
    r"\bhello\b|\bhi\b|\bhey\b|\bgood (?:morning|afternoon|evening)|\bthanks?\b|\bthank you|\bcheers\b|\bsorry\b"
    r"|\bplease\b|\bbonjour|\bbonsoir|\bsalut\b|\bcoucou|\bmerci\b|\bdésolée?\b|\bs'il vous pla[iî]t|\bsvp\b"
    r"|\bhope\b|\bj'espère|\blol\b|\bmdr\b|:\)|!|\blove\b|\badore\b|\bgreat\b|\bsuper\b|\blovely\b|\badorable"
    r"|\bworried|\binquiète?|\bno worries|\bpas de souci|\bquick (?:one|question)|\bpetite question"
)
_ID_NUMBER = r"#\s?\d{3,}|\b\d{5,}\b|\b[A-Z]{2,}\d{2,}\b"
_QUANTITY = r"(?<![\d#])\d{1,4}(?:[.,]\d+)?\s?(?:%|€|\$|£|eur\b|euros?\b|k\b|ms\b|mb\b|mo\b|go\b|gb\b)?(?![\d])"
_FR_WORDS = (
    r"\b(?:le|la|les|des|est|une|pour|que|qui|dans|avec|je|vous|mon|ma|mes|pas|sur|ce|il|et|du|au|nous|votre|c'est"
    r"|j'ai|ne|elle|sont|peut|être|quel|quelle|comment|pourquoi|combien)\b"
)
_EN_WORDS = (
    r"\b(?:the|is|and|to|of|my|you|for|in|it|that|with|on|this|can|i|a|are|was|be|your|we|our|what|how|why|does"
    r"|do|if|at|from|an|have|has)\b"
)

VOCABULARY_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_lines",
    "code_block",
    "code",
    "stack_trace",
    "maths_notation",
    "maths_words",
    "reasoning",
    "constraints",
    "legal",
    "rules",
    "medical",
    "finance",
    "technical",
    "hard_density",
    "support",
    "chat",
    "id_numbers",
    "quantities",
    "questions",
    "french",
    "log_turns",
    "context_hard",
)
FEATURE_NAMES: tuple[str, ...] = VOCABULARY_NAMES + FORM_NAMES

REASON_LABELS = {
    "code_block": "code block",
    "code": "code",
    "stack_trace": "stack trace",
    "maths_notation": "maths notation",
    "maths_words": "maths vocabulary",
    "reasoning": "reasoning request",
    "legal": "legal domain",
    "rules": "rules/obligations",
    "medical": "medical domain",
    "finance": "finance/tax domain",
    "technical": "technical domain",
    "support": "routine support wording",
    "chat": "chatty/polite wording",
    "id_numbers": "order/ticket number",
    "quantities": "quantities",
    "context_hard": "hard topic in earlier turns",
    **FORM_REASON_LABELS,
}


_HARD_GROUPS = (
    "code",
    "stack_trace",
    "maths_notation",
    "maths_words",
    "reasoning",
    "legal",
    "rules",
    "medical",
    "finance",
    "technical",
)


# One pass over the words for every pattern (gateway.routing.scan); the vocabulary's names as in FEATURE_NAMES.
PATTERNS: dict[str, str] = {
    "code_fence": _CODE_FENCE,
    "code": _CODE,
    "stack_trace": _TRACE,
    "maths_notation": _MATH_NOTATION,
    "maths_words": _MATH_WORDS,
    "reasoning": _REASON,
    "constraints": _CONSTRAINT,
    "legal": _LEGAL,
    "rules": _RULES,
    "medical": _MEDICAL,
    "finance": _FINANCE,
    "technical": _TECH,
    "support": _SUPPORT,
    "chat": _CHAT,
    "id_numbers": _ID_NUMBER,
    "quantities": _QUANTITY,
    "fr_words": _FR_WORDS,
    "en_words": _EN_WORDS,
    **FORM_PATTERNS,
}
_CASED = frozenset({"code_fence", "code", "stack_trace", "maths_notation", "id_numbers", "quantities"}) | FORM_CASED
_SCAN = WordPatterns(PATTERNS, cased=_CASED)
# Earlier turns: only whether they were hard, and whether they asked for judgement.
_CONTEXT = WordPatterns({name: PATTERNS[name] for name in (*_HARD_GROUPS, "form_judgement")}, cased=_CASED)


def extract_features(messages: list[dict[str, Any]]) -> tuple[list[float], dict[str, int]]:
    """Feature values (order of FEATURE_NAMES) and the raw counts behind them (for reasons)."""
    last, earlier, turns = conversation_text(messages)
    text = clip(last).strip()
    lower = text.lower()
    found = dict(zip(_SCAN.names, _SCAN.count(text, lower)))
    context_hard = context_judgement = 0
    for previous in earlier:
        c = _CONTEXT.count(previous[:_CONTEXT_CHARS])
        context_judgement += c[-1]
        context_hard += sum(c) - c[-1]
    counts = {name: found[name] for name in _HARD_GROUPS}
    fence = 1 if found["code_fence"] else 0
    counts.update(
        code_block=fence,
        constraints=found["constraints"],
        support=found["support"],
        chat=found["chat"],
        id_numbers=found["id_numbers"],
        quantities=found["quantities"],
        questions=text.count("?"),
        chars=len(last),
        lines=last.count("\n"),
        turns=turns,
        context_hard=context_hard,
    )
    fr = found["fr_words"]
    en = found["en_words"]
    hard_total = sum(counts[g] for g in _HARD_GROUPS)
    words = lower.count(" ") + 1 if lower else 0
    log1p = math.log1p
    vocabulary = [
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
        hard_total / (max(1, words) / 20.0 + 1.0),
        log1p(counts["support"]),
        log1p(counts["chat"]),
        log1p(counts["id_numbers"]),
        log1p(counts["quantities"]),
        log1p(counts["questions"]),
        fr / (fr + en + 1.0),
        log1p(max(0, turns - 1)),
        log1p(context_hard),
    ]
    form, form_counts = form_features(found, words, context_judgement, counts["questions"], text.endswith(("?", "？")))
    counts.update(form_counts)
    return vocabulary + form, counts
