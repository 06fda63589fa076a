"""haven.evidence.broker's looks on the session's real RabbitMQ (tests/servers/rabbitmq.py).

The memory-alarm fault of the catalogue (haven.drill.faults_resources.memory_alarm, through rabbitmqctl
in the broker's own environment) makes the broker itself answer a publish with ``connection.blocked``
(and list the alarm in ``rabbit_alarm:get_alarms()``), which ``look`` reports; the heal puts back the
watermark the broker had and publishers are let through again. A queue holding messages nobody takes
is seen with its depth.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import amqp  # type: ignore[import-untyped]
import pytest

from haven.drill.faults import LabProcess
from haven.drill.faults_resources import memory_alarm, rabbitmqctl
from haven.evidence.broker import BrokerEvidence, look
from haven.lab.state import start_time
from servers.rabbitmq import RabbitMQ

pytestmark = pytest.mark.rabbitmq


class BrokerLab:
    """The one handle memory_alarm needs: the lab's record of its rabbitmq-server."""

    folder = Path("/nonexistent")

    def __init__(self, broker: RabbitMQ) -> None:
        pid = broker.server.pid
        assert pid is not None
        self.record = LabProcess("rabbitmq-server", pid, start_time(pid) or 0, Path("/dev/null"))

    def process(self, name: str) -> LabProcess:
        assert name == "rabbitmq-server"
        return self.record


@pytest.mark.slow
def test_the_memory_alarm_blocks_publishers_look_says_so_and_the_heal_restores_the_watermark(
    rabbitmq: RabbitMQ,
) -> None:
    lab = BrokerLab(rabbitmq)
    read = "vm_memory_monitor:get_vm_memory_high_watermark()."
    before = rabbitmqctl(lab, "eval", read)  # type: ignore[arg-type]
    assert look(rabbitmq.url).blocked is None
    heal = memory_alarm(lab)  # type: ignore[arg-type]
    try:
        assert "memory" in rabbitmqctl(lab, "eval", "rabbit_alarm:get_alarms().")  # type: ignore[arg-type]
        seen = look(rabbitmq.url)
        assert seen.blocked is not None  # py-amqp's words: "connection blocked, see broker logs"
    finally:
        heal()
    assert rabbitmqctl(lab, "eval", read) == before  # type: ignore[arg-type]
    deadline = time.monotonic() + 20.0
    while look(rabbitmq.url).blocked is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert look(rabbitmq.url).blocked is None


def test_look_counts_the_messages_a_queue_holds(rabbitmq: RabbitMQ) -> None:
    queue = f"haven-test-backlog-{uuid.uuid4().hex[:8]}"
    connection = amqp.Connection(f"127.0.0.1:{rabbitmq.port}", userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=False)
        for _ in range(250):
            channel.basic_publish(amqp.Message(b"x"), exchange="", routing_key=queue)
        deadline = time.monotonic() + 10.0
        while (seen := look(rabbitmq.url, queues=(queue, "no-such-queue"))).ready.get(queue, 0) < 250:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
        assert seen.ready == {queue: 250} and seen.blocked is None  # an absent queue is not declared
        [backed] = BrokerEvidence(backlog=200).observe(seen, 1.0).values()
        assert backed.scope == f"broker:queue:{queue}"
    finally:
        connection.channel().queue_delete(queue)
        connection.close()
