"""OpenAI's Responses API spoken over chat completions: pure translation, no I/O.

    chat_body(request)                       a /v1/responses body -> a /v1/chat/completions body
    response_from_chat(completion, request)  a chat.completion -> a `response` object
    StreamTranslator(request).feed(bytes)    chat.completion.chunk SSE -> Responses SSE events

Every upstream speaks chat completions, so /v1/responses goes through the same pipeline as chat (auth,
limits, intent, cache, routing, canary, fallbacks, metrics) as the chat body below, and only the
answer is rewritten. Supported: `input` as text or message items (input_text/input_image/output_text
parts, function_call and function_call_output items), `instructions`, `max_output_tokens`,
`temperature`, `top_p`, function `tools` and `tool_choice`, `text.format` (json_object, json_schema),
`reasoning.effort`, `parallel_tool_calls`, `user`, `metadata`.

No server-side state: every response is `store: false`. `previous_response_id` and `conversation` are
refused (400): keeping conversations would put user text in Redis for a feature the client can do itself
by sending the earlier items in `input`, and a gateway replica must not depend on another's memory.
Built-in tools (web_search, file_search, computer use...) are refused too: no chat upstream runs them.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from gateway.errors import InvalidRequest

__all__ = ["StreamTranslator", "chat_body", "response_from_chat"]

_PASSED = (
    "temperature",
    "top_p",
    "user",
    "metadata",
    "parallel_tool_calls",
    "service_tier",
    "top_logprobs",
    "safety_identifier",
    "prompt_cache_key",
)
_STATEFUL = ("previous_response_id", "conversation")
_ROLES = {"user", "assistant", "system", "developer"}


def _object(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one (a missing or malformed field reads as empty)."""
    return value if isinstance(value, dict) else {}


def _new_id(prefix: str) -> str:
    return prefix + os.urandom(12).hex()


# ------------------------------------------------------------------------------------------ the request


def chat_body(request: dict[str, Any]) -> dict[str, Any]:
    """The chat completions body that asks the same question. InvalidRequest (with `param`) for what the
    Responses API would refuse or what the gateway cannot serve."""
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    for name in _STATEFUL:
        if request.get(name) is not None:
            raise InvalidRequest(
                f"'{name}' is not supported: the gateway keeps no responses (store: false); "
                "send the earlier turns in 'input'",
                param=name,
            )
    messages: list[dict[str, Any]] = []
    instructions = request.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string", param="instructions")
        messages.append({"role": "system", "content": instructions})
    messages.extend(_messages(request.get("input")))
    body: dict[str, Any] = {"model": model, "messages": messages}
    for name in _PASSED:
        if request.get(name) is not None:
            body[name] = request[name]
    if request.get("max_output_tokens") is not None:
        body["max_completion_tokens"] = request["max_output_tokens"]
    if request.get("stream") is not None:
        body["stream"] = request["stream"]
    if request.get("tools"):
        body["tools"] = _tools(request["tools"])
    if request.get("tool_choice") is not None:
        body["tool_choice"] = _tool_choice(request["tool_choice"])
    text = request.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        body.update(_response_format(text["format"]))
    elif text is not None and not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object", param="text")
    reasoning = request.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        body["reasoning_effort"] = reasoning["effort"]
    return body


def _messages(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise InvalidRequest("'input' is required: a string or a non-empty array of items", param="input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where} must be an object", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if not isinstance(role, str) or role not in _ROLES:
                raise InvalidRequest(f"{where}.role must be one of {', '.join(sorted(_ROLES))}", param=f"{where}.role")
            messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = {
                "id": item.get("call_id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments")},
            }
            if not all(isinstance(v, str) for v in (call["id"], item.get("name"), item.get("arguments"))):
                raise InvalidRequest(f"{where} needs string call_id, name and arguments", param=where)
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls"):
                messages[-1]["tool_calls"].append(call)  # parallel calls: one assistant message
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(item.get("call_id"), str) or not isinstance(output, (str, list)):
                raise InvalidRequest(f"{where} needs a string call_id and output", param=where)
            text = output if isinstance(output, str) else _content(output, f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        else:
            raise InvalidRequest(
                f"{where}.type {kind!r} is not supported by the gateway (it has no state and no built-in tools)",
                param=f"{where}.type",
            )
    return messages


def _content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or an array of content parts", param=where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                raise InvalidRequest(f"{where}[{j}].text must be a string", param=f"{where}[{j}].text")
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"]}
            if part.get("detail") is not None:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "refusal" and isinstance(part.get("refusal"), str):
            parts.append({"type": "text", "text": part["refusal"]})
        else:
            raise InvalidRequest(
                f"{where}[{j}] must be an input_text, output_text or input_image (with an image_url) part",
                param=f"{where}[{j}]",
            )
    return parts


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("name"), str):
            raise InvalidRequest(
                f"tools[{i}]: only function tools (type 'function' with a name) are supported", param=f"tools[{i}]"
            )
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest("'tool_choice' must be 'auto', 'none', 'required' or a function", param="tool_choice")


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    kind = fmt.get("type")
    if kind in (None, "text"):
        return {}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"response_format": {"type": "json_schema", "json_schema": schema}}
    raise InvalidRequest("text.format.type must be text, json_object or json_schema", param="text.format.type")


# ------------------------------------------------------------------------------------------- the answer


def _shell(request: dict[str, Any], model: str, status: str) -> dict[str, Any]:
    """The fields of a `response` that echo the request."""
    tools = request.get("tools") if isinstance(request.get("tools"), list) else []
    fmt = _object(request.get("text")).get("format")
    reasoning = _object(request.get("reasoning"))
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": None},
        "store": False,
        "temperature": request.get("temperature", 1.0),
        "text": {"format": fmt or {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": tools,
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt = _object(usage.get("prompt_tokens_details"))
    completion = _object(usage.get("completion_tokens_details"))
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0),
        "input_tokens_details": {"cached_tokens": int(prompt.get("cached_tokens") or 0)},
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "output_tokens_details": {"reasoning_tokens": int(completion.get("reasoning_tokens") or 0)},
        "total_tokens": int(usage.get("total_tokens") or 0),
    }


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id or _new_id("msg_"),
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _call_item(call_id: str, name: str, arguments: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id or _new_id("fc_"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def _finish(response: dict[str, Any], finish_reason: Any) -> None:
    reason = _INCOMPLETE.get(finish_reason) if isinstance(finish_reason, str) else None
    if reason is not None:
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": reason}


def response_from_chat(completion: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """A `response` object from a chat.completion."""
    response = _shell(request, str(completion.get("model") or request.get("model")), "completed")
    choices = completion.get("choices") if isinstance(completion.get("choices"), list) else []
    choice = choices[0] if choices and isinstance(choices[0], dict) else {}
    message = _object(choice.get("message"))
    content = message.get("content")
    if isinstance(content, str) and (content or not message.get("tool_calls")):
        response["output"].append(_message_item(content))
    for call in message.get("tool_calls") or ():
        if isinstance(call, dict):
            function = _object(call.get("function"))
            response["output"].append(
                _call_item(str(call.get("id")), str(function.get("name")), str(function.get("arguments") or ""))
            )
    _finish(response, choice.get("finish_reason"))
    response["usage"] = _usage(completion.get("usage"))
    return response


class StreamTranslator:
    """Chat completion chunks (SSE bytes, as relayed) in, Responses API events (SSE bytes) out:
    response.created / in_progress, then for the text output_item.added, content_part.added,
    output_text.delta..., output_text.done, content_part.done, output_item.done, then one function_call
    item per tool call (with its arguments whole), then response.completed (or .incomplete) with usage.
    A chat error event (the upstream failed mid-stream) becomes response.failed."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.response = _shell(request, str(request.get("model")), "in_progress")
        self.sequence = 0
        self.text_id: str | None = None
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.started = False
        self.ended = False
        self._tail = b""

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def start(self) -> bytes:
        self.started = True
        return self._event("response.created", response=self.response) + self._event(
            "response.in_progress", response=self.response
        )

    def feed(self, chunk: bytes) -> bytes:
        data = self._tail + chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._tail = data
            return b""
        complete, self._tail = data[:end], data[end + 2 :]
        out = [] if self.started else [self.start()]
        for event in complete.split(b"\n\n"):
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    out.append(self._chunk(line[5:].strip()))
        return b"".join(out)

    def _chunk(self, payload: bytes) -> bytes:
        if payload == b"[DONE]" or self.ended:
            return self.close()
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(chunk, dict):
            return b""
        if isinstance(chunk.get("error"), dict):
            self.ended = True
            self.response["status"] = "failed"
            error = chunk["error"]
            self.response["error"] = {
                "code": str(error.get("code") or "server_error"),
                "message": str(error.get("message") or "the upstream failed"),
            }
            return self._event("response.failed", response=self.response)
        if chunk.get("model"):
            self.response["model"] = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        out = []
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            delta = _object(choice.get("delta"))
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.append(self._text_delta(delta["content"]))
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    slot = self.calls.setdefault(int(call.get("index") or 0), {"id": "", "name": "", "arguments": ""})
                    function = _object(call.get("function"))
                    slot["id"] = slot["id"] or str(call.get("id") or "")
                    slot["name"] = slot["name"] or str(function.get("name") or "")
                    slot["arguments"] += str(function.get("arguments") or "")
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return b"".join(out)

    def _text_delta(self, delta: str) -> bytes:
        out = b""
        if self.text_id is None:
            self.text_id = _new_id("msg_")
            item = {**_message_item("", "in_progress", self.text_id), "content": []}
            out += self._event("response.output_item.added", output_index=0, item=item)
            out += self._event(
                "response.content_part.added",
                item_id=self.text_id,
                output_index=0,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        self.text.append(delta)
        return out + self._event(
            "response.output_text.delta",
            item_id=self.text_id,
            output_index=0,
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    def close(self) -> bytes:
        """The closing events (once): the items done, then response.completed or .incomplete."""
        if self.ended:
            return b""
        self.ended = True
        out = b"" if self.started else self.start()
        output = []
        if self.text_id is not None:
            text = "".join(self.text)
            part = {"type": "output_text", "text": text, "annotations": []}
            out += self._event(
                "response.output_text.done",
                item_id=self.text_id,
                output_index=0,
                content_index=0,
                text=text,
                logprobs=[],
            )
            out += self._event(
                "response.content_part.done", item_id=self.text_id, output_index=0, content_index=0, part=part
            )
            item = _message_item(text, item_id=self.text_id)
            out += self._event("response.output_item.done", output_index=0, item=item)
            output.append(item)
        for _, call in sorted(self.calls.items()):
            index = len(output)
            item = _call_item(call["id"], call["name"], call["arguments"])
            out += self._event(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=index,
                arguments=call["arguments"],
                name=call["name"],
            )
            out += self._event("response.output_item.done", output_index=index, item=item)
            output.append(item)
        response = {**self.response, "output": output, "status": "completed", "usage": _usage(self.usage)}
        _finish(response, self.finish_reason)
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=response)
