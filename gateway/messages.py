"""The text of chat messages, as the steps read it (intents, cache keys, difficulty)."""

from __future__ import annotations

from typing import Any

__all__ = ["content_text", "last_user_text"]


def content_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    """Text of the last user message (the one the embedding is computed on), or "" if none."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""
