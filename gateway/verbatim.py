"""The client's JSON forwarded exactly: what a re-serialisation would change travels as the client's bytes.

    body = ClientBody.parse(raw)               # a dict, remembering `raw`; orjson errors as usual
    encode(body, {"model": "gpt-4o-mini"})     # the upstream body: `body` with those top-level fields set

The hot path re-serialises the parsed body with orjson (~1 µs per field). Two things would not survive it:
- numbers of 19 digits or more: orjson reads an integer beyond 64 bits as a float (seed
  99999999999999999999999 would leave as 1e+23) and rounds long fractions to a double;
- nesting deeper than orjson writes (254 levels; it reads 1,024).
For those the upstream gets the client's own bytes with only the changed top-level fields replaced
(`replace_fields`), and the cache leaves the request alone (its key is a re-serialisation too).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["ClientBody", "encode", "must_stay_verbatim", "replace_fields"]

_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
# A JSON string, or one structural character: enough to walk the top level of a valid document.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[{}\[\],:]')


class ClientBody(dict[str, Any]):
    """The parsed JSON object, with the bytes it came from."""

    __slots__ = ("raw", "verbatim")
    raw: bytes
    verbatim: bool

    @classmethod
    def parse(cls, raw: bytes) -> Any:
        """orjson.loads(raw); an object comes back as a ClientBody (anything else as orjson gives it)."""
        value = orjson.loads(raw)
        if not isinstance(value, dict):
            return value
        body = cls(value)
        body.raw = raw
        body.verbatim = must_stay_verbatim(raw)
        return body


def must_stay_verbatim(raw: bytes) -> bool:
    """A run of 19+ digits anywhere (inside strings too: a false alarm costs only the slower path).
    One translate and one substring search: ~1 ms per MiB, where a regex took ~90 ms."""
    return _LONG_NUMBER in raw.translate(_DIGITS)


def needs_verbatim(body: dict[str, Any]) -> bool:
    return isinstance(body, ClientBody) and body.verbatim


def encode(body: dict[str, Any], changes: dict[str, Any]) -> bytes:
    """`body` with `changes` applied to its top-level fields, as JSON bytes."""
    if not isinstance(body, ClientBody):
        return orjson.dumps({**body, **changes})
    if not body.verbatim:
        try:
            return orjson.dumps({**body, **changes})
        except TypeError:  # nested deeper than orjson writes: the client's bytes can still go
            pass
    return replace_fields(body.raw, changes)


def replace_fields(raw: bytes, changes: dict[str, Any]) -> bytes:
    """The JSON object `raw` (valid: it was parsed) with the top-level fields in `changes` set, every other
    field's bytes untouched and in place; new fields are appended."""
    out: list[bytes] = []
    depth, last, seen = 0, 0, set()
    key: str | None = None
    value_start = 0
    expect_key = False
    for match in _TOKEN.finditer(raw):
        token = match.group()
        first = token[0]
        if first == 0x22:  # a string
            if depth == 1 and expect_key:
                key = orjson.loads(token)
                expect_key = False
        elif first in (0x7B, 0x5B):  # { [
            depth += 1
            if depth == 1:
                expect_key = True
        elif first in (0x7D, 0x5D) or (first == 0x2C and depth == 1):  # } ] or a top-level comma
            if depth == 1 and key is not None:
                if key in changes:  # every occurrence: parsers differ on which of two copies wins
                    out.append(raw[last:value_start])
                    out.append(orjson.dumps(changes[key]))
                    last = match.start()
                    seen.add(key)
                key = None
            if first == 0x2C:
                expect_key = True
            else:
                depth -= 1
                if depth == 0:
                    end = match.start()
                    break
        elif first == 0x3A and depth == 1:  # the colon after a top-level key
            value_start = match.end()
    else:
        raise ValueError("not a JSON object")
    out.append(raw[last:end])
    added = {k: v for k, v in changes.items() if k not in seen}
    if added:
        empty = raw[:end].rstrip().endswith(b"{")
        extra = b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in added.items())
        out.append(extra if empty else b"," + extra)
    out.append(raw[end:])
    return b"".join(out)
