"""Every agent's last heartbeat per channel, as Prometheus gauges read at scrape time.

Who calls it: ``haven serve`` on a real cloud with coordination registers a ``HeartbeatCollector``
on its HavenMetrics registry (haven.cli.clouds.open_liveness), so ``GET /metrics`` shows, next to
``haven_hosts{condition}``, each agent's channels:

  haven_agent_heartbeat_timestamp_seconds{host,channel}  the last heartbeat (Unix time; "now" while
                                                        its lease lives and the view is in sync)
  haven_agent_channel_up{host,channel}                   1 while the channel's lease lives
  haven_agent_view_synced                                1 while the engine's view of etcd is in sync

Reading is in memory (the lease view's mirror): a scrape makes no request.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haven.service.liveness import RealCloudLiveness


class HeartbeatCollector(Collector):
    def __init__(self, liveness: RealCloudLiveness) -> None:
        self._liveness = liveness

    def collect(self) -> Iterator[Metric]:
        labels = ["host", "channel"]
        last = GaugeMetricFamily(
            "haven_agent_heartbeat_timestamp_seconds",
            "An agent's last heartbeat on a channel.",
            labels=labels,
        )
        up = GaugeMetricFamily(
            "haven_agent_channel_up", "1 while an agent's channel lease lives.", labels=labels
        )
        for host, channels in sorted(self._liveness.heartbeats().items()):
            for channel, beat in sorted(channels.items()):
                last.add_metric([host, channel], beat.last_heartbeat)
                up.add_metric([host, channel], 1 if beat.alive else 0)
        view = self._liveness.view
        synced = GaugeMetricFamily(
            "haven_agent_view_synced", "1 while the view of the agents' leases is in sync."
        )
        synced.add_metric([], 1 if view is not None and view.synced else 0)
        yield from (last, up, synced)
