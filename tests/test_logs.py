"""Logs: the text and JSON formats, throttled warnings, and the same format in every worker of
`gateway serve --workers N` (uvicorn applies the gateway's logging config in each worker process)."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from gateway.logs import AccessLog, JsonFormatter, TextFormatter, Throttled, _Fields

REPO = Path(__file__).resolve().parents[1]


def record(msg, level=logging.INFO, name="gateway.access") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_text_and_json_formats_of_an_access_line():
    fields = _Fields({"rid": "abc", "status": 200, "key": "team a", "model": "support", "served_by": None})
    text = TextFormatter().format(record(fields))
    assert text.endswith('INFO gateway.access: rid=abc status=200 key="team a" model=support')
    entry = orjson.loads(JsonFormatter().format(record(fields)))
    assert entry["rid"] == "abc" and entry["status"] == 200 and "served_by" not in entry and "msg" not in entry
    plain = orjson.loads(JsonFormatter().format(record("gateway ready: %d models", name="gateway")))
    assert plain["logger"] == "gateway" and plain["level"] == "INFO"


def test_repeated_warnings_are_throttled_and_counted():
    now = [0.0]
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, r: logging.LogRecord) -> None:
            seen.append(r.getMessage())

    logger = logging.getLogger("gateway.test-throttle")
    logger.addHandler(Collect())
    logger.propagate = False
    warn = Throttled(logger, every_s=10, clock=lambda: now[0])
    for _ in range(50):
        warn.warning("failed:a", "upstream %s failed", "a")
    warn.warning("failed:b", "upstream %s failed", "b")
    now[0] = 11
    warn.warning("failed:a", "upstream %s failed", "a")
    assert seen == [
        "upstream a failed",
        "upstream b failed",
        "upstream a failed (49 similar in the last 11s not logged)",
    ]


def test_access_log_off_writes_nothing(caplog):
    from gateway.context import RequestContext

    caplog.set_level(logging.INFO)
    AccessLog(enabled=False).write(RequestContext.start({}, "chat", "/v1/chat/completions"))
    AccessLog().write(RequestContext.start({}, "probe", "/healthz"))
    assert not [r for r in caplog.records if r.name == "gateway.access"]


def test_every_worker_logs_in_the_configured_format():
    """`--workers 2`: both workers say "gateway ready" at INFO, as JSON lines with time, level and logger
    (before, the workers' INFO lines were lost and their format was uvicorn's)."""
    env = {**os.environ, "GATEWAY_SERVER__LOG_FORMAT": "json", "GATEWAY_SERVER__LOG_LEVEL": "info"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", "loadtests/bench.yaml", "--port", "0", "--workers", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    ready, seen = [], []
    deadline = time.monotonic() + 90
    try:
        while len(ready) < 2 and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            seen.append(line)
            entry = orjson.loads(line)  # every line is JSON, uvicorn's own included
            assert {"ts", "level", "logger"} <= set(entry)
            if entry.get("msg", "").startswith("gateway ready"):
                ready.append(entry)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert len(ready) == 2, seen
    assert all(entry["level"] == "INFO" and entry["logger"] == "gateway" for entry in ready)
