"""The cache switched off: it stays in the pipeline as a pass-through so the order never changes."""

from __future__ import annotations

from gateway.steps import NoCache as DisabledCache

__all__ = ["DisabledCache"]
