"""gateway/cache/keys.py: what changes the key, what does not, controls, cacheability, personal data."""

from __future__ import annotations

import pytest

from gateway.cache import keys
from gateway.request import ChatRequest


def make(messages=None, headers=None, **body) -> ChatRequest:
    body = {"model": "support", "messages": messages or [{"role": "user", "content": "How do I get a refund?"}], **body}
    return ChatRequest(body=body, alias=body["model"], headers=headers or {})


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}]


def test_user_text_is_normalised_where_meaning_cannot_change():
    a = keys.exact_key(make(user("How do I get a refund?")))
    assert keys.exact_key(make(user("  how do I\n get   a REFUND?  "))) == a
    assert keys.exact_key(make(user("How do I get a refund!"))) != a


def test_code_is_kept_byte_for_byte():
    assert keys.normalise_user_text("Fix  THIS `Foo  Bar`") == "fix this `Foo  Bar`"
    fenced = "Explain:\n```py\nX  =  1\n```\n  THANKS "
    assert keys.normalise_user_text(fenced) == "explain: ```py\nX  =  1\n``` thanks"
    assert keys.exact_key(make(user("run `ls -A`"))) != keys.exact_key(make(user("run `ls -a`")))


def test_system_prompt_and_assistant_messages_are_not_normalised():
    base = [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "hi"}]
    other = [{"role": "system", "content": "answer in french."}, {"role": "user", "content": "hi"}]
    assert keys.exact_key(make(base)) != keys.exact_key(make(other))

    def turn(s):
        return [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": s},
            {"role": "user", "content": "and?"},
        ]

    assert keys.exact_key(make(turn("Hello"))) != keys.exact_key(make(turn("hello")))


def test_content_parts_are_normalised_like_strings():
    parts = [{"role": "user", "content": [{"type": "text", "text": "How do I  get a REFUND?"}]}]
    assert keys.exact_key(make(parts)) == keys.exact_key(
        make([{"role": "user", "content": [{"type": "text", "text": "how do i get a refund?"}]}])
    )


@pytest.mark.parametrize(
    "field,a,b",
    [
        ("temperature", 0, 0.5),
        ("top_p", 1, 0.5),
        ("max_tokens", 10, 20),
        ("seed", 1, 2),
        ("stop", ["x"], ["y"]),
        ("response_format", {"type": "json_object"}, {"type": "text"}),
        ("presence_penalty", 0, 1),
        ("some_future_field", 1, 2),
    ],
)
def test_every_field_that_changes_the_answer_changes_the_key(field, a, b):
    assert keys.exact_key(make(**{field: a})) != keys.exact_key(make(**{field: b}))
    assert keys.exact_key(make(**{field: a})) != keys.exact_key(make())


def test_delivery_fields_do_not_change_the_key():
    plain = keys.exact_key(make())
    assert (
        keys.exact_key(make(stream=True, stream_options={"include_usage": True}, user="u-1", metadata={"a": "b"}))
        == plain
    )
    assert keys.exact_key(make(n=1)) == plain


def test_alias_and_forced_tier_change_the_key():
    req = make()
    other = make()
    other.alias = "gpt-3.5-turbo"
    assert keys.exact_key(req) != keys.exact_key(other)
    assert keys.exact_key(make(headers={"x-gateway-tier": "heavy"})) != keys.exact_key(req)


def test_context_key_ignores_the_question_and_sampling_but_not_the_shape():
    a = keys.context_key(make(user("How do I get a refund?"), temperature=0))
    assert keys.context_key(make(user("Can I get my money back?"), temperature=0.3, seed=4)) == a
    assert (
        keys.context_key(
            make([{"role": "system", "content": "Other."}, {"role": "user", "content": "How do I get a refund?"}])
        )
        != a
    )
    assert keys.context_key(make(user("How do I get a refund?"), response_format={"type": "json_object"})) != a


def test_single_turn():
    assert keys.is_single_turn(make(user("hi")))
    assert not keys.is_single_turn(
        make(
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
        )
    )


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({}, (True, True)),
        ({"cache-control": "no-cache"}, (False, True)),
        ({"cache-control": "No-Store"}, (True, False)),
        ({"cache-control": "no-cache, no-store"}, (False, False)),
        ({"x-gateway-cache": "bypass"}, (False, False)),
        ({"cache-control": "max-age=0"}, (True, True)),
    ],
)
def test_controls(headers, expected):
    assert keys.controls(headers) == expected


def test_uncacheable():
    assert keys.uncacheable(make(), 0.7) is None
    assert keys.uncacheable(make(temperature=0.7), 0.7) is None
    assert keys.uncacheable(make(temperature=0.9), 0.7) == "temperature"
    assert keys.uncacheable(make(n=2), 0.7) == "n"
    assert keys.uncacheable(make(n=1), 0.7) is None
    assert keys.uncacheable(make(tools=[{"type": "function", "function": {"name": "f"}}]), 0.7) == "tools"


@pytest.mark.parametrize(
    "text",
    [
        "My email is jane.doe@example.com",
        "call me on +33 6 12 34 56 78",
        "call me at 06.12.34.56.78",
        "Where is order 48213?",
        "where is order #4821",
        "order n°1234 is late",
        "my order 123 is late",
        "tracking code FR4821X9",
        "parcel AB-1234-CD",
        "my account 12345678",
    ],
)
def test_personal_data_is_detected(text):
    assert keys.has_personal_data(text)


@pytest.mark.parametrize(
    "text",
    [
        "How do I get a refund?",
        "Do you ship to the UK in 2 days?",
        "Is shipping free over 50 euros?",
        "How do I enable 2FA?",
        "I bought an iPhone 15",
        "Can I return it within 30 days?",
        "Open in 2024?",
        "Does it support 1080p?",
    ],
)
def test_ordinary_questions_are_not_personal(text):
    assert not keys.has_personal_data(text)
