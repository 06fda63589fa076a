"""The control plane's Prometheus metrics, registered into the engine's own registry by ``haven serve``.

  haven_controlplane_actions_total{service,kind,state}   actions this engine finished (drain, maint,
                                                         ready, restart, start, seen_restart; done/failed)
  haven_controlplane_replicas{service,health}            replicas by the leader's latest verdict (store)
  haven_controlplane_replica_healthy{service,host}       1 while that replica is healthy (store)
  haven_controlplane_observed_age_seconds                how old the leader's latest pass is (store)

The gauges are read from the store at each scrape, so every engine (a follower too) shows what the
leader saw; the counter is this engine's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haven.domain.controlplane import ActionRecord, ActionState, ReplicaHealth
from haven.domain.errors import HavenError
from haven.store import Store


class ControlPlaneMetrics:
    def __init__(
        self, registry: CollectorRegistry, store: Store, now: Callable[[], float] = time.time
    ) -> None:
        self._actions = Counter(
            "haven_controlplane_actions",
            "Control-plane actions this engine finished, by service, kind and outcome.",
            ["service", "kind", "state"],
            registry=registry,
        )
        registry.register(_Replicas(store, now))

    def on_action(self, record: ActionRecord, state: ActionState) -> None:
        """The reconciler's action hook."""
        self._actions.labels(record.service, record.kind.value, state.value).inc()


class _Replicas(Collector):
    def __init__(self, store: Store, now: Callable[[], float]) -> None:
        self._store, self._now = store, now

    def collect(self) -> Iterator[Metric]:
        try:
            states = self._store.list_replicas()
        except HavenError:
            return  # a scrape never fails for the store: the series are missing instead
        by_health = GaugeMetricFamily(
            "haven_controlplane_replicas",
            "Control-plane replicas by the leader's latest verdict.",
            labels=["service", "health"],
        )
        counts: dict[tuple[str, str], int] = {}
        for s in states:
            for h in ReplicaHealth:
                counts.setdefault((s.service, h.value), 0)
            counts[(s.service, s.health.value)] += 1
        for (service, health), n in sorted(counts.items()):
            by_health.add_metric([service, health], n)
        healthy = GaugeMetricFamily(
            "haven_controlplane_replica_healthy",
            "1 while the replica is healthy, by the leader's latest pass.",
            labels=["service", "host"],
        )
        for s in states:
            healthy.add_metric([s.service, s.host], 1 if s.health is ReplicaHealth.HEALTHY else 0)
        yield by_health
        yield healthy
        if states:
            age = GaugeMetricFamily(
                "haven_controlplane_observed_age_seconds", "Seconds since the leader's latest pass."
            )
            age.add_metric([], max(0.0, self._now() - max(s.observed_at for s in states)))
            yield age
