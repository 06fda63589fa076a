"""RabbitMQ unreachable as evidence (haven.evidence.broker): what haven serve knows of the cloud's bus
without ``[controlplane]``, from ``[diagnosis] transport_url``.

Pure rules (two failed looks in a row, dated at the first; kept again while it lasts; ended by the next
look that connects; nothing on a healthy bus), a real refused port (nothing listens: the ground truth of
a killed broker), and the ranking of the lab's rabbitmq-killed evidence (bench/alert_ratio.py at 121d754,
where haven blamed nova-compute) with and without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Symptom, rank
from haven.domain.clock import RealClock
from haven.evidence.broker import REACH, BrokerEvidence, BrokerUnreachable, hosts, look, watch_broker
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology
from servers.process import free_port

T = 1_796_658_130.0


def test_a_healthy_bus_gives_one_healthy_and_no_down() -> None:
    evidence = BrokerEvidence()
    [first] = evidence.reached(T).values()
    assert (first.node, first.kind, first.scope) == ("rabbitmq", EvidenceKind.HEALTHY, REACH)
    assert all(evidence.reached(T + 5 * i) == {} for i in range(1, 100))  # only changes are kept
    # one failed look (a timeout on a loaded host) is no evidence, and the next look that connects ends it
    assert evidence.unreachable(T + 600, T + 603, "127.0.0.1:5672: timed out") == {}
    assert evidence.reached(T + 605) == {}


def test_two_failed_looks_are_a_down_from_the_first_kept_again_and_ended_by_a_look_that_connects() -> None:
    evidence = BrokerEvidence(repeat_s=300)
    evidence.reached(T)
    assert evidence.unreachable(T + 5, T + 5.01, "127.0.0.1:5672: ConnectionRefusedError") == {}
    [down] = evidence.unreachable(T + 10, T + 10.01, "127.0.0.1:5672: ConnectionRefusedError").values()
    assert (down.node, down.kind, down.scope, down.at) == ("rabbitmq", EvidenceKind.DOWN, REACH, T + 5)
    assert down.detail.startswith("RabbitMQ unreachable since ") and "ConnectionRefusedError" in down.detail
    assert evidence.unreachable(T + 15, T + 15.01, "refused") == {}  # unchanged
    [again] = evidence.unreachable(T + 320, T + 320.01, "refused").values()  # in the ranker's window again
    assert again.kind is EvidenceKind.DOWN and again.at == T + 320.01
    [ended] = evidence.reached(T + 325).values()
    assert (ended.kind, ended.scope, ended.at, ended.detail) == (
        EvidenceKind.HEALTHY, REACH, T + 325, "RabbitMQ answers again"
    )  # fmt: skip


def test_the_transport_url_s_hosts_each_and_a_refused_port_is_unreachable() -> None:
    assert hosts("rabbit://nova:s%40cret@10.0.0.1:5673,nova:s%40cret@10.0.0.2/vh") == [
        ("10.0.0.1:5673", "nova", "s@cret", "vh"), ("10.0.0.2:5672", "nova", "s@cret", "vh"),
    ]  # fmt: skip
    port = free_port()  # nothing listens there: a killed broker
    with pytest.raises(BrokerUnreachable) as raised:
        look(f"rabbit://nova:topsecret@127.0.0.1:{port}/", timeout_s=1.0)
    assert f"127.0.0.1:{port}" in str(raised.value) and "topsecret" not in str(raised.value)


async def test_watching_a_refused_bus_keeps_rabbitmq_down() -> None:
    port = free_port()
    with Store.open("sqlite://") as store:
        task = asyncio.create_task(
            watch_broker(f"rabbit://nova:pw@127.0.0.1:{port}/", store, RealClock(), period_s=0.05)
        )
        try:
            deadline = time.monotonic() + 10
            while not (kept := store.evidence_between(0, time.time() + 1)):
                assert time.monotonic() < deadline, "no evidence within 10 s"
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [(e.node, e.kind, e.scope) for e in kept] == [("rabbitmq", EvidenceKind.DOWN, REACH)]


def test_with_it_the_lab_s_rabbitmq_killed_boot_is_blamed_on_rabbitmq_not_nova_compute() -> None:
    topology = openstack_topology(CATALOGUE.values())
    graph = Graph(topology.depends_on, topology.labels, topology.phases)
    # What haven had (bench/alert_ratio.py, 15:42): its control-plane alert 4 s into the fault, and Nova's
    # service list showing the computes down (stale reports from the database fault just before).
    compute = "nova-compute"
    had = [
        NodeEvent(compute, EvidenceKind.DOWN, T - 2, "nova-compute on compute-1 is down", "nova-services"),
        NodeEvent(compute, EvidenceKind.ERROR, T + 4, "2 of 2 nova-compute services stopped reporting"),
    ]
    boot = Symptom(SERVER_BOOT, T + 30, "canary boot failed waiting for accepted", "api")
    assert rank(graph, boot, events=had).explanations[0].node == "nova-compute"
    evidence = BrokerEvidence()
    evidence.reached(T - 4)
    evidence.unreachable(T + 1, T + 1, "127.0.0.1:5672: ConnectionRefusedError")
    kept = list(evidence.unreachable(T + 6, T + 6, "127.0.0.1:5672: ConnectionRefusedError").values())
    [top, *_] = rank(graph, boot, events=had + kept).explanations
    assert top.node == "rabbitmq" and "RabbitMQ unreachable since" in top.text
