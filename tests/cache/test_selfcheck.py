"""Self-verification: a sampled semantic hit is answered fresh; an entry whose answer disagrees with the
fresh one is served no more; the outcomes are counted."""

import pytest

from gateway.cache.selfcheck import SelfCheck, similarity
from gateway.cache.service import build_cache
from gateway.config import load_config
from gateway.embeddings import Embedder
from gateway.metrics import Metrics
from gateway.request import ChatRequest


def test_similarity_wants_the_same_numbers_and_words():
    cached = "Refunds reach your card within 5 business days after we receive the parcel."
    assert similarity(cached, "Once the parcel is back, the refund reaches your card in 5 business days.") >= 0.5
    assert similarity(cached, "Refunds reach your card within 30 business days after we receive the parcel.") == 0
    assert similarity(cached, "You can pause your subscription for up to 3 months from your account page.") < 0.5


def test_a_disagreeing_entry_is_refused_and_counted():
    metrics = Metrics()
    check = SelfCheck(1.0, metrics.registry, draw=lambda: 0.0)
    assert check.sample() and not SelfCheck(0.0, draw=lambda: 0.0).sample()
    assert check.compare("e1", "Ships in 2 days from Lyon.", "Ships from Lyon in 2 days.")
    assert not check.refused("e1")
    assert not check.compare("e2", "Ships in 2 days from Lyon.", "We do not ship to Canada.")
    assert check.refused("e2")
    value = metrics.registry.get_sample_value
    assert value("gateway_cache_selfcheck_total", {"outcome": "agree"}) == 1
    assert value("gateway_cache_selfcheck_total", {"outcome": "disagree"}) == 1
    SelfCheck(0.5, metrics.registry)  # a second one on the same registry shares the counter


def _cache(share: float):
    config = load_config()
    config = config.model_copy(
        update={
            "redis": config.redis.model_copy(update={"url": ""}),
            "cache": config.cache.model_copy(update={"selfcheck_share": share}),
        }
    )
    return build_cache(config, None, None, Metrics()), next(iter(config.models))


async def _ask(cache, alias, embedder, text, answer=None):
    req = ChatRequest(body={"model": alias, "messages": [{"role": "user", "content": text}]}, alias=alias, headers={})
    found = await cache.lookup_exact(req)
    if found is None:
        req.vector = (await embedder.embed(text)) if embedder.available else None
        req.intent = "other"
        found = await cache.lookup_semantic(req)
    if found is not None:
        return found.message["content"], req
    parsed = {
        "model": alias,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
    }
    await cache.store(req, parsed)
    return None, req


async def test_a_sampled_hit_is_answered_fresh_and_a_disagreeing_entry_stops_serving():
    embedder = Embedder.load(model="static")
    if not embedder.available:
        pytest.skip("static embedding table absent")
    cache, alias = _cache(0.0)
    old = "Your profile is erased within 30 days of your request."
    fresh = "Open Settings, then Privacy, and press Delete: it is immediate."
    assert (await _ask(cache, alias, embedder, "How can I erase my profile?", old))[0] is None
    assert (await _ask(cache, alias, embedder, "How can I delete my profile?"))[0] == old  # a semantic hit

    cache.selfcheck.share = 1.0  # every semantic hit is checked
    served, req = await _ask(cache, alias, embedder, "how can i delete my profile", fresh)
    assert served is None and req.cache_result == "miss" and req.cache_match.checking == old
    assert cache.selfcheck.refused(req.cache_match.entry)  # the fresh answer disagreed when it was stored
    await cache.selfcheck.drain()
    assert await cache.backend.get(req.cache_match.entry) is None  # and the entry left the store
    value = cache.metrics.registry.get_sample_value
    assert value("gateway_cache_selfcheck_total", {"outcome": "disagree"}) == 1

    cache.selfcheck.share = 0.0
    served, _ = await _ask(cache, alias, embedder, "How can I erase my profile please?", "another fresh one")
    assert served != old  # the refused entry answers no paraphrase any more


async def test_no_check_without_a_share():
    embedder = Embedder.load(model="static")
    if not embedder.available:
        pytest.skip("static embedding table absent")
    cache, alias = _cache(0.0)
    await _ask(cache, alias, embedder, "How can I erase my profile?", "Within 30 days.")
    for _ in range(20):
        served, req = await _ask(cache, alias, embedder, "How can I delete my profile?")
        assert served == "Within 30 days." and req.cache_match.checking is None


async def test_a_sampled_miss_is_compared_with_its_nearest_refused_neighbour():
    embedder = Embedder.load(model="static")
    if not embedder.available:
        pytest.skip("static embedding table absent")
    cache, alias = _cache(0.0)
    value = cache.metrics.registry.get_sample_value
    first = "Gift cards stay valid for 12 months from the day they are bought."
    assert (await _ask(cache, alias, embedder, "Do gift cards expire?", first))[0] is None

    cache.selfcheck.share = 1.0  # every miss with a close neighbour is checked
    # a paraphrase the verifier refuses: its fresh answer agrees with the neighbour's, a hit left on the table
    served, req = await _ask(cache, alias, embedder, "How long is a gift card valid?", first.replace("stay", "are"))
    assert served is None and req.cache_match.near is not None
    await cache.selfcheck.drain()
    assert value("gateway_cache_near_miss_checks_total", {"outcome": "agree"}) == 1

    # a sibling: another answer, rightly refused
    served, req = await _ask(
        cache, alias, embedder, "How do I check my gift card balance?", "Type the code on our balance page."
    )
    assert served is None and req.cache_match.near is not None
    await cache.selfcheck.drain()
    assert value("gateway_cache_near_miss_checks_total", {"outcome": "disagree"}) == 1
    assert value("gateway_cache_selfcheck_total", {"outcome": "agree"}) is None  # hits were not involved

    cache.selfcheck.share = 0.0
    served, req = await _ask(cache, alias, embedder, "Can a gift card expire?", "Yes, after 12 months.")
    assert req.cache_match.near is None  # nothing sampled without a share


async def test_an_entry_that_disagrees_on_one_replica_stops_serving_on_the_other():
    import uuid

    from tests.conftest import async_redis

    embedder = Embedder.load(model="static")
    if not embedder.available:
        pytest.skip("static embedding table absent")
    client = async_redis()
    prefix = f"gwtest:{uuid.uuid4().hex[:12]}:"
    config = load_config()
    config = config.model_copy(update={"redis": config.redis.model_copy(update={"prefix": prefix})})
    a, b = (build_cache(config, None, client, Metrics()) for _ in range(2))
    alias = next(iter(config.models))
    try:
        old = "Your profile is erased within 30 days of your request."
        await _ask(a, alias, embedder, "How can I erase my profile?", old)
        await a.backend.drain()
        assert (await _ask(b, alias, embedder, "How can I delete my profile?"))[0] == old  # b serves a's entry

        a.selfcheck.share = 1.0
        fresh = "Open Settings, then Privacy, and press Delete: it is immediate."
        served, req = await _ask(a, alias, embedder, "how can i delete my profile", fresh)
        assert served is None and a.selfcheck.refused(req.cache_match.entry)
        await a.selfcheck.drain()
        await a.backend.drain()
        assert not b.selfcheck.refused(req.cache_match.entry)  # b never checked it itself
        served, _ = await _ask(b, alias, embedder, "How can I erase my profile please?", "another fresh one")
        assert served != old
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
