"""The Publisher as ``haven serve`` runs it: sinks built from the ``[publish]`` config, fed by the engine.

Called by cli/serve.py. Nothing connects here (the webhooks' client and the
RabbitMQ transport connect on first use), so a receiver or a broker that is
down does not stop haven: the outbox keeps the events until they are taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from haven.domain.clock import Clock
from haven.domain.errors import ConfigError
from haven.notify.publisher import Outbox, Publisher
from haven.notify.sinks import Sink
from haven.notify.webhook import WebhookSink
from haven.service.config import PublishConfig


def build_sinks(config: PublishConfig, environ: Mapping[str, str], where: str = "[publish]") -> list[Sink]:
    """A sink per configured webhook and bus; ConfigError naming the key. Call before anything is opened."""
    sinks: list[Sink] = []
    if config.webhooks:
        secret = config.secret(environ, where)
        sinks += [WebhookSink(url, secret) for url in dict.fromkeys(config.webhooks)]
    if config.transport_url is not None:
        from haven.notify.rabbit import RabbitSink  # oslo.messaging is imported only when configured

        try:
            sinks.append(RabbitSink(config.transport_url, config.topic, config.publisher_host))
        except ValueError as exc:
            raise ConfigError(
                f"{where}: transport_url: {exc}", 'e.g. transport_url = "rabbit://user:password@host:5672/"'
            ) from None
    return sinks


def build_publisher(config: PublishConfig, sinks: Sequence[Sink], outbox: Outbox, clock: Clock) -> Publisher:
    return Publisher(outbox, sinks, clock, config.settings)
