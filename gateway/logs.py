"""Logs people can run a service on.

    logger gateway.access     one line per request, written when it ends (Pipeline.run): request id, key
                              name (never the key), model alias, intent, tier, variant, cache result,
                              served by, status, latency, overhead, tokens, cost. No message content.
    logger gateway.requests   opt-in (server.request_log): the messages and the answer, with personal data
                              redacted (gateway.redact)
    logger gateway.*          the rest; upstream failures, retries, fallbacks and breaker changes are
                              warnings, repeats throttled (Throttled)

`server.log_format`: "text" (`2026-12-01 15:04:05,123 INFO gateway.access: rid=… status=200 …`) or "json"
(one object a line: ts, level, logger, msg, and each access field as its own key). `dict_config` is handed
to uvicorn, which applies it in every worker, so `--workers N` logs the same as one worker.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import orjson

from gateway.context import RequestContext
from gateway.redact import redact

__all__ = ["AccessLog", "JsonFormatter", "RequestLog", "TextFormatter", "Throttled", "dict_config"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Fields:
    """An access line's fields, formatted as `key=value` pairs only if a handler writes them."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        parts = []
        for name, value in self.fields.items():
            if value is None:
                continue
            text = value if type(value) is str else str(value)
            if not text or _NEEDS_QUOTES.search(text):
                text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
            parts.append(f"{name}={text}")
        return " ".join(parts)


_NEEDS_QUOTES = re.compile(r'[\s"=\\]')


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str | None = None, **kwargs: Any) -> None:
        super().__init__(fmt or TEXT_FORMAT, **kwargs)


class JsonFormatter(logging.Formatter):
    """One JSON object a line; an access line's fields are keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        if isinstance(record.msg, _Fields):
            out.update((k, v) for k, v in record.msg.fields.items() if v is not None)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def dict_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A logging.config.dictConfig for the gateway and uvicorn's own loggers (uvicorn's `log_config`)."""
    formatter = "gateway.logs.JsonFormatter" if fmt == "json" else "gateway.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"gateway": {"()": formatter}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "gateway", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


class AccessLog:
    """One line per request, at INFO on `gateway.access`."""

    def __init__(self, enabled: bool = True, logger: logging.Logger | None = None) -> None:
        self.enabled = enabled
        self.logger = logger or logging.getLogger("gateway.access")

    def write(self, ctx: RequestContext) -> None:
        if not self.enabled or ctx.kind == "probe" or not self.logger.isEnabledFor(logging.INFO):
            return
        usage = ctx.usage or {}
        fields: dict[str, Any] = {
            "rid": ctx.request_id,
            "kind": ctx.kind,
            "path": ctx.path,
            "status": ctx.status,
            "key": ctx.key.name if ctx.key is not None else None,
            "model": ctx.alias or None,
            "ms": round(ctx.elapsed() * 1000, 2),
            "overhead_ms": round(ctx.overhead() * 1000, 2),
        }
        if ctx.kind == "chat" or ctx.kind == "embeddings":
            fields.update(
                intent=ctx.intent,
                tier=ctx.tier,
                variant=ctx.variant,
                cache=ctx.cache_result,
                served_by=ctx.served_by,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                cost_usd=round(ctx.cost, 8) if ctx.served_by else None,
                ttft_ms=None if ctx.ttft is None else round(ctx.ttft * 1000, 2),
            )
        if ctx.error is not None:
            fields["error"] = ctx.error
        # handle() a record made here: logger.info() would walk the stack for the caller on every request
        self.logger.handle(
            self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0, _Fields(fields), (), None)
        )


class RequestLog:
    """Opt-in: each chat request's messages and answer, personal data redacted, at INFO on
    `gateway.requests`. Off by default: message contents are never logged unless asked for."""

    def __init__(self, enabled: bool = False, logger: logging.Logger | None = None) -> None:
        self.enabled = enabled
        self.logger = logger or logging.getLogger("gateway.requests")

    def write(self, ctx: RequestContext) -> None:
        if not self.enabled or ctx.kind != "chat" or not self.logger.isEnabledFor(logging.INFO):
            return
        messages = ctx.body.get("messages")
        redacted = (
            [
                {"role": m.get("role"), "content": _redact_content(m.get("content"))}
                for m in messages
                if isinstance(m, dict)
            ]
            if isinstance(messages, list)
            else None
        )
        self.logger.info(
            _Fields(
                {
                    "rid": ctx.request_id,
                    "status": ctx.status,
                    "messages": _json(redacted),
                    "reply": None if ctx.reply is None else redact(ctx.reply),
                }
            )
        )


def _redact_content(content: Any) -> Any:
    if isinstance(content, str):
        return redact(content)
    if isinstance(content, list):
        return [
            {**part, "text": redact(part["text"])}
            if isinstance(part, dict) and isinstance(part.get("text"), str)
            else {"type": part.get("type")}
            if isinstance(part, dict)
            else None
            for part in content
        ]
    return None


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class Throttled:
    """A logger that writes the same kind of message at most once per `every_s` per key, then says how many
    were left out: an upstream failing 500 times a second gives one warning a second, not 500."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0, clock=time.monotonic) -> None:
        self.logger = logger
        self.every_s = every_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        self.log(logging.WARNING, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        if len(self._last) > 10_000:  # keys come from config (deployments, reasons): bounded, but be safe
            self._last.clear()
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        if skipped:
            message += " (%d similar in the last %.0fs not logged)"
            args = (*args, skipped, now - last if last is not None else self.every_s)
        self.logger.log(level, message, *args)
