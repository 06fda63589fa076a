"""The explainer as ``haven serve`` and ``haven explain listen`` run it, built from ``[diagnosis]``.

Called by cli/serve.py (run while this engine leads, as the publisher is) and cli/explain.py. Built with
no I/O, so a bad ``transport_url`` stops haven before anything is opened; oslo.messaging is imported only
when a transport is configured. One run: the explainer's loop (pending records, then haven's alerts) and,
with a transport, the listener on Nova's versioned notifications, until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from haven.controlplane.catalogue import CATALOGUE
from haven.domain.clock import Clock
from haven.domain.controlplane import ServiceSpec
from haven.domain.errors import ConfigError
from haven.evidence.nova import Received
from haven.evidence.prometheus import PrometheusMetrics
from haven.explain.config import DiagnosisConfig
from haven.explain.explainer import Explainer
from haven.service.config import HavenConfig
from haven.store import Store
from haven.topology import Topology, openstack_topology

if TYPE_CHECKING:
    from haven.evidence.nova_listener import NovaListener


class Explaining:
    def __init__(self, config: DiagnosisConfig, services: Iterable[ServiceSpec], where: str = "[diagnosis]"):
        self._config = config
        self.topology: Topology = openstack_topology(services)
        self._listener: NovaListener | None = None
        if config.transport_url:
            from haven.evidence.nova_listener import NovaListener

            try:
                self._listener = NovaListener(config.transport_url, config.topic, config.pool)
            except ValueError as exc:
                raise ConfigError(
                    f"{where}: transport_url: {exc}",
                    'e.g. transport_url = "rabbit://user:password@host:5672/"',
                ) from None

    @staticmethod
    def wanted(config: DiagnosisConfig) -> bool:
        """Whether ``[diagnosis]`` gives the explainer any evidence to read."""
        return bool(config.transport_url or config.prometheus_url)

    def describe(self) -> str:
        notifications = f"notifications on {self._config.topic}" if self._listener else "no notifications"
        metrics = (
            f"metrics from {self._config.prometheus_url}" if self._config.prometheus_url else "no metrics"
        )
        return f"explaining failures ({notifications}, {metrics})"

    async def run(self, store: Store, clock: Clock, stop: asyncio.Event) -> None:
        url = self._config.prometheus_url
        metrics = PrometheusMetrics(url) if url else None
        explainer = Explainer(store, self.topology, clock, metrics, self._config.settings)

        async def take(received: Received) -> None:
            await explainer.take(received)

        try:
            async with asyncio.TaskGroup() as tasks:
                work = [tasks.create_task(explainer.run())]
                if self._listener is not None:
                    work.append(tasks.create_task(self._listener.run(take)))
                await stop.wait()
                for task in work:
                    task.cancel()
        finally:
            if metrics is not None:
                await metrics.aclose()

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()


def build_explaining(config: HavenConfig) -> Explaining | None:
    """The explainer ``[diagnosis]`` asks for, or None (no evidence source); ConfigError names a bad key.

    Its topology is the control-plane catalogue with haven.toml's ``[controlplane.services]`` over it.
    """
    if not Explaining.wanted(config.diagnosis):
        return None
    services = {**CATALOGUE, **{spec.name: spec for spec in config.controlplane.services}}
    return Explaining(config.diagnosis, services.values(), f"{config.source or 'defaults'} [diagnosis]")
