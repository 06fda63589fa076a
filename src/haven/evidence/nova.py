"""OpenStack's versioned notifications (Nova's) → the ranker's events and symptoms: the translation.

Called by haven.evidence.nova_listener for each notification it receives, and read by haven.explain (the
BootFailure and Received types). No I/O and no oslo.messaging here, so importing it costs nothing.

What is kept (the payload shapes of Nova's doc/notification_samples):

- ``instance.create.error`` → a BootFailure: the symptom, with its fault's exception and message and the
  boot phase they point at (haven.topology.phase_of_fault);
- ``service.update`` with ``forced_down`` → the service DOWN (a ``disabled`` service is an operator's or
  haven's own choice, not a fault);
- ``compute.exception`` and other ``*.error`` notifications → an ERROR on the publishing service.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.topology import node_of_binary, phase_of_fault

VERSIONED_TOPIC = "versioned_notifications"


@dataclass(frozen=True, slots=True)
class BootFailure:
    """A server that failed to build: a symptom to explain."""

    instance: str  # the server's uuid
    name: str
    host: str  # the compute host it failed on ("" when it never got one)
    at: float
    exception: str  # the fault's exception class, e.g. "NoValidHost"
    message: str
    phase: str | None  # the boot phase the fault points at, None when unknown


@dataclass(frozen=True, slots=True)
class Received:
    """One notification as haven keeps it: its message id (for idempotency) and what it says."""

    message_id: str
    item: NodeEvent | BootFailure


def _data(payload: Any) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        inner = payload.get("nova_object.data", payload)
        if isinstance(inner, Mapping):
            return inner
    return {}


def at_of(metadata: Mapping[str, Any], fallback: float) -> float:
    """A notification's time: oslo's ``timestamp`` (UTC, from the sender's clock), else ``fallback``."""
    stamp = metadata.get("timestamp")
    if not isinstance(stamp, str):
        return fallback
    try:
        parsed = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return fallback
    return parsed.replace(tzinfo=datetime.UTC).timestamp() if parsed.tzinfo is None else parsed.timestamp()


def translate(event_type: str, publisher_id: str, payload: Any, at: float) -> NodeEvent | BootFailure | None:
    """What one versioned notification says, in the ranker's words; None when it says nothing useful."""
    data = _data(payload)
    binary, _, publisher_host = publisher_id.partition(":")
    if event_type == "instance.create.error":
        fault = _data(data.get("fault"))
        exception = str(fault.get("exception") or "")
        message = str(fault.get("exception_message") or "")
        return BootFailure(
            instance=str(data.get("uuid") or ""),
            name=str(data.get("display_name") or ""),
            host=str(data.get("host") or ""),
            at=at,
            exception=exception,
            message=message,
            phase=phase_of_fault(exception, message),
        )
    if event_type == "service.update":
        if not data.get("forced_down"):
            return None
        node = node_of_binary(str(data.get("binary") or binary))
        detail = f"{data.get('binary') or binary} on {data.get('host') or publisher_host} forced down"
        return NodeEvent(node, EvidenceKind.DOWN, at, detail)
    if event_type == "compute.exception" or event_type.endswith(".error"):
        exception = str(data.get("exception") or _data(data.get("fault")).get("exception") or event_type)
        where = f" on {publisher_host}" if publisher_host else ""
        return NodeEvent(node_of_binary(binary), EvidenceKind.ERROR, at, f"{exception}{where}")
    return None
