"""Alertmanager's webhook payload (``webhook_configs``, version 4), read into plain values.

Used by haven.explain.explainer's ``take_alertmanager``: alerts haven did not raise (a Prometheus rule's,
another tool's) become symptoms haven explains. Pure; a payload that is not Alertmanager's is a
ValueError naming what is wrong (the HTTP edge answers it with a 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class FiredAlert:
    status: str  # "firing" or "resolved"
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    fingerprint: str


def parse_webhook(body: object) -> list[FiredAlert]:
    if not isinstance(body, Mapping) or not isinstance(body.get("alerts"), list):
        raise ValueError("not an Alertmanager webhook payload: no list of alerts")
    found = []
    for i, raw in enumerate(body["alerts"]):
        if not isinstance(raw, Mapping) or not isinstance(raw.get("labels"), Mapping):
            raise ValueError(f"alerts[{i}]: no labels")
        labels = {str(k): str(v) for k, v in raw["labels"].items()}
        annotations = {str(k): str(v) for k, v in (raw.get("annotations") or {}).items()}
        try:
            starts = datetime.fromisoformat(str(raw.get("startsAt", "")).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ValueError(f"alerts[{i}]: startsAt {raw.get('startsAt')!r} is not a time") from None
        status = str(raw.get("status", "firing"))
        fingerprint = str(raw.get("fingerprint") or sorted(labels.items()))
        found.append(FiredAlert(status, labels, annotations, starts, fingerprint))
    return found
