"""Work per request is bounded whatever the input: every pattern over user text runs in linear time, the
text the models see is clipped, and a message at the body limit leaves /healthz answering meanwhile.

Bounds are generous (a loaded 2-core machine): before, 16 KiB of "y" cost 1.2 s in the personal-data
pattern alone, 64 KiB 20 s, and /healthz went unanswered for 35 s while one 64 KiB message was served.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from gateway.bounds import CACHE_TEXT_LIMIT, TEXT_LIMIT, clip
from gateway.cache import keys, semantic
from gateway.request import ChatRequest
from gateway.routing import difficulty
from tests.conftest import TEST_KEY, base_config

# Inputs that made a pattern quadratic: a long run of word characters (e-mail local part), of hyphenated
# letters or dashes (codes), of newlines (line-anchored indentation), of digits with separators.
HOSTILE = ["y", "a-", "--", "\n", "+1", "A ", "1,"]
SIZE = 32_768  # quadratic patterns took 4-30 s here


def _timed(scan, text: str) -> float:
    started = time.perf_counter()
    scan(text)
    return time.perf_counter() - started


@pytest.mark.parametrize("seed", HOSTILE)
def test_text_scans_are_linear(seed):
    """Quadratic: 4x the text costs ~16x (and seconds); linear: ~4x. Only both a slow run and a steep
    growth fail, so that a loaded machine's slowness alone does not."""

    def text(size: int) -> str:
        return (seed * (size // len(seed) + 1))[:size]

    def exact_key(t: str) -> str:
        return keys.exact_key(
            ChatRequest(body={"model": "m", "messages": [{"role": "user", "content": t}]}, alias="m", headers={})
        )

    for name, scan in [
        ("keys.has_personal_data", keys.has_personal_data),
        ("semantic.features", semantic.features.__wrapped__),
        ("semantic.question_part", semantic.question_part.__wrapped__),
        ("semantic.contains_personal_data", semantic.contains_personal_data),
        ("difficulty.extract_features", lambda t: difficulty.extract_features([{"role": "user", "content": t}] * 2)),
        ("keys.exact_key", exact_key),
    ]:
        small = min(_timed(scan, text(SIZE // 4)) for _ in range(2))
        big = _timed(scan, text(SIZE))
        assert big < 2.0 or big / max(small, 1e-4) < 10, f"{name} on {seed!r}: {small:.3f} s -> {big:.3f} s"


def test_personal_data_still_found():
    assert keys.has_personal_data("write to john.doe@example.com")
    assert keys.has_personal_data("my order FR-4821X is late")
    assert keys.has_personal_data("call +33 6 12 34 56 78")
    assert not keys.has_personal_data("where is my order?")
    assert semantic.contains_personal_data("my mail: a.b+c@d.co")
    assert "fr-4821x" in semantic.features("Where is order FR-4821X?").codes


def test_clip_keeps_head_and_tail():
    assert clip("short") == "short"
    text = "H" * 5000 + "middle" + "T" * 5000
    clipped = clip(text)
    assert len(clipped) == TEXT_LIMIT + 1 and clipped.startswith("H" * 100) and clipped.endswith("T" * 100)
    assert "middle" not in clipped
    req = ChatRequest(body={"model": "m", "messages": [{"role": "user", "content": text}]}, alias="m", headers={})
    assert req.last_user_text == clipped


def test_long_user_text_is_not_cached():
    def req(text):
        return ChatRequest(body={"model": "m", "messages": [{"role": "user", "content": text}]}, alias="m", headers={})

    assert keys.uncacheable(req("x" * CACHE_TEXT_LIMIT), 1.0) is None
    assert keys.uncacheable(req("x" * (CACHE_TEXT_LIMIT + 1)), 1.0) == "too_long"


class HealthProbe:
    """Polls /healthz from a thread and keeps the slowest answer's time."""

    def __init__(self, url: str) -> None:
        self.url, self.worst, self.count = url + "/healthz", 0.0, 0
        self._stop = threading.Event()
        self._started = threading.Event()  # one answer before the big request, so count >= 1 whatever its speed
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get(self.url).status_code == 200
                self.worst = max(self.worst, time.perf_counter() - started)
                self.count += 1
                self._started.set()
                self._stop.wait(0.01)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        self._started.wait(60)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("y" * 65_536, id="64KiB-of-y"),
        pytest.param(("Where is my order 12345? Write to a@b.co. " * 25_000)[:1_000_000], id="1MB-of-prose"),
        pytest.param("a-" * 500_000, id="1MB-of-a-"),
    ],
)
def test_big_message_leaves_healthz_answering(start_gateway, light_mock, heavy_mock, text):
    gw = start_gateway(base_config(light_mock.url, heavy_mock.url))
    body = {"model": "support", "messages": [{"role": "user", "content": text}], "max_tokens": 5}
    with HealthProbe(gw.url) as probe:
        started = time.perf_counter()
        response = httpx.post(
            gw.base_url + "/chat/completions", json=body, timeout=120, headers={"authorization": f"Bearer {TEST_KEY}"}
        )
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-cache"] == "bypass"  # too long to be cached
    assert elapsed < 20, f"served in {elapsed:.1f} s"  # was 42 s for 64 KiB, 70 s and a 503 for 1 MB
    assert probe.count >= 1 and probe.worst < 1.0, f"/healthz took {probe.worst:.2f} s"  # was 35 s
