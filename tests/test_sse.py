"""The SSE relay: bytes through untouched, cut only at event boundaries; usage read, and hidden on demand."""

import orjson
import pytest

from gateway.sse import StreamRelay

ROLE = b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
WORDS = [
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"%s "}}]}\n\n' % w
    for w in (b"hello", b"dear", b"customer")
]
STOP = b'data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
USAGE = b'data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = ROLE + b"".join(WORDS) + STOP + USAGE + DONE


def relay_all(pieces, **kwargs):
    relay = StreamRelay(started=0.0, **{"hide_usage": False, "collect": False, **kwargs})
    out = b"".join(relay.feed(piece) for piece in pieces) + relay.flush()
    return relay, out


def cuts(data: bytes):
    """The stream as the upstream might deliver it: whole, one event per read, or in 5-byte slivers."""
    events = [e + b"\n\n" for e in data.split(b"\n\n")[:-1]]
    return {"whole": [data], "per event": events, "slivers": [data[i : i + 5] for i in range(0, len(data), 5)]}


@pytest.mark.parametrize("how", ["whole", "per event", "slivers"])
@pytest.mark.parametrize("collect", [False, True])
def test_usage_is_read_and_the_bytes_pass_untouched(how, collect):
    relay, out = relay_all(cuts(STREAM)[how], collect=collect)
    assert out == STREAM
    assert relay.usage == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert relay.finished and relay.ttft is not None


@pytest.mark.parametrize("how", ["whole", "per event", "slivers"])
@pytest.mark.parametrize("collect", [False, True])
def test_the_usage_chunk_is_hidden_from_a_client_that_did_not_ask(how, collect):
    relay, out = relay_all(cuts(STREAM)[how], hide_usage=True, collect=collect)
    assert out == STREAM.replace(USAGE, b"")
    assert relay.usage["total_tokens"] == 10
    assert relay.finished


def test_usage_inside_a_content_chunk_is_never_hidden():
    """Upstreams that report usage on every chunk (choices not empty): the content must still arrive."""
    with_usage = WORDS[0].replace(b"}]}\n\n", b'}],"usage":{"total_tokens":1}}\n\n')
    data = ROLE + with_usage + STOP + DONE
    relay, out = relay_all([data], hide_usage=True)
    assert out == data and relay.usage == {"total_tokens": 1}


def test_content_is_collected_only_for_finished_streams():
    relay, _ = relay_all(cuts(STREAM)["per event"], collect=True)
    assert relay.content == "hello dear customer "
    unfinished, _ = relay_all(cuts(ROLE + WORDS[0])["whole"], collect=True)
    assert unfinished.content is None


def test_tool_calls_are_not_collected():
    call = (
        b"data: "
        + orjson.dumps(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "t1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ]
                        },
                    }
                ]
            }
        )
        + b"\n\n"
    )
    relay, _ = relay_all([ROLE + call + STOP + DONE], collect=True)
    assert relay.content is None and relay.ttft is not None


def test_the_first_token_is_not_the_empty_role_chunk():
    relay, _ = relay_all([ROLE])
    assert relay.ttft is None
    relay.feed(WORDS[0])
    assert relay.ttft is not None


OPENAI_STYLE = STREAM.replace(b'"choices":[{', b'"usage":null,"choices":[{').replace(
    b'"finish_reason":"stop"}]}', b'"finish_reason":"stop"}],"usage":null}'
)


@pytest.mark.parametrize("how", ["whole", "per event", "slivers"])
@pytest.mark.parametrize("collect", [False, True])
def test_usage_null_is_dropped_when_the_client_did_not_ask(how, collect):
    """OpenAI puts "usage":null in every chunk once include_usage is asked; a client that did not ask gets
    chunks without it, as OpenAI sends them then and as the cache replays them."""
    assert OPENAI_STYLE.count(b'"usage":null') == 6  # both forms: ,"usage":null and "usage":null,
    _, hidden = relay_all(cuts(OPENAI_STYLE)[how], hide_usage=True, collect=collect)
    assert b'"usage"' not in hidden
    for event in hidden.split(b"\n\n")[:-2]:
        assert "choices" in orjson.loads(event[6:])
    _, shown = relay_all(cuts(OPENAI_STYLE)[how], hide_usage=False, collect=collect)
    assert shown == OPENAI_STYLE
