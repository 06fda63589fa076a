"""Alerts haven did not raise, received from Alertmanager's webhook, as symptoms to explain; pure.

Called by haven.explain.explainer's ``take_alertmanager``. A firing alert becomes a symptom on the node
its labels name: a ``service`` (or ``cause``-less ``job``) that is a node of the graph, haven's API probes
by what they call (``probe="token"`` → keystone, ``"server-list"`` → nova-api), a canary boot
(``HavenCanaryFailing``) → a server boot; else the alert's own name (no phase: every node with evidence
is a candidate). Its record is keyed by the alert's fingerprint and start, so Alertmanager repeating it
opens one record; its explanation is then sent back as a ``HavenSymptom`` with its cause
(haven.explain.incidents). Resolved alerts and haven's own (they carry ``explanation``, ``alert_id`` or
``haven_role="cause"``) are skipped.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from haven.diagnosis import Symptom
from haven.diagnosis.records import ExplanationRecord
from haven.notify.alertmanager_webhook import FiredAlert
from haven.topology import SERVER_BOOT

_PROBES = {"token": "keystone", "server-list": "nova-api", "zones": "nova-api"}
_OWN = ("explanation", "alert_id")


def foreign_record(alert: FiredAlert, nodes: Collection[str], now: float) -> ExplanationRecord | None:
    labels = alert.labels
    if alert.status != "firing" or any(k in labels for k in _OWN) or labels.get("haven_role") == "cause":
        return None
    name = labels.get("alertname", "alert")
    node = _node(labels, nodes) or name
    subject = labels.get("instance") or labels.get("zone") or labels.get("host") or ""
    what = alert.annotations.get("summary") or f"{name} fired"
    return ExplanationRecord(
        id=f"alertmanager:{alert.fingerprint}:{alert.starts_at:.0f}",
        source=f"alertmanager:{name}",
        subject=subject,
        symptom=Symptom(node, alert.starts_at, what, None),
        created_at=now,
    )


def _node(labels: Mapping[str, str], nodes: Collection[str]) -> str | None:
    if labels.get("alertname") == "HavenCanaryFailing":
        return SERVER_BOOT
    if labels.get("probe") in _PROBES:
        return _PROBES[labels["probe"]]
    for key in ("service", "job"):
        if labels.get(key) in nodes:
            return str(labels[key])
    return None
