"""Self-verification of semantic hits: a share of them is answered fresh and compared with the entry's answer.

    check = SelfCheck(share=0.02, registry=metrics.registry)   # cache.selfcheck_share in the config
    if check.refused(entry): miss                                # an entry that disagreed serves no more
    if check.sample(): answer as a miss, remember (entry, cached answer)
    check.compare(entry, cached_answer, fresh_answer)            # when the fresh answer is stored
    if check.sample(): remember the nearest neighbour of a miss   # misses with a close neighbour
    check.compare_near(neighbour_answer, fresh_answer)           # a hit the verifier refused?

The semantic verifier is calibrated offline; this checks it online, on the traffic it serves. A sampled hit
is not served: the request goes upstream as a miss (the user gets a fresh answer, no extra upstream call is
made for it) and its answer, stored as usual, is compared with the answer the matched entry would have
served: `gateway_cache_selfcheck_total{outcome="agree"|"disagree"}` counts the outcomes, and an entry that
disagrees is refused from then on: at once in this process, and on every replica once the service has
deleted it from the shared store (its own question is answered fresh, and stored anew, next time).

Two answers agree when they give the same numbers (amounts, delays, counts: "5 days" and "30 days" do not)
and share at least `agree_at` of the content words of the shorter one (words of 3 letters or more, case
and accents folded). A generated answer is reworded from one call to the next; an answer to another
question is about other things.

Misses are checked too, at the same share and at no upstream cost (a miss is answered anyway): when the
verifier refused every stored question, the nearest one by cosine (at or above the verifier's floor) is
remembered, and once the fresh answer is stored it is compared with that neighbour's answer, off the
response path. `gateway_cache_near_miss_checks_total{outcome="agree"}` counts refused neighbours that had
the same answer: recall the verifier left on the table, measured on live traffic (the offline evals measure
it on labelled pools). Only counted: a refusal is never turned into a hit by it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import unicodedata
from collections import OrderedDict
from typing import Awaitable, Callable
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


log = logging.getLogger("gateway.cache")

_COUNTERS: WeakKeyDictionary[CollectorRegistry, dict[str, Counter]] = WeakKeyDictionary()
_HELP = {
    "gateway_cache_selfcheck": "Semantic hits answered fresh and compared with the matched entry's answer, by outcome",
    "gateway_cache_near_miss_checks": "Misses compared with their nearest refused neighbour's answer, by outcome"
    " (agree: a hit the verifier refused)",
}


def _counter(registry: CollectorRegistry | None, name: str = "gateway_cache_selfcheck") -> Counter:
    """One counter of each name per registry (a registry refuses a second one of the same name)."""
    known = _COUNTERS.get(registry, {}) if registry is not None else {}
    if name in known:
        return known[name]
    counter = Counter(name, _HELP[name], ["outcome"], registry=registry)
    if registry is not None:
        _COUNTERS.setdefault(registry, {})[name] = counter
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
        self.near_outcomes = _counter(registry, "gateway_cache_near_miss_checks")
        self._tasks: set[asyncio.Task] = set()

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

    def compare_near(self, neighbour: str, fresh: str) -> bool:
        """Count whether a miss's fresh answer agrees with its nearest refused neighbour's."""
        agree = similarity(neighbour, fresh) >= self.agree_at
        self.near_outcomes.labels("agree" if agree else "disagree").inc()
        return agree

    def later(self, check: Awaitable[None]) -> None:
        """Run a check off the response path; at most 64 at once (more are dropped, never queued)."""
        if len(self._tasks) >= 64:
            if asyncio.iscoroutine(check):
                check.close()
            return
        task = asyncio.ensure_future(check)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def drain(self) -> None:
        """Wait for the checks under way (at shutdown, before the store closes)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cache self-check failed: %r", task.exception())
