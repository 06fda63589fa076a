"""The explainer as ``haven serve`` and ``haven explain listen`` run it, built from ``[diagnosis]``.

Called by cli/serve.py (run while this engine leads, as the publisher is) and cli/explain.py. Built with
no I/O, so a bad ``transport_url`` stops haven before anything is opened; oslo.messaging is imported only
when a transport is configured. One run: the explainer's loop (pending records, then haven's alerts) and,
with a transport, the listener on Nova's versioned notifications and a look at that bus every ``BUS_LOOK_S``
(haven.evidence.broker: RabbitMQ unreachable, its alarms, Nova's queues backed up, as evidence), and with
``[canary]``, the canary rounds
(haven.canary.runner), whose failed or slow boots the explainer explains, until ``stop`` is set. While it
runs, ``take_alertmanager`` hands Alertmanager's webhook payloads (haven serve's POST /v1/haven/alertmanager)
to it. ``[diagnosis] alertmanager_url`` alone is enough to run it (haven's own events as the evidence).
With ``on_event`` (haven serve: the dashboard's hub), ``explanation_finished`` is told when an
explanation is stored and ``canary_finished`` when a canary round's boots are over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from haven.canary.config import CanaryConfig, require_real
from haven.canary.model import CanarySettings
from haven.canary.ports import CanaryCloud
from haven.canary.runner import CanaryRunner, Needs, Round, SymptomSink
from haven.canary.sim import SimCanaryCloud
from haven.canary.unseen import probe_needs
from haven.cloud.base import Cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.clock import Clock
from haven.domain.controlplane import ServiceSpec
from haven.domain.errors import ConfigError
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.evidence.broker import watch_broker
from haven.evidence.nova import Received
from haven.evidence.prometheus import PrometheusMetrics
from haven.evidence.transport_url import tls_problem
from haven.explain.config import DiagnosisConfig
from haven.explain.explainer import Explainer, ExplainSettings
from haven.service.config import HavenConfig
from haven.store import Store
from haven.topology import Topology, openstack_topology

if TYPE_CHECKING:
    from haven.evidence.nova_listener import NovaListener

_log = logging.getLogger(__name__)
# How often serve looks at the bus (one AMQP connection each): RabbitMQ is unreachable after two failed
# looks in a row, so an outage is evidence 5 to 10 s after it began (a boot waits longer than that).
BUS_LOOK_S = 5.0


class Explaining:
    def __init__(
        self,
        config: DiagnosisConfig,
        services: Iterable[ServiceSpec],
        where: str = "[diagnosis]",
        canary: CanaryConfig | None = None,
        canary_cloud: Callable[[Clock], CanaryCloud] | None = None,
    ):
        self._config = config
        self._canary = canary or CanaryConfig()
        self._canary_cloud = canary_cloud if self._canary.enabled else None
        self.topology: Topology = openstack_topology(services)
        self._listener: NovaListener | None = None
        self._running: Explainer | None = None  # the explainer while ``run`` runs (this engine leads)
        if config.transport_url:
            from haven.evidence.nova_listener import NovaListener

            try:
                self._listener = NovaListener(config.transport_url, config.topic, config.pool)
            except ValueError as exc:
                raise ConfigError(
                    f"{where}: transport_url: {exc}",
                    'e.g. transport_url = "rabbit://user:password@host:5672/"',
                ) from None

    def canary(self, clock: Clock) -> CanaryCloud | None:
        """A new canary cloud (the caller closes it), or None without ``[canary]``."""
        return self._canary_cloud(clock) if self._canary_cloud is not None else None

    @staticmethod
    def wanted(config: DiagnosisConfig, canary: CanaryConfig | None = None) -> bool:
        """Whether ``[diagnosis]`` gives the explainer any evidence to read, or ``[canary]`` symptoms, or an
        Alertmanager to send to (and whose webhook, POST /v1/haven/alertmanager, brings alerts to explain)."""
        alertmanager = config.settings.alerting.url
        return bool(
            config.transport_url or config.prometheus_url or alertmanager or (canary and canary.enabled)
        )

    def describe(self) -> str:
        notifications = f"notifications on {self._config.topic}" if self._listener else "no notifications"
        metrics = (
            f"metrics from {self._config.prometheus_url}" if self._config.prometheus_url else "no metrics"
        )
        canaries = ", canary boots" if self._canary_cloud is not None else ""
        url = self._config.settings.alerting.url
        alertmanager = f", incidents to Alertmanager at {url}" if url else ""
        return f"explaining failures ({notifications}, {metrics}{canaries}{alertmanager})"

    async def take_alertmanager(self, payload: object) -> list[ExplanationRecord] | None:
        """Alertmanager's webhook payload, explained by the running explainer (haven.api's
        POST /v1/haven/alertmanager); None while none runs (before ``run``, or after it stopped).

        ValueError (naming what is wrong) when ``payload`` is not Alertmanager's."""
        explainer = self._running
        if explainer is None:
            return None
        return await explainer.take_alertmanager(payload)

    async def run(
        self, store: Store, clock: Clock, stop: asyncio.Event, *, on_event: EventSink | None = None
    ) -> None:
        metrics = self.metrics()
        explainer = self.explainer(store, clock, metrics, on_event)

        async def take(received: Received) -> None:
            await explainer.take(received)

        canary_cloud = self.canary(clock)
        self._running = explainer
        try:
            async with asyncio.TaskGroup() as tasks:
                work = [tasks.create_task(explainer.run())]
                if self._listener is not None:
                    work.append(tasks.create_task(self._listener.run(take)))
                    bus = self._config.transport_url
                    work.append(tasks.create_task(watch_broker(bus, store, clock, period_s=BUS_LOOK_S)))
                if canary_cloud is not None:
                    settings = self._canary.settings
                    explain = explainer.open_and_explain
                    # The operation probes' needs (haven.canary.unseen): what no check covers is blamed
                    # when Nova's reads time out while everything the canary checks works.
                    needs = probe_needs(self.topology)
                    canary = (
                        CanaryRunner(canary_cloud, store, clock, settings, explain, needs=needs,
                                     on_refine=explainer.refine)
                        if on_event is None
                        else AnnouncingCanary(canary_cloud, store, clock, settings, explain, on_event, needs,
                                              explainer.refine)
                    )  # fmt: skip
                    work.append(tasks.create_task(canary.run(stop)))
                await stop.wait()
                for task in work:
                    task.cancel()
        finally:
            self._running = None
            if metrics is not None:
                await metrics.aclose()
            if canary_cloud is not None:
                await asyncio.to_thread(canary_cloud.close)

    def explainer(
        self,
        store: Store,
        clock: Clock,
        metrics: PrometheusMetrics | None,
        on_event: EventSink | None = None,
    ) -> Explainer:
        if on_event is not None:
            return AnnouncingExplainer(store, self.topology, clock, metrics, self._config.settings, on_event)
        return Explainer(store, self.topology, clock, metrics, self._config.settings)

    def metrics(self) -> PrometheusMetrics | None:
        """The Prometheus source ``[diagnosis] prometheus_url`` names (the caller closes it), or None."""
        url = self._config.prometheus_url
        return PrometheusMetrics(url) if url else None

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.aclose()


class AnnouncingExplainer(Explainer):
    """The explainer, telling ``on_event`` each explanation it stores (every path ends in explain)."""

    def __init__(
        self,
        store: Store,
        topology: Topology,
        clock: Clock,
        metrics: PrometheusMetrics | None,
        settings: ExplainSettings,
        on_event: EventSink,
    ) -> None:
        super().__init__(store, topology, clock, metrics, settings)
        self._on_event, self._now = on_event, clock.now

    async def explain(self, record: ExplanationRecord) -> ExplanationRecord:
        done = await super().explain(record)
        if record.state is not ExplanationState.DONE and done.state is ExplanationState.DONE:
            detail = {"id": done.id, "source": done.source, "subject": done.subject}
            _tell(self._on_event, EngineEvent(EventKind.EXPLANATION_FINISHED, self._now(), detail=detail))
        return done


class AnnouncingCanary(CanaryRunner):
    """The canary runner, telling ``on_event`` when a round's boots are over."""

    def __init__(
        self,
        cloud: CanaryCloud,
        store: Store,
        clock: Clock,
        settings: CanarySettings,
        on_symptom: SymptomSink,
        on_event: EventSink,
        needs: Needs | None = None,
        on_refine: SymptomSink | None = None,
    ) -> None:
        super().__init__(cloud, store, clock, settings, on_symptom, needs=needs, on_refine=on_refine)
        self._on_event, self._now = on_event, clock.now

    async def round(self) -> Round:
        done = await super().round()
        if done.runs:
            detail = {"runs": len(done.runs), "ok": done.ok}
            _tell(self._on_event, EngineEvent(EventKind.CANARY_FINISHED, self._now(), detail=detail))
        return done


def _tell(sink: EventSink, event: EngineEvent) -> None:
    try:
        sink(event)
    except Exception:  # a listener's bug never loses an explanation or a canary round
        _log.exception("could not tell %s", event.kind.value)


def build_explaining(
    config: HavenConfig, sim: Cloud | None = None, serving: bool = False
) -> Explaining | None:
    """The explainer ``[diagnosis]`` and ``[canary]`` ask for, or None; ConfigError names a bad key.

    Its topology is the control-plane catalogue with haven.toml's ``[controlplane.services]`` over it.
    The canary boots on ``sim`` (the simulated cloud) when given, else on the OpenStack cloud.
    ``serving``: haven serve, which looks at the bus as this user: a TLS file of ``transport_url`` it may
    not read is refused now, not a lasting false DOWN of RabbitMQ later (review R3-D2; the config's own
    check lets it be, for an operator's command run as another user).
    """
    if not Explaining.wanted(config.diagnosis, config.canary):
        return None
    url = config.diagnosis.transport_url
    problem = tls_problem(url, reading=True) if serving and url else None
    if problem:
        raise ConfigError(
            f"{config.source or 'defaults'} [diagnosis]: transport_url: {problem}",
            "let haven serve's user read the TLS files the transport URL names (ssl_ca_file, ssl_cert_file, "
            "ssl_key_file)",
        )
    return explaining_for(config, sim, config.canary)


def explaining_for(config: HavenConfig, sim: Cloud | None, canary: CanaryConfig) -> Explaining:
    """The explainer of ``config`` with ``canary`` (``haven canary run`` passes its own)."""
    services = {**CATALOGUE, **{spec.name: spec for spec in config.controlplane.services}}
    where = f"{config.source or 'defaults'}"
    opener = canary_cloud_of(canary, config, sim) if canary.enabled else None
    return Explaining(config.diagnosis, services.values(), f"{where} [diagnosis]", canary, opener)


def canary_cloud_of(
    canary: CanaryConfig, config: HavenConfig, sim: Cloud | None
) -> Callable[[Clock], CanaryCloud]:
    """How to open the canary's cloud: simulated over ``sim``, else Nova (checked configured now)."""
    if sim is not None:
        return lambda clock: SimCanaryCloud(sim, clock)
    require_real(canary, str(config.source or "defaults"))

    def nova(clock: Clock) -> CanaryCloud:
        from haven.cloud.openstack.canary import open_canary

        return open_canary(config.openstack.name or None)

    return nova
