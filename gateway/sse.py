"""Relaying an upstream's server-sent events: bytes pass through as they arrive, cut only at event
boundaries. Events are looked at, not re-serialised: to time the first token, to read the usage chunk
(which the gateway asks for) and to hide it from a client that did not ask, and — only when the answer
may be cached — to collect the content.
"""

from __future__ import annotations

import time

import orjson

DONE = b"data: [DONE]\n\n"


class StreamRelay:
    def __init__(self, *, hide_usage: bool, collect: bool, started: float) -> None:
        self.hide_usage = hide_usage
        self.collect = collect
        self.started = started
        self.ttft: float | None = None
        self.usage: dict | None = None
        self.finished = False  # saw [DONE]
        self.parts: list[str] = []
        self.first_chunk: dict | None = None  # id/model/created of the answer, for the cache
        self.finish_reason: str | None = None
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """Take upstream bytes; return the bytes to send to the client now."""
        data = self._tail + chunk if self._tail else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self._tail = data
            return b""
        complete, self._tail = data[: end + 2], data[end + 2 :]
        if self.collect:  # the content is wanted: look at every event
            kept = b"".join(event + b"\n\n" for event in complete.split(b"\n\n")[:-1] if self._keep(event))
            if self.hide_usage and b'"usage":null' in kept:
                kept = kept.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
            return kept
        if self.hide_usage and b'"usage":null' in complete:
            # Asked for on the client's behalf: OpenAI then puts "usage":null in every chunk; without the
            # ask it sends none, and neither does the cache's replay. (Inside a JSON string a quote is
            # escaped, so these bytes are always the field itself.)
            complete = complete.replace(b',"usage":null', b"").replace(b'"usage":null,', b"")
        # Otherwise byte searches over the whole block: a fast upstream sends many events per read.
        if self.ttft is None and (
            complete.count(b'"content":"') > complete.count(b'"content":""') or b'"tool_calls"' in complete
        ):
            self.ttft = time.perf_counter() - self.started
        if b"data: [DONE]" in complete:
            self.finished = True
        at = complete.find(b'"usage":{')
        while at >= 0:
            start = complete.rfind(b"\n\n", 0, at)
            start = 0 if start < 0 else start + 2  # the event around this usage
            stop = complete.find(b"\n\n", at) + 2
            if self._keep(complete[start : stop - 2]):
                at = complete.find(b'"usage":{', stop)
            else:
                complete = complete[:start] + complete[stop:]
                at = complete.find(b'"usage":{', start)
        return complete

    def flush(self) -> bytes:
        tail, self._tail = self._tail, b""
        return tail

    def _keep(self, event: bytes) -> bool:
        if not event.startswith(b"data:"):
            return True  # comments, keep-alives, other fields
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.finished = True
            return True
        if self.ttft is None and (
            (b'"content":"' in payload and b'"content":""' not in payload) or b'"tool_calls"' in payload
        ):
            self.ttft = time.perf_counter() - self.started
        if b'"usage":{' in payload or self.collect:
            try:
                message = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return True
            if not isinstance(message, dict):
                return True
            if isinstance(message.get("usage"), dict):
                self.usage = message["usage"]
                if self.hide_usage and not message.get("choices"):
                    return False
            if self.collect:
                self._collect(message)
        return True

    def _collect(self, message: dict) -> None:
        if self.first_chunk is None:
            self.first_chunk = {k: message.get(k) for k in ("id", "model", "created", "system_fingerprint")}
        for choice in message.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("tool_calls") or delta.get("function_call"):
                self.collect = False  # tool calls are never cached
                self.parts = []
                return
            if isinstance(delta.get("content"), str):
                self.parts.append(delta["content"])
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    @property
    def content(self) -> str | None:
        return "".join(self.parts) if self.collect and self.finished else None


def error_event(message: str, type_: str = "api_error", code: str | None = "upstream_error") -> bytes:
    """The event that ends a stream whose upstream failed after the first byte reached the client."""
    return (
        b"data: " + orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}}) + b"\n\n"
    )
