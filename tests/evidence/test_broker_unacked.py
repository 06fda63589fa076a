"""A backlog Nova's consumer has taken but not worked off is a backlog (issue 13's conductor-backlog miss):
oslo.messaging's prefetch is unlimited, so RabbitMQ delivers a storm at once and counts it unacknowledged,
not ready; the AMQP look alone (ready messages) saw nothing. Pure: the evidence rules and the parsing of
rabbitmqctl's JSON answer, which the lab's drill reads in place of a management API or Prometheus."""

from __future__ import annotations

from haven.diagnosis import EvidenceKind
from haven.drill.faults_observe import unacked_of
from haven.evidence.broker import BrokerEvidence, BrokerSeen


def test_unacknowledged_messages_count_as_a_backlog() -> None:
    evidence = BrokerEvidence()
    assert evidence.observe(BrokerSeen(None, {"conductor": 0}), 1.0) == {}
    # Taken by the consumer at once: 3 ready, 19,990 unacknowledged.
    [backed] = evidence.observe(BrokerSeen(None, {"conductor": 3}, {"conductor": 19_990}), 2.0).values()
    assert (backed.node, backed.kind, backed.scope) == (
        "rabbitmq",
        EvidenceKind.ERROR,
        "broker:queue:conductor",
    )
    assert "19,993 messages not yet done" in backed.detail and "19,990 delivered" in backed.detail
    # Without the unacknowledged count the same look is no backlog (what the lab's first run saw).
    assert BrokerEvidence().observe(BrokerSeen(None, {"conductor": 3}), 2.0) == {}
    [drained] = evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 12}), 3.0).values()
    assert drained.kind is EvidenceKind.HEALTHY and "down to 12 messages" in drained.detail


def test_rabbitmqctls_json_read_for_novas_queues_only() -> None:
    out = (
        '[\n{"name":"reply_98","messages_unacknowledged":0}\n,{"name":"conductor","messages_unacknowledged":'
        '18211}\n,{"name":"scheduler","messages_unacknowledged":2}\n,{"name":"compute","messages_unacknowledged":7}\n]'
    )
    assert unacked_of(out) == {"conductor": 18_211, "scheduler": 2}
    assert unacked_of("") == {}
