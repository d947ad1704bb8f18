"""The client's JSON forwarded exactly: big numbers and deep nesting survive; only the changed fields move."""

from __future__ import annotations

import json

import orjson
import pytest

from gateway.verbatim import ClientBody, encode, must_stay_verbatim, replace_fields


def test_plain_bodies_take_the_fast_path():
    body = ClientBody.parse(b'{"model": "a", "seed": 42, "messages": []}')
    assert not body.verbatim
    assert orjson.loads(encode(body, {"model": "b"})) == {"model": "b", "seed": 42, "messages": []}


def test_big_integers_are_forwarded_exactly():
    raw = (
        b'{"model":"support","seed":99999999999999999999999,"x":{"n":-92233720368547758090},'
        b'"f":0.12345678901234567890123}'
    )
    body = ClientBody.parse(raw)
    assert body.verbatim and body["seed"] == 1e23  # what orjson makes of it
    out = encode(body, {"model": "light-model"})
    assert json.loads(out) == {
        "model": "light-model",
        "seed": 99999999999999999999999,
        "x": {"n": -92233720368547758090},
        "f": json.loads("0.12345678901234567890123"),
    }
    assert b"99999999999999999999999" in out and b"0.12345678901234567890123" in out


def test_deep_nesting_is_forwarded():
    deep = "[" * 1000 + "]" * 1000
    raw = (
        '{"model": "support", "metadata": {"x": %s}, "messages": [{"role": "user", "content": "hi"}]}' % deep
    ).encode()
    body = ClientBody.parse(raw)
    with pytest.raises(TypeError):
        orjson.dumps(dict(body))
    out = encode(body, {"model": "light-model", "stream_options": {"include_usage": True}})
    assert out.startswith(b'{"model":"light-model", "metadata": {"x": [[[')
    assert out.endswith(b'}],"stream_options":{"include_usage":true}}')
    assert deep.encode() in out


@pytest.mark.parametrize(
    "raw, changes, expected",
    [
        (b"{}", {"model": "m"}, {"model": "m"}),
        (b' { "a" : "x\\"}," , "model" : [1, {"model": 2}] } ', {"model": "m"}, {"a": 'x"},', "model": "m"}),
        (b'{"model":"a","model":"b"}', {"model": "m"}, {"model": "m"}),
        (
            b'{"stream_options":{"include_usage":false},"z":1}',
            {"stream_options": {"include_usage": True}},
            {"stream_options": {"include_usage": True}, "z": 1},
        ),
    ],
)
def test_replace_fields(raw, changes, expected):
    out = replace_fields(raw, changes)
    assert orjson.loads(out) == expected
    assert b'"model":"a"' not in out


def test_long_digit_runs_are_spotted_quickly():
    assert must_stay_verbatim(b'{"seed": 1234567890123456789}')
    assert not must_stay_verbatim(b'{"seed": 123456789012345678}')
