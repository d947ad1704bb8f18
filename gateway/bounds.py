"""Bounds on the work one request causes, whatever its size (the body limit is 1 MiB).

    clip(text)             the text the embedding, intents, cache guards and difficulty see: at most
                           TEXT_LIMIT characters, the head and the tail of a longer one
    CACHE_TEXT_LIMIT       user text above this is never cached (keys.uncacheable: "too_long")
    LOOP_TEXT_LIMIT        above this, a question's regex work (guards, difficulty, personal data) runs
                           off the event loop, with `await off_loop(f, ...)`: it may take over a millisecond
    LOOP_BODY_LIMIT        the same for parsing a body
Why head and tail: a long message is a paste with the question before or after it (a stack trace, a
document, then "what is wrong?"); its middle says little about intent or difficulty. 3,000 characters is
what the difficulty model was trained on (its features, like the embedding, saturate long before), and
the sentence encoder costs ~1 ms per 100 characters: a whole 1 MiB message took 24.5 s.

Why long user text is not cached: deciding that a question holds no personal data scans all of it
(~1 µs per character in Python's regex engine, linear but ~1 s for 1 MiB), and a semantic match on a
clipped text could pair two documents that differ only in their middle. 16,000 characters is about four
pages; above it a repeat is rare and the answer is fetched as usual.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

__all__ = ["CACHE_TEXT_LIMIT", "LOOP_BODY_LIMIT", "LOOP_TEXT_LIMIT", "TEXT_LIMIT", "clip", "off_loop"]

T = TypeVar("T")

TEXT_LIMIT = 3000
CACHE_TEXT_LIMIT = 16_000
LOOP_TEXT_LIMIT = 1000  # ~1 ms of the heaviest step (the cache guards' features) on an idle core
LOOP_BODY_LIMIT = 256 * 1024  # a chat body above this is parsed and checked off the event loop


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """`text` itself when it fits; else its first and last limit/2 characters, joined by a newline."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "\n" + text[-half:]


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU work in the default executor: the event loop keeps serving other requests (and /healthz)
    meanwhile, getting the GIL back at least every switch interval (5 ms)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
