"""haven.evidence.broker's rules, pure: only changes kept, HEALTHY ends an alarm or a backlog in its scope.

The looks on a real broker are tests/notify/test_broker_look.py (the session's RabbitMQ lives there).
"""

from __future__ import annotations

from haven.diagnosis import EvidenceKind
from haven.evidence.broker import BrokerEvidence, BrokerSeen


def test_an_alarm_is_an_error_until_a_look_is_not_blocked_and_only_changes_are_kept() -> None:
    evidence = BrokerEvidence(backlog=100)
    assert evidence.observe(BrokerSeen(None, {"conductor": 0}), 1.0) == {}  # healthy from the start: nothing
    blocked = evidence.observe(BrokerSeen("low on memory", {"conductor": 5}), 2.0)
    [error] = blocked.values()
    assert error.kind is EvidenceKind.ERROR and error.node == "rabbitmq" and error.scope == "broker:alarm"
    assert "memory or disk alarm" in error.detail and error.at == 2.0
    assert evidence.observe(BrokerSeen("low on memory", {"conductor": 5}), 4.0) == {}  # unchanged
    [ended] = evidence.observe(BrokerSeen(None, {"conductor": 5}), 6.0).values()
    assert (ended.kind, ended.scope, ended.at) == (EvidenceKind.HEALTHY, "broker:alarm", 6.0)


def test_a_backed_up_queue_is_an_error_in_its_own_scope() -> None:
    evidence = BrokerEvidence(backlog=100)
    evidence.observe(BrokerSeen(None, {"conductor": 0, "scheduler": 0}), 1.0)
    [backed] = evidence.observe(BrokerSeen(None, {"conductor": 20_000, "scheduler": 3}), 2.0).values()
    assert (backed.kind, backed.scope) == (EvidenceKind.ERROR, "broker:queue:conductor")
    assert "20,000 messages" in backed.detail
    [drained] = evidence.observe(BrokerSeen(None, {"conductor": 40, "scheduler": 3}), 3.0).values()
    assert (drained.kind, drained.scope) == (EvidenceKind.HEALTHY, "broker:queue:conductor")
