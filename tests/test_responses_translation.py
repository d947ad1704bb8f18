"""Responses API <-> chat completions, as pure functions."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import InvalidRequest
from gateway.responses_translation import StreamTranslator, chat_body, response_from_chat


def test_request_translation():
    body = chat_body(
        {
            "model": "support",
            "instructions": "Be brief.",
            "max_output_tokens": 50,
            "temperature": 0.2,
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "hi"},
                        {"type": "input_image", "image_url": "https://x/y.png"},
                    ],
                },
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "42"},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
            "reasoning": {"effort": "low"},
            "store": True,
            "stream": True,
        }
    )
    assert body == {
        "model": "support",
        "stream": True,
        "temperature": 0.2,
        "max_completion_tokens": 50,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}},
        "reasoning_effort": "low",
    }


@pytest.mark.parametrize(
    "request_body, param",
    [
        ({"model": "m", "input": "hi", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [{"role": {}, "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"model": "m", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": 1}]}]},
            "input[0].content[0].text",
        ),
        ({"input": "hi"}, "model"),
    ],
)
def test_refusals_name_the_param(request_body, param):
    with pytest.raises(InvalidRequest) as refused:
        chat_body(request_body)
    assert refused.value.param == param


def test_answer_translation():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    completion = {
        "id": "chatcmpl-1",
        "model": "light-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {"role": "assistant", "content": "Hello", "tool_calls": [call]},
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "total_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 1},
        },
    }
    response = response_from_chat(completion, {"model": "support", "input": "hi"})
    assert response["object"] == "response" and response["id"].startswith("resp_") and not response["store"]
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["content"][0] == {"type": "output_text", "text": "Hello", "annotations": []}
    assert response["output"][1]["type"] == "function_call" and response["output"][1]["call_id"] == "c1"
    assert response["usage"]["input_tokens"] == 5 and response["usage"]["input_tokens_details"]["cached_tokens"] == 1


def sse(*chunks) -> bytes:
    return b"".join(b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)) + b"\n\n" for c in chunks)


def events(raw: bytes) -> list[dict]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


def test_stream_translation_byte_by_byte():
    head = {"id": "x", "object": "chat.completion.chunk", "model": "light-model"}
    raw = sse(
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
        b"[DONE]",
    )
    translator = StreamTranslator({"model": "support", "input": "hi"})
    out = b"".join(translator.feed(raw[i : i + 1]) for i in range(len(raw))) + translator.close()
    got = events(out)
    assert [e["type"] for e in got] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in got] == list(range(len(got)))
    done = got[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == "Hello" and done["usage"]["total_tokens"] == 5
    assert b"event: response.completed\n" in out


def test_a_failed_upstream_mid_stream_is_response_failed():
    translator = StreamTranslator({"model": "m", "input": "hi"})
    out = translator.feed(
        sse(
            {"choices": [{"index": 0, "delta": {"content": "a"}}]},
            {"error": {"message": "cut", "type": "api_error", "code": "upstream_error"}},
        )
    )
    assert events(out)[-1]["type"] == "response.failed" and translator.close() == b""
