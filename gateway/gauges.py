"""Gauges of state that this process does not change itself, refreshed every few seconds in the background.

A breaker opened by another replica, or one whose deployment no longer gets traffic (a fallback, once the
primary is healthy again), would otherwise keep the value of this process's last call: the circuit alert
kept firing for 16 minutes after a recovery. Here every deployment's breaker is re-read from the shared
state (Redis) on a timer, together with what is left of each provider quota, a Redis round trip, and the
process's CPU, memory and file descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import ProcessCollector

from gateway.metrics import DEPLOYMENT_STATES, Metrics

log = logging.getLogger("gateway.gauges")


class GaugeRefresher:
    def __init__(self, config, metrics: Metrics, breaker, budget, redis=None) -> None:
        self.deployments = config.deployments
        self.metrics = metrics
        self.breaker = breaker
        self.budget = budget
        self.redis = redis
        self._process = ProcessCollector(registry=None)

    async def refresh(self) -> None:
        m = self.metrics
        for name, deployment in self.deployments.items():
            try:
                state = await self.breaker.refresh(name)
                requests, tokens = await self.budget.remaining(name, deployment)
            except Exception as exc:  # never let a gauge take the gateway down
                log.warning("gauges: state of %s unreadable (%s)", name, type(exc).__name__)
                continue
            m.circuit_open.labels(name).set(1 if state == "open" else 0)
            m.deployment_state.labels(name).set(DEPLOYMENT_STATES[state])
            if requests is not None:
                m.quota_remaining.labels(name, "requests").set(requests)
            if tokens is not None:
                m.quota_remaining.labels(name, "tokens").set(tokens)
        if self.redis is not None:
            started = time.perf_counter()
            try:
                await self.redis.ping()
            except Exception:
                m.redis_up.set(0)
                m.redis_failures.inc()
            else:
                m.redis_ping.observe(time.perf_counter() - started)
                m.redis_up.set(1)
        self._process_figures()

    def _process_figures(self) -> None:
        figures = {s.name: s.value for family in self._process.collect() for s in family.samples}
        self.metrics.process_cpu.set(figures.get("process_cpu_seconds_total", 0.0))
        self.metrics.process_memory.set(figures.get("process_resident_memory_bytes", 0.0))
        self.metrics.process_fds.set(figures.get("process_open_fds", 0.0))

    async def run(self, every_s: float) -> None:
        while True:  # the first round after `every_s`: startup has primed every gauge already
            await asyncio.sleep(every_s)
            await self.refresh()
