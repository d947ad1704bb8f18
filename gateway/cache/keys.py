"""What a cached answer is keyed on, and which requests may use the cache at all. Pure, no I/O.

    exact_key(req)        hash of everything that changes the answer (alias, forced tier, messages, params)
    context_key(req)      the semantic partition: the same minus the user's words, temperature, top_p, seed
    controls(headers)     (lookup, store) from `Cache-Control` and `x-gateway-cache`
    uncacheable(req, t)   why a request may not use the cache (n > 1, tools, temperature, user text over
                          bounds.CACHE_TEXT_LIMIT, numbers of 19+ digits, logprobs), or None
    has_personal_data(s)  e-mail, phone number, order id / reference, long digit run

The canonical form is orjson with sorted keys, hashed with blake2b (128 bits). User messages are
normalised where it cannot change the meaning: whitespace collapsed, stripped, casefolded — except inside
code (``` fences and `inline`), which is kept byte for byte. System prompts, assistant and tool messages
are never normalised. Fields that do not change the answer (stream, stream_options, user, metadata, store,
service_tier, ...) are left out; every other field, known or not, is part of the key.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from gateway.bounds import CACHE_TEXT_LIMIT
from gateway.request import ChatRequest, content_text
from gateway.verbatim import needs_verbatim

__all__ = [
    "NOT_IN_KEY",
    "exact_key",
    "context_key",
    "controls",
    "uncacheable",
    "has_personal_data",
    "normalise_user_text",
    "is_single_turn",
]

# Body fields that never change the answer: delivery, accounting, identification.
NOT_IN_KEY = frozenset(
    {"stream", "stream_options", "user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier"}
)
# Also left out of the semantic partition: they change the sample, not what a good answer is.
NOT_IN_CONTEXT = NOT_IN_KEY | {"messages", "temperature", "top_p", "seed"}

_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)
_SPACE = re.compile(r"\s+")
_OPT = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

# Every pattern here runs in linear time (tests/test_bounds.py): a pattern that may start anywhere inside a
# run it then scans to its end (`[\w.+-]+@` without a lookbehind) costs quadratic time; 64 KiB of "y" took 20 s.
# Personal data: e-mail, phone number (8+ digits with separators), long digit run (5+), order id / reference
# written as `#123`, `n°123`, `order 1234`, or a token mixing letters and 3+ digits (A12B34, FR-4821X).
_PERSONAL = re.compile(
    r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+"
    r"|(?<![\w])\+?\d(?:[\s.()-]?\d){7,}(?![\w])"
    r"|\d{5,}"
    r"|(?:#|\bn[°o]\.?\s?)\s?\d{3,}"
    r"|\b(?:order|commande|invoice|facture|ticket|tracking|colis|parcel|package)\s*(?:id|number|no\.?|n°|#)?\s*:?\s*#?\d{3,}"
    r"|(?<![\w-])(?=[a-z0-9-]*\d[a-z0-9-]*\d[a-z0-9-]*\d)(?=[a-z0-9-]*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*\b",
    re.I,
)
_SAFE_CODES = re.compile(r"^(?:\d{3,4}(?:p|k|hz|mb|gb|go|ko|mo|mah|mm|cm|km|kg|ml)|[a-z]\d{3}[a-z]?)$", re.I)


def normalise_user_text(text: str) -> str:
    """Collapse whitespace, strip and casefold, outside code spans and fences."""
    if "`" not in text:
        return _SPACE.sub(" ", text).strip().casefold()
    out, last = [], 0
    for match in _CODE.finditer(text):
        out.append(_SPACE.sub(" ", text[last : match.start()]).casefold())
        out.append(match.group(0))
        last = match.end()
    out.append(_SPACE.sub(" ", text[last:]).casefold())
    return "".join(out).strip()


def _message(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("role") != "user":
        return message
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": normalise_user_text(content)}
    if isinstance(content, list):
        parts = [
            {**p, "text": normalise_user_text(p["text"])}
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            else p
            for p in content
        ]
        return {**message, "content": parts}
    return message


def _digest(payload: Any) -> str:
    return hashlib.blake2b(orjson.dumps(payload, option=_OPT), digest_size=16).hexdigest()


def _fields(body: dict[str, Any], leave_out: frozenset[str]) -> dict[str, Any]:
    fields = {k: v for k, v in body.items() if k not in leave_out}
    if fields.get("n") == 1:
        del fields["n"]  # the default: `n: 1` and no n ask for the same answer
    return fields


def exact_key(req: ChatRequest, side: str = "") -> str:
    """`side`: who may read the answer (canary or stable variant, and the client key when cache.scope is
    "key"); answers of one side are never served to another."""
    body = req.body
    fields = _fields(body, NOT_IN_KEY)
    fields["model"] = req.alias
    fields["messages"] = [_message(m) for m in body["messages"]]
    return _digest({"v": 1, "tier": req.headers.get("x-gateway-tier"), "side": side, "body": fields})


def context_key(req: ChatRequest, side: str = "") -> str:
    """The semantic partition (beside the language): side, alias, forced tier, system prompt,
    output-shaping params."""
    fields = _fields(req.body, NOT_IN_CONTEXT)
    fields["model"] = req.alias
    return _digest(
        {"v": 1, "tier": req.headers.get("x-gateway-tier"), "side": side, "system": req.system_prompt, "body": fields}
    )


def is_single_turn(req: ChatRequest) -> bool:
    """Only system/developer messages and one user message: the last user message is the whole question."""
    users = 0
    for message in req.body["messages"]:
        role = message.get("role")
        if role == "user":
            users += 1
        elif role not in ("system", "developer"):
            return False
    return users == 1


def controls(headers: dict[str, str]) -> tuple[bool, bool]:
    """(may look up, may store). `x-gateway-cache: bypass`: neither. `Cache-Control: no-cache`: skip the
    lookup, store the fresh answer. `no-store`: do not store this answer (a cached one may still be
    served, as in HTTP, RFC 9111 5.2.1.5). Both: neither."""
    if headers.get("x-gateway-cache", "").strip().lower() == "bypass":
        return False, False
    value = headers.get("cache-control")
    if not value:
        return True, True
    tokens = {token.strip().lower() for token in value.split(",")}
    return "no-cache" not in tokens, "no-store" not in tokens


def uncacheable(req: ChatRequest, max_temperature: float) -> str | None:
    """Why this request can never use the cache, or None. An absent temperature counts as cacheable: the
    client asked for no particular randomness."""
    body = req.body
    n = body.get("n")
    if n is not None and n != 1:
        return "n"
    if body.get("tools") or body.get("functions"):
        return "tools"
    if body.get("logprobs") or body.get("top_logprobs"):
        return "logprobs"  # a cached answer keeps the text, not the token probabilities
    temperature = body.get("temperature")
    if temperature is not None and temperature > max_temperature:
        return "temperature"
    if sum(len(text) for text in user_texts(req)) > CACHE_TEXT_LIMIT:
        return "too_long"
    if needs_verbatim(body):
        return "verbatim"  # a number orjson would round: the key, a re-serialisation, could pair two
    return None


_HINT = re.compile(r"[\d@]")  # every personal-data pattern needs a digit or an @: prose without one is clean


def has_personal_data(text: str) -> bool:
    if not _HINT.search(text):
        return False
    for match in _PERSONAL.finditer(text):
        if not _SAFE_CODES.match(match.group(0)):
            return True
    return False


def user_texts(req: ChatRequest) -> list[str]:
    return [content_text(m.get("content")) for m in req.body["messages"] if m.get("role") == "user"]
