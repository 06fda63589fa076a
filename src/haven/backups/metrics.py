"""The backups' Prometheus metrics, registered into the engine's own registry by ``haven serve``.

  haven_backups_total{kind,outcome}                      backups this engine saw end: taken (available)
                                                         or failed, by kind (image, volume)
  haven_backup_restore_drills_total{outcome}             restore drills this engine saw end: passed, failed
  haven_backup_recovery_point_age_seconds{policy}        the oldest recovery point among the servers of a
                                                         schedule (a server with none is left out: counted
                                                         in haven_backup_servers{condition="none"})
  haven_backup_recovery_point_max_age_seconds{policy}    how old a recovery point the schedule allows
  haven_backup_servers{policy,condition}                 protected servers: all, missed (a window without a
                                                         good backup), stale (recovery point too old), none
                                                         (no good backup yet)
  haven_backups_in_flight                                backups in flight at the latest pass

The gauges come from the leader's latest pass (haven.backups.planner's statuses): a follower shows the
counters only. The counters are this engine's own, as the control plane's are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haven.backups.config import SchedulerSettings
from haven.backups.planner import BackupPlan, max_age_s
from haven.domain.backups import BackupRecord, BackupState, RestorePurpose, RestoreRecord, RestoreState

CONDITIONS = ("all", "missed", "stale", "none")


class PlanSource(Protocol):
    @property
    def last_plan(self) -> BackupPlan | None: ...


class BackupMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        settings: SchedulerSettings,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._backups = Counter(
            "haven_backups",
            "Backups this engine saw end, by kind and outcome (taken, failed).",
            ["kind", "outcome"],
            registry=registry,
        )
        self._drills = Counter(
            "haven_backup_restore_drills",
            "Restore drills this engine saw end, by outcome (passed, failed).",
            ["outcome"],
            registry=registry,
        )
        self._registry, self._settings, self._now = registry, settings, now

    def watch(self, source: PlanSource) -> None:
        """Read the gauges from ``source``'s latest plan at each scrape."""
        self._registry.register(_Plan(source, self._settings, self._now))

    def on_backup(self, record: BackupRecord) -> None:
        """The runner's hook: a backup ended."""
        if record.state is BackupState.AVAILABLE:
            self._backups.labels(record.kind.value, "taken").inc()
        elif record.state is BackupState.FAILED:
            self._backups.labels(record.kind.value, "failed").inc()

    def on_restore(self, record: RestoreRecord) -> None:
        """The restorer's hook: a restore or drill ended."""
        if record.purpose is RestorePurpose.DRILL:
            self._drills.labels("passed" if record.state is RestoreState.DONE else "failed").inc()


class _Plan(Collector):
    def __init__(self, source: PlanSource, settings: SchedulerSettings, now: Callable[[], float]) -> None:
        self._source, self._settings, self._now = source, settings, now

    def collect(self) -> Iterator[Metric]:
        plan = self._source.last_plan
        if plan is None:
            return  # not leading (yet): the gauges are the leader's
        now = self._now()
        age = GaugeMetricFamily(
            "haven_backup_recovery_point_age_seconds",
            "The oldest recovery point (newest good backup) among the servers of a schedule.",
            labels=["policy"],
        )
        allowed = GaugeMetricFamily(
            "haven_backup_recovery_point_max_age_seconds",
            "How old a recovery point the schedule allows (period, jitter and grace).",
            labels=["policy"],
        )
        servers = GaugeMetricFamily(
            "haven_backup_servers",
            "Protected servers by schedule and condition.",
            labels=["policy", "condition"],
        )
        worst: dict[str, float] = {}
        counts: dict[str, dict[str, int]] = {}
        limits: dict[str, float] = {}
        for s in plan.statuses:
            policy = s.policy.schedule
            limits.setdefault(policy, max_age_s(s.policy, self._settings))
            count = counts.setdefault(policy, dict.fromkeys(CONDITIONS, 0))
            count["all"] += 1
            count["missed"] += s.missed
            count["stale"] += s.stale
            if s.recovery_point is None:
                count["none"] += 1
            else:
                worst[policy] = max(worst.get(policy, 0.0), now - s.recovery_point)
        for policy in sorted(counts):
            if policy in worst:
                age.add_metric([policy], worst[policy])
            allowed.add_metric([policy], limits[policy])
            for condition in CONDITIONS:
                servers.add_metric([policy, condition], counts[policy][condition])
        in_flight = GaugeMetricFamily("haven_backups_in_flight", "Backups in flight at the latest pass.")
        in_flight.add_metric([], plan.in_flight)
        yield from (age, allowed, servers, in_flight)
