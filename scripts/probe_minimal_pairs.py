"""Minimal-pair probe of the semantic cache's verifier: every pool question against variants of itself that need
another answer (a word swapped for its opposite, a number changed, two noun phrases around a role word traded).
A variant the verifier would serve from the question is a likely false hit; read them, most are nonsense the
generator made ("How long does delivery give?"), the rest show a family of siblings the checks miss.

    .venv/bin/python scripts/probe_minimal_pairs.py data/cache/pool_fresh9.jsonl ...   # default: every pool
"""

from __future__ import annotations

import glob
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OPPOSITES = (
    "add remove|activate deactivate|enable disable|increase decrease|raise lower|open close|buy sell|send receive"
    "|lend borrow|upload download|import export|before after|earlier later|early late|more less|upgrade downgrade"
    "|lock unlock|subscribe unsubscribe|include exclude|included excluded|accept refuse|start stop|pause resume"
    "|above below|over under|minimum maximum|first last|new used|deposit withdraw|join leave|collect deliver"
    "|install uninstall|connect disconnect|book cancel|extend shorten|longer shorter|bigger smaller|higher lower"
    "|inside outside|domestic international|weekday weekend|morning evening|monthly yearly|online offline"
    "|with without|ajouter supprimer|activer désactiver|augmenter baisser|ouvrir fermer|acheter vendre"
    "|envoyer recevoir|prêter emprunter|avant après|plus moins|commencer arrêter|réserver annuler|avec sans"
    "|premier dernier|neuf occasion|mensuel annuel|entrer sortir|déposer retirer|allumer éteindre"
    "|connecter déconnecter|accepter refuser|suspendre reprendre|matin soir"
).split("|")
SWAP = {w: pair.split()[1 - i] for pair in OPPOSITES for i, w in enumerate(pair.split())}
WORD = re.compile(r"\b\w+\b")
DET = r"(?:the|my|your|a|an|our|his|her|their|le|la|les|mon|ma|mes|ton|ta|votre|vos|un|une|son|sa)"
ROLE_SWAP = re.compile(
    rf"\b({DET}) (\w{{3,}}) (to|from|into|for|of|with|over|vers|en|pour|de|à|sur|contre|avec|par) ({DET}) (\w{{3,}})\b",
    re.I,
)


def variants(text: str) -> list[tuple[str, str]]:
    out = []
    for m in WORD.finditer(text):
        word = m.group(0)
        if word.lower() in SWAP:
            other = SWAP[word.lower()]
            out.append(
                ("opposite", text[: m.start()] + (other.capitalize() if word[0].isupper() else other) + text[m.end() :])
            )
        elif word.isdigit():
            out.append(("number", text[: m.start()] + str(int(word) * 2 + 1) + text[m.end() :]))
    for m in ROLE_SWAP.finditer(text):
        d1, n1, role, d2, n2 = m.groups()
        if n1.lower() != n2.lower():
            out.append(("roles", text[: m.start()] + f"{d1} {n2} {role} {d2} {n1}" + text[m.end() :]))
    return out


def main(paths: list[str]) -> int:
    from gateway.cache.semantic import Candidates
    from gateway.cache.verifier import Verifier
    from gateway.static_embedding import default_model

    model, verifier = default_model(), Verifier.load()
    counts: dict[str, list[int]] = {}
    for path in paths or sorted(glob.glob(str(ROOT / "data/cache/pool*.jsonl"))):
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            text = json.loads(line)["text"]
            stored = Candidates.from_rows([(text, model.embed(text), 0)])
            for kind, variant in variants(text):
                seen = counts.setdefault(kind, [0, 0])
                seen[0] += 1
                if verifier.best(variant, model.embed(variant), stored) is not None:
                    seen[1] += 1
                    print(f"served [{kind}] {text!r} ~ {variant!r}")
    for kind, (made, served) in counts.items():
        print(f"{kind}: {made} variants, {served} served")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
