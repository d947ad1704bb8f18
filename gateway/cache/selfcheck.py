"""Self-verification of semantic hits: a share of them is answered fresh and compared with the entry's answer.

    check = SelfCheck(share=0.02, registry=metrics.registry)   # cache.selfcheck_share in the config
    if check.refused(entry): miss                                # an entry that disagreed serves no more
    if check.sample(): answer as a miss, remember (entry, cached answer)
    check.compare(entry, cached_answer, fresh_answer)            # when the fresh answer is stored

The semantic verifier is calibrated offline; this checks it online, on the traffic it serves. A sampled hit
is not served: the request goes upstream as a miss (the user gets a fresh answer, no extra upstream call is
made for it) and its answer, stored as usual, is compared with the answer the matched entry would have
served: `gateway_cache_selfcheck_total{outcome="agree"|"disagree"}` counts the outcomes, and an entry that
disagrees is refused from then on (in this process: each replica learns on its own traffic, bounded).

Two answers agree when they give the same numbers (amounts, delays, counts: "5 days" and "30 days" do not)
and share at least `agree_at` of the content words of the shorter one (words of 3 letters or more, case
and accents folded). A generated answer is reworded from one call to the next; an answer to another
question is about other things.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import OrderedDict
from typing import Callable
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter

__all__ = ["SelfCheck", "similarity"]

_WORD = re.compile(r"[^\W\d_]{3,}")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in text if not unicodedata.combining(c))


def similarity(cached: str, fresh: str) -> float:
    """0 when the numbers differ, else the share of the shorter answer's content words the other has."""
    a, b = _fold(cached), _fold(fresh)
    if set(_NUMBER.findall(a)) != set(_NUMBER.findall(b)):
        return 0.0
    wa, wb = set(_WORD.findall(a)), set(_WORD.findall(b))
    if not wa or not wb:
        return 1.0 if wa == wb else 0.0
    return len(wa & wb) / min(len(wa), len(wb))


_COUNTERS: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()


def _counter(registry: CollectorRegistry | None) -> Counter:
    """One counter per registry (a registry refuses a second one of the same name)."""
    if registry is not None and registry in _COUNTERS:
        return _COUNTERS[registry]
    counter = Counter(
        "gateway_cache_selfcheck",
        "Semantic hits answered fresh and compared with the matched entry's answer, by outcome",
        ["outcome"],
        registry=registry,
    )
    if registry is not None:
        _COUNTERS[registry] = counter
    return counter


class SelfCheck:
    def __init__(
        self,
        share: float = 0.0,
        registry: CollectorRegistry | None = None,
        *,
        agree_at: float = 0.5,
        max_refused: int = 10_000,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.share, self.agree_at, self.max_refused = share, agree_at, max_refused
        self._draw = draw
        self._refused: OrderedDict[str, None] = OrderedDict()
        self.outcomes = _counter(registry)

    def sample(self) -> bool:
        """Whether this semantic hit is checked (answered fresh) rather than served."""
        return self.share > 0 and self._draw() < self.share

    def refused(self, entry: str) -> bool:
        return entry in self._refused

    def compare(self, entry: str, cached: str, fresh: str) -> bool:
        """Count the outcome; an entry whose answer disagrees with the fresh one is refused from now on."""
        agree = similarity(cached, fresh) >= self.agree_at
        self.outcomes.labels("agree" if agree else "disagree").inc()
        if not agree:
            self._refused[entry] = None
            if len(self._refused) > self.max_refused:
                self._refused.popitem(last=False)
        return agree
