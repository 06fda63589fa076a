"""haven.toml's ``[diagnosis]``: where the evidence comes from, which metrics to read, how to rank.

Called by haven.service.config (which reads the file), as it calls haven.fencing.config; pure. Validated by
one pydantic schema (unknown keys refused, types and ranges checked); every mistake becomes a ConfigError
naming the key. Reading the section imports no explainer (with it the store, httpx and the ranker): the
keys are kept as read (ExplainKeys) and DiagnosisConfig.settings builds haven.explain.explainer's
ExplainSettings from them when asked for.

    [diagnosis]
    transport_url = "rabbit://nova:secret@rabbit.example.com:5672/"   # the cloud's bus (Nova's
                                                   # [oslo_messaging_notifications]); empty: no notifications;
                                                   # TLS as oslo.messaging reads it from the query:
                                                   # ?ssl=1&ssl_ca_file=PATH (&ssl_cert_file=&ssl_key_file=),
                                                   # the files checked when the configuration is read
    topic = "versioned_notifications"              # Nova's notification_format = versioned (or both)
    pool = "haven"                                 # haven's own queue on that topic
    prometheus_url = "http://prometheus.example.com:9090"   # empty: no metrics
    step_s = 15.0                                  # range queries' resolution
    window_s = 600.0                               # onsets are looked for this long before a symptom
    baseline_s = 3600.0                            # each metric's normal: the hour before that
    z_threshold = 3.0                              # |robust z| from which a metric is anomalous
    default_metrics = true                         # without [[diagnosis.metrics]]: DEFAULT_METRICS
    alertmanager_url = "http://127.0.0.1:9093"     # empty: no alerts sent (haven.explain.alerting)
    alertmanager_resend_s = 60.0                   # the whole set again this often (and at each change)
    alertmanager_settle_s = 20.0                   # an explanation is sent once it held this long
    incident_s = 900.0                             # a symptom explained this recently is an incident
    haven_url = "http://haven.example.com:15868"   # haven's API as Alertmanager's users reach it: each
                                                   # alert's generatorURL is its explanation there
    [[diagnosis.metrics]]                          # replaces the defaults
    node = "glance-api"                            # a node of haven.topology's graph
    metric = "p95 latency"                         # in words, as explanations say it
    unit = "s"
    query = 'histogram_quantile(0.95, sum by (le) (rate(glance_request_duration_seconds_bucket[1m])))'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from haven.domain.errors import ConfigError
from haven.evidence.nova import VERSIONED_TOPIC
from haven.evidence.transport_url import tls_problem

if TYPE_CHECKING:  # imported when the settings are asked for (DiagnosisConfig.settings), not to read the file
    from haven.explain.explainer import ExplainSettings, MetricQuery

# What the explainer reads from Prometheus when [diagnosis] lists no metrics of its own, each as
# haven.explain.explainer.MetricQuery's (node, metric, query, unit); DEFAULT_METRICS gives them as such.
# haven's own series come from its /metrics (haven.canary.metrics: the latest canary's phases and API probes,
# so a Prometheus scraping haven has them); RabbitMQ's from its bundled rabbitmq_prometheus plugin (port
# 15692). A query that yields nothing costs nothing: that node just has no metric evidence.
DEFAULT_QUERIES: tuple[tuple[str, str, str, str], ...] = (
    ("keystone", "token issue time", 'max(haven_api_probe_seconds{probe="token"})', "s"),
    ("nova-api", "server list time", 'max(haven_api_probe_seconds{probe="server-list"})', "s"),
    ("nova-api", "canary boot request time", 'max(haven_canary_phase_seconds{phase="accepted"})', "s"),
    ("nova-scheduler", "canary scheduling time", 'max(haven_canary_phase_seconds{phase="scheduled"})', "s"),
    ("glance-api", "canary image phase time", 'max(haven_canary_phase_seconds{phase="image"})', "s"),
    ("nova-compute", "canary spawn time", 'max(haven_canary_phase_seconds{phase="spawned"})', "s"),
    ("rabbitmq", "restarts in 5 min", "sum(resets(rabbitmq_erlang_uptime_seconds[5m]))", ""),
    ("rabbitmq", "unacknowledged messages", "sum(rabbitmq_queue_messages_unacked)", ""),
)


def __getattr__(name: str) -> tuple[MetricQuery, ...]:
    """``DEFAULT_METRICS``: DEFAULT_QUERIES as the explainer's MetricQuery (the explainer imported now)."""
    if name != "DEFAULT_METRICS":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from haven.explain.explainer import MetricQuery

    return tuple(MetricQuery(*query) for query in DEFAULT_QUERIES)


class _Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    node: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    query: str = Field(min_length=1)
    unit: str = ""


class _Diagnosis(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    transport_url: str = ""
    topic: str = Field(default=VERSIONED_TOPIC, min_length=1)
    pool: str = Field(default="haven", min_length=1)
    prometheus_url: str = Field(default="", pattern=r"^(https?://.+)?$")
    step_s: float = Field(default=15.0, gt=0)
    window_s: float = Field(default=600.0, gt=0)
    baseline_s: float = Field(default=3600.0, gt=0)
    z_threshold: float = Field(default=3.0, gt=0, le=20)
    metrics: list[_Metric] = []
    default_metrics: bool = True
    alertmanager_url: str = Field(default="", pattern=r"^(https?://.+)?$")
    alertmanager_resend_s: float = Field(default=60.0, gt=0, le=3600)
    alertmanager_settle_s: float = Field(default=20.0, ge=0, le=600)
    incident_s: float = Field(default=900.0, gt=0)
    haven_url: str = Field(default="", pattern=r"^(https?://[^\s/?#]+(/[^\s?#]*)?)?$")


@dataclass(frozen=True, slots=True)
class ExplainKeys:
    """The keys of a [diagnosis] section that the explainer's settings are made of, checked.

    Kept as read, so that reading haven.toml imports no explainer (with it the store, httpx and the
    ranker: 0.3 s of every command that reads the config); ``settings`` builds them when asked for.
    """

    step_s: float
    window_s: float
    baseline_s: float
    z_threshold: float
    metrics: tuple[tuple[str, str, str, str], ...]  # MetricQuery's fields, each
    alertmanager_url: str
    alertmanager_resend_s: float
    alertmanager_settle_s: float
    incident_s: float
    haven_url: str

    def settings(self) -> ExplainSettings:
        # Each value was checked by _Diagnosis: none of these constructors' own checks can refuse it.
        from haven.explain.alerting import AlertingSettings
        from haven.explain.explainer import ExplainSettings, MetricQuery, rank_settings
        from haven.explain.incidents import IncidentSettings

        return ExplainSettings(
            rank=rank_settings(
                window_s=self.window_s, baseline_s=self.baseline_s, z_threshold=self.z_threshold
            ),
            metrics=tuple(MetricQuery(*m) for m in self.metrics),
            step_s=self.step_s,
            alerting=AlertingSettings(
                self.alertmanager_url,
                self.alertmanager_resend_s,
                IncidentSettings(
                    active_s=self.incident_s, ends_after_s=3 * self.alertmanager_resend_s, url=self.haven_url
                ),
                settle_s=self.alertmanager_settle_s,
            ),
        )


@dataclass(frozen=True, slots=True)
class DiagnosisConfig:
    transport_url: str = field(default="", repr=False)  # holds a password
    topic: str = VERSIONED_TOPIC
    pool: str = "haven"
    prometheus_url: str = ""
    keys: ExplainKeys | None = None  # None: no [diagnosis] section, the explainer's own defaults

    @property
    def settings(self) -> ExplainSettings:
        """The explainer's settings (haven.explain.explainer is imported now)."""
        if self.keys is None:
            from haven.explain.explainer import ExplainSettings

            return ExplainSettings()
        return self.keys.settings()


def parse_diagnosis(section: object, where: str) -> DiagnosisConfig:
    """``section`` is the raw ``[diagnosis]`` table (None when absent: no intake, no metrics)."""
    if section is None:
        return DiagnosisConfig()
    where = f"{where} [diagnosis]"
    try:
        raw = _Diagnosis.model_validate(section)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "the section"
        raise ConfigError(
            f"{where}: {key}: {first['msg']}", "see haven.explain.config for every key"
        ) from None
    problem = tls_problem(raw.transport_url) if raw.transport_url else None
    if problem:
        raise ConfigError(
            f"{where}: transport_url: {problem}",
            "TLS as oslo.messaging reads it from the URL: ?ssl=1&ssl_ca_file=/etc/ssl/rabbitmq-ca.pem",
        )
    keys = ExplainKeys(
        step_s=raw.step_s,
        window_s=raw.window_s,
        baseline_s=raw.baseline_s,
        z_threshold=raw.z_threshold,
        metrics=tuple((m.node, m.metric, m.query, m.unit) for m in raw.metrics)
        or (DEFAULT_QUERIES if raw.default_metrics else ()),
        alertmanager_url=raw.alertmanager_url.rstrip("/"),
        alertmanager_resend_s=raw.alertmanager_resend_s,
        alertmanager_settle_s=raw.alertmanager_settle_s,
        incident_s=raw.incident_s,
        haven_url=raw.haven_url.rstrip("/"),
    )
    return DiagnosisConfig(raw.transport_url, raw.topic, raw.pool, raw.prometheus_url.rstrip("/"), keys)
