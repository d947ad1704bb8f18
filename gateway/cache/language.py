"""Which language a question is in: a character n-gram naive Bayes model, a few microseconds a question.

    detector = LanguageDetector.load()        # the model shipped with the package (language_model.json)
    detector.detect("Où est mon colis ?")     # -> "fr"
    detector.detect("Wo ist mein Paket?")     # -> "de": any other language is a partition of its own
    detector.detect("ok")                     # -> "?": too short or too close to call

The semantic cache partitions by language, so an answer only ever serves a question in its own language.
Non-Latin scripts are told apart by script first (`x-cyrillic`, `x-cjk`, ...). "?" means "do not know":
such questions are never served semantically (when in doubt: miss).

The model is trained at build time by `gateway cache train-language` from gettext catalogs (the
translations of the system's programs: a few million characters per language, Debian's
/usr/share/locale) plus the project's training pools of support questions in French and English, weighted
up (2,869 questions of 35 businesses; no held-out pool); nothing is downloaded at run time. Each language
keeps its most frequent 1-3 character n-grams; a text scores, per language, the mean log-probability of its
known n-grams. Then its words vote: each word's French-against-English log-odds in the same corpora ("prix"
+5, "price" -5, "roaming" nothing). When the letters say English or French and the words say the other by the
model's `word_margin`, or the letters cannot tell, the words decide if they vote by WORDS_DECIDE or more, and
the language is "?" otherwise ("prix du roaming": English letters, French words, French).
"""

from __future__ import annotations

import base64
import json
import math
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from itertools import repeat
from pathlib import Path

import numpy as np

__all__ = ["LanguageDetector", "UNKNOWN", "train_language_model", "word_log_odds"]

UNKNOWN = "?"
MODEL_PATH = Path(__file__).with_name("language_model.json")
MIN_LETTERS = 4
_VOTED = ("en", "fr")  # the languages whose words vote (`word_log_odds`)
WORD_MARGIN = 2.0  # a vote this strong against the letters' English or French: they disagree
MIXED = 4.0  # a word this French and one this English in one text: the words' vote decides nothing
WORDS_DECIDE = 5.0  # the vote that settles English against French when the letters are too close to call
_NOT_LETTERS = re.compile(r"[\W\d_]+")
_FRENCH_SPACING = re.compile(r"[^\W\d_]\s+[?!]")  # "possible ?": French puts a space before ? and !
_SCRIPTS = (
    ("CYRILLIC", "x-cyrillic"),
    ("GREEK", "x-greek"),
    ("ARABIC", "x-arabic"),
    ("HEBREW", "x-hebrew"),
    ("CJK", "x-cjk"),
    ("HIRAGANA", "x-japanese"),
    ("KATAKANA", "x-japanese"),
    ("HANGUL", "x-korean"),
    ("DEVANAGARI", "x-devanagari"),
    ("THAI", "x-thai"),
)


def _normalise(text: str) -> str:
    return " " + _NOT_LETTERS.sub(" ", text.lower()).strip() + " "


def _grams(text: str) -> list[str]:
    """Character 1-, 2- and 3-grams of a normalised text (space-padded words)."""
    second, third = text[1:], text[2:]
    return [*text.replace(" ", ""), *map(str.__add__, text, second), *map("".join, zip(text, second, third))]


def _script(text: str) -> str | None:
    """The non-Latin script most of the letters are written in, or None (Latin, or no letters)."""
    if max(text, default="") <= "\u024f":  # Latin letters and punctuation only ("où", "été"): none to look up
        return None
    return _script_of_letters(text)


def _script_of_letters(text: str) -> str | None:
    """`_script` by looking every letter above U+024F up by name."""
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


class LanguageDetector:
    def __init__(
        self,
        languages: list[str],
        grams: list[str],
        logp: np.ndarray,
        min_margin: float,
        words: dict[str, float] | None = None,
        word_margin: float = WORD_MARGIN,
    ) -> None:
        self.languages = list(languages)
        self._word_odds = words or {}  # word -> French-against-English log-odds (`word_log_odds`)
        self.word_margin = word_margin
        self.words_decide = WORDS_DECIDE
        self._index = {gram: i for i, gram in enumerate(grams)}
        self._unknown = len(grams)  # a row of zeros: n-grams the model does not know count for nothing
        self._logp = np.vstack([np.asarray(logp, dtype=np.float32), np.zeros((1, len(languages)), np.float32)])
        self.min_margin = min_margin
        self._words: dict[str, tuple[bytes, bytes, bytes, int]] = {}  # word -> its rows (1-, 2-, 3-grams), known
        self._across: dict[str, tuple[bytes, int]] = {}  # last letter + next word's first -> its 3-gram's row
        self.detect = lru_cache(maxsize=16384)(self._detect)

    @classmethod
    def load(cls, path: str | Path = MODEL_PATH) -> "LanguageDetector":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        logp = np.frombuffer(base64.b64decode(data["logp"]), dtype=np.float16).astype(np.float32)
        return cls(
            data["languages"],
            data["grams"],
            logp.reshape(len(data["grams"]), len(data["languages"])),
            data["min_margin"],
            data.get("words"),
            data.get("word_margin", WORD_MARGIN),
        )

    def detect_message(self, text: str, part: str) -> str:
        """The language of `part`, the question of a message `text`, unless what the message has around it says
        the other of English and French: French spacing before a question or exclamation mark, which no English
        question of our pools has ("late check out possible ?"), or politeness that votes for the other language
        by `words_decide` ("early check in possible svp"): a French customer typing English loan words is not
        known to want an English answer."""
        lang = self.detect(part)
        if lang not in _VOTED:
            return lang
        if lang == "en" and _FRENCH_SPACING.search(text):
            return UNKNOWN
        around = Counter(_normalise(text).split())
        around.subtract(_normalise(part).split())
        get = self._word_odds.get
        vote = sum(get(word, 0.0) * n for word, n in around.items() if n > 0)
        if (lang == "en" and vote >= self.words_decide) or (lang == "fr" and vote <= -self.words_decide):
            return UNKNOWN
        return lang

    def scores(self, text: str) -> dict[str, float]:
        """Mean log-probability per known n-gram, per language (diagnostics)."""
        mean = self._mean(_normalise(text))
        return {} if mean is None else dict(zip(self.languages, mean.tolist()))

    def _rows(self, norm: str) -> np.ndarray:
        """The model's row of each n-gram of `_grams(norm)`, in the same order."""
        return self._rows_known(norm)[0]

    def _rows_known(self, norm: str) -> tuple[np.ndarray, int]:
        """(`_rows(norm)`, how many of them are known n-grams), built from memoised words: a text's 1- and
        2-grams are its words' (each padded with spaces), its 3-grams too plus one across each space ("d w").
        Each word keeps its rows as packed machine integers: a text's rows are one join of bytes."""
        words = norm[1:-1].split(" ")
        if not norm.startswith(" ") or not norm.endswith(" ") or "" in words:  # not a normalised text
            grams = _grams(norm)
            rows = np.fromiter(map(self._index.get, grams, repeat(self._unknown, len(grams))), np.intp, len(grams))
            return rows, len(rows) - int(np.count_nonzero(rows == self._unknown))
        memo, get, unknown = self._words, self._index.get, self._unknown
        uni: list[bytes] = []
        bi: list[bytes] = []
        tri: list[bytes] = []
        known = 0
        last = ""
        for word in words:
            packed = memo.get(word)
            if packed is None:
                padded = " " + word + " "
                found = (
                    [get(c, unknown) for c in word],
                    [get(padded[i : i + 2], unknown) for i in range(len(padded) - 1)],
                    [get(padded[i : i + 3], unknown) for i in range(len(padded) - 2)],
                )
                packed = (  # bytes and ints: the garbage collector does not track them
                    np.array(found[0], dtype=np.intp).tobytes(),
                    np.array(found[1], dtype=np.intp).tobytes(),
                    np.array(found[2], dtype=np.intp).tobytes(),
                    sum(row != unknown for grams in found for row in grams),
                )
                if len(memo) >= 65536:
                    memo.clear()
                memo[word] = packed
            uni.append(packed[0])
            bi.append(packed[1])
            if last:
                across = self._across.get(last + word[0])
                if across is None:
                    row = get(last + " " + word[0], unknown)
                    if len(self._across) >= 65536:
                        self._across.clear()
                    across = (np.array([row], dtype=np.intp).tobytes(), int(row != unknown))
                    self._across[last + word[0]] = across
                tri.append(across[0])
                known += across[1]
            tri.append(packed[2])
            known += packed[3]
            last = word[-1]
        return np.frombuffer(b"".join(uni + bi + tri), dtype=np.intp), known

    def _mean(self, norm: str) -> np.ndarray | None:
        rows, known = self._rows_known(norm)
        if not known:
            return None
        return np.add.reduce(self._logp.take(rows, axis=0), axis=0) / known  # ndarray.sum, without its wrapper

    def _detect(self, text: str) -> str:
        if not text.isascii():
            script = _script(text)
            if script is not None:
                return script
        norm = _normalise(text)
        if len(norm) - norm.count(" ") < MIN_LETTERS:
            return UNKNOWN
        mean = self._mean(norm)
        if mean is None:
            return UNKNOWN
        # the best language and the runner-up's score, as the last two of argsort(mean) would say
        values = mean.tolist()
        top = max(values)
        if values.count(top) > 1:  # a tie for the best: as argsort orders it
            second, best = np.argsort(mean)[-2:]
            if mean[best] - mean[second] < self.min_margin:
                return self._close_call(int(best), int(second), norm)
            return self._unless_words_disagree(self.languages[int(best)], norm)
        best = values.index(top)
        runner_up = max(values[:best] + values[best + 1 :])  # below the best: a tie was handled above
        if mean[best] - np.float32(runner_up) < self.min_margin:
            return self._close_call(best, values.index(runner_up), norm)
        return self._unless_words_disagree(self.languages[best], norm)

    def _close_call(self, best: int, second: int, norm: str) -> str:
        """When the letters cannot tell the language (French typed without its accents: "comment offrir un ebook a
        un ami"; "old furniture disposal service": Italian or English?) and English or French is one of the two
        front-runners, the words decide if they vote by `words_decide` or more; else "?"."""
        if not {self.languages[best], self.languages[second]} & set(_VOTED) or not self._word_odds:
            return UNKNOWN
        return self._voted(*self._vote(norm))

    def _voted(self, vote: float, mixed: bool = False) -> str:
        if mixed:
            return UNKNOWN
        return "fr" if vote >= self.words_decide else "en" if vote <= -self.words_decide else UNKNOWN

    def _vote(self, norm: str) -> tuple[float, bool]:
        """The text's words' French-against-English log-odds, summed (> 0: French), and whether strong words of
        both languages are there ("click and collect c'est possible ?": a loan phrase's words add up against
        the sentence around it, so such a vote decides nothing)."""
        get = self._word_odds.get
        odds = [get(word, 0.0) for word in norm.split()]
        return sum(odds), bool(odds) and max(odds) >= MIXED and min(odds) <= -MIXED

    def _unless_words_disagree(self, lang: str, norm: str) -> str:
        """`lang`, unless the text's words vote for the other of English and French by `word_margin` or more:
        "prix du roaming" reads as English by its letters ("roaming") and as French by "prix" and "du"; "cost per
        lesson" as French by its letters. Two signals that disagree: the words decide when they vote by
        `words_decide` or more, else "?". Each word's vote is its learned French-against-English log-odds
        (`words`: "du" +5, "the" -5, "roaming" and "wifi" nothing: both languages use them)."""
        if lang not in _VOTED or not self._word_odds:
            return lang
        vote, mixed = self._vote(norm)
        if mixed:  # words of both languages: their net must name the letters' language as clearly as a deciding vote
            return lang if self._voted(vote) == lang else UNKNOWN
        if (vote >= self.word_margin and lang == "en") or (vote <= -self.word_margin and lang == "fr"):
            return self._voted(vote)
        return lang


def train_language_model(
    corpora: dict[str, list[str]],
    *,
    top: int = 1000,
    alpha: float = 0.5,
    min_margin: float = 0.03,
    prior: dict[str, float] | None = None,
) -> dict:
    """The JSON model: per language its `top` most frequent n-grams; every kept n-gram gets each
    language's smoothed log-probability (one shared vocabulary: a gram common in French and rare in
    English counts against English)."""
    counts = {lang: Counter(g for text in texts for g in _grams(_normalise(text))) for lang, texts in corpora.items()}
    grams = sorted({g for c in counts.values() for g, _ in c.most_common(top)})
    languages = sorted(corpora)
    logp = np.zeros((len(grams), len(languages)), dtype=np.float32)
    for j, lang in enumerate(languages):
        count = counts[lang]
        by_size: Counter[int] = Counter()
        for gram, n in count.items():
            by_size[len(gram)] += n
        for i, gram in enumerate(grams):
            total = by_size[len(gram)] or 1
            logp[i, j] = np.log((count.get(gram, 0) + alpha) / (total + alpha * len(grams)))
    # centre each n-gram's row: only differences between languages matter, and float16 keeps them exact
    logp -= logp.mean(axis=1, keepdims=True)
    for j, lang in enumerate(languages):  # a per-gram prior: the languages the gateway mostly sees win a tie
        logp[:, j] += (prior or {}).get(lang, 0.0)
    model = {
        "languages": languages,
        "grams": grams,
        "min_margin": min_margin,
        "logp": base64.b64encode(logp.astype(np.float16).tobytes()).decode(),
    }
    if all(lang in corpora for lang in _VOTED):
        model["word_margin"] = WORD_MARGIN
        model["words"] = word_log_odds(corpora["fr"], corpora["en"])
    return model


def word_log_odds(french: list[str], english: list[str], *, min_count: int = 3, min_odds: float = 1.0) -> dict:
    """Each word's log-odds of French against English in the two corpora (smoothed, clipped to +-5), for the words
    seen `min_count` times or more whose odds reach `min_odds` either way: "prix" +5, "price" -5; a word both
    languages use ("roaming", "wifi", "code") is left out and votes for neither."""
    fr = Counter(word for text in french for word in _normalise(text).split())
    en = Counter(word for text in english for word in _normalise(text).split())
    total_fr, total_en = sum(fr.values()) or 1, sum(en.values()) or 1
    out = {}
    for word in sorted(set(fr) | set(en)):
        if fr[word] + en[word] < min_count:
            continue
        odds = math.log((fr[word] + 0.5) / total_fr) - math.log((en[word] + 0.5) / total_en)
        if abs(odds) >= min_odds:
            out[word] = round(max(-5.0, min(5.0, odds)), 2)
    return out
