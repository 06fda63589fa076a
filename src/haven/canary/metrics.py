"""The canaries' Prometheus metrics, read from the store at each scrape (so every engine shows the same).

Registered by haven.service.metrics on the engine's own registry, served at ``GET /metrics``:

  haven_canary_phase_seconds{zone,phase}       the latest finished canary's duration of each phase
                                               (accepted, scheduled, image, spawned, active, deleted: each
                                               from the previous phase seen), and phase="total" (to ACTIVE)
  haven_canary_success{zone}                   1 when the latest finished canary was ACTIVE in time and
                                               deleted, else 0
  haven_canary_last_run_timestamp_seconds{zone}  when it started
  haven_api_probe_seconds{probe}               the latest probe's duration (token, server-list)
  haven_api_probe_success{probe}               1 when it answered, else 0
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haven.canary.model import Outcome, Phase, RunState, durations, run_from_json
from haven.canary.runner import BOOT, PROBE
from haven.domain.errors import HavenError
from haven.store import Store

_SCAN = 200  # the newest rows read per scrape: enough for the latest run of every zone


class CanaryCollector(Collector):
    def __init__(self, store: Store) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        phases = GaugeMetricFamily(
            "haven_canary_phase_seconds",
            "The latest canary boot's duration of each phase.",
            labels=["zone", "phase"],
        )
        success = GaugeMetricFamily(
            "haven_canary_success", "1 when the latest canary boot succeeded in time.", labels=["zone"]
        )
        started = GaugeMetricFamily(
            "haven_canary_last_run_timestamp_seconds", "When the latest canary boot started.", labels=["zone"]
        )
        probe_s = GaugeMetricFamily(
            "haven_api_probe_seconds", "The latest API probe's duration.", labels=["probe"]
        )
        probe_ok = GaugeMetricFamily(
            "haven_api_probe_success", "1 when the latest API probe answered.", labels=["probe"]
        )
        try:
            runs = self._store.list_canaries(BOOT, states=[RunState.DONE.value], limit=_SCAN)
            probes = self._store.list_canaries(PROBE, limit=_SCAN)
        except HavenError:
            runs, probes = [], []  # the store is away: no canary series this scrape
        latest: dict[str, dict[str, object]] = {}
        for doc in runs:  # newest first
            latest.setdefault(str(doc["zone"]), doc)
        for zone, doc in sorted(latest.items()):
            run = run_from_json(doc)
            for phase, seconds in durations(run.phases).items():
                phases.add_metric([zone, phase], seconds)
            if Phase.ACTIVE.value in run.phases:
                phases.add_metric([zone, "total"], run.phases[Phase.ACTIVE.value])
            success.add_metric([zone], 1.0 if run.outcome is Outcome.OK else 0.0)
            started.add_metric([zone], run.started_at)
        seen: set[str] = set()
        for doc in probes:
            name = str(doc["name"])
            if name not in seen:
                seen.add(name)
                probe_s.add_metric([name], float(doc["seconds"]))
                probe_ok.add_metric([name], 1.0 if doc["ok"] else 0.0)
        yield from (phases, success, started, probe_s, probe_ok)
