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
from haven.evidence.broker import (
    REACH,
    BrokerEvidence,
    BrokerSeen,
    BrokerUnreachable,
    hosts,
    look,
    uses_tls,
    watch_broker,
)
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


class _BlinkingStore:
    """A store whose first ``fails`` writes raise (a database blinking), then keeps what it is given."""

    def __init__(self, fails: int) -> None:
        self.fails, self.kept = fails, []  # type: ignore[var-annotated]

    def keep_evidence(self, events: dict[str, NodeEvent], now: float) -> None:
        if self.fails:
            self.fails -= 1
            raise RuntimeError("(psycopg.OperationalError) server closed the connection unexpectedly")
        self.kept.extend(events.values())


async def _watch(store: object, looker: object, until: object, seconds: float = 5.0) -> asyncio.Task[None]:
    task = asyncio.create_task(
        watch_broker("rabbit://nova:pw@127.0.0.1:1/", store, RealClock(), period_s=0.01, looker=looker)  # type: ignore[arg-type]
    )
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline and not task.done():  # type: ignore[operator]
        await asyncio.sleep(0.01)
    return task


async def test_a_failed_write_of_the_evidence_neither_ends_the_watch_nor_loses_the_down() -> None:
    # Review D1: one store error ended the watcher, and in haven serve every loop with it (a TaskGroup).
    def refused(url: str) -> BrokerSeen:
        raise BrokerUnreachable("127.0.0.1:1: ConnectionRefusedError")

    store = _BlinkingStore(fails=3)
    task = await _watch(store, refused, lambda: store.kept)
    try:
        assert not task.done()  # before: done, with the RuntimeError
        assert [(e.node, e.kind, e.scope) for e in store.kept] == [("rabbitmq", EvidenceKind.DOWN, REACH)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_look_that_connected_then_failed_says_nothing_of_the_reach() -> None:
    # Review R4: a slow broker (a passive declare past the look's timeout once connected) is not
    # "unreachable"; only a look with no host connecting is.
    looks: list[float] = []

    def slow(url: str) -> BrokerSeen:
        looks.append(time.monotonic())
        raise TimeoutError("timed out")

    store = _BlinkingStore(fails=0)
    task = await _watch(store, slow, lambda: len(looks) >= 6)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(looks) >= 6 and store.kept == []  # before: a DOWN "RabbitMQ unreachable" after two


def test_tls_is_asked_for_when_the_url_says_so_and_an_empty_host_entry_is_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Review D2: ?ssl=1 was dropped, so every look at a TLS-only bus failed its handshake: a DOWN kept
    # for good while Nova's notifications (oslo.messaging reads the query) kept arriving.
    urls = ("rabbit://h/?ssl=1", "rabbit://h/?ssl=True", "rabbit://h/", "rabbit://h/?ssl=0")
    assert [uses_tls(u) for u in urls] == [True, True, False, False]
    import amqp  # type: ignore[import-untyped]

    asked: list[object] = []

    class Refusing(amqp.Connection):  # type: ignore[misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            asked.append(kwargs.get("ssl"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(amqp, "Connection", Refusing)
    for url in (
        f"rabbit://nova:pw@127.0.0.1:{free_port()}/?ssl=1",
        f"rabbit://nova:pw@127.0.0.1:{free_port()}/",
    ):
        with pytest.raises(BrokerUnreachable):
            look(url, timeout_s=1.0)
    assert asked == [True, False]
    assert hosts("rabbit://nova:pw@10.0.0.1:5672,/") == [
        ("10.0.0.1:5672", "nova", "pw", "/")
    ]  # oslo skips it too


def test_a_look_that_connected_ends_a_run_of_failed_connections() -> None:
    # Review N1 (of 8d76c95): refused, connected-then-timed-out, refused gave "unreachable since" the
    # first refusal, though the broker took a connection in between.
    evidence = BrokerEvidence()
    evidence.reached(T)
    assert evidence.unreachable(T + 5, T + 5.01, "refused") == {}
    assert evidence.connected_but_failed() == {}
    assert evidence.unreachable(T + 15, T + 15.01, "refused") == {}  # one miss in a row again
    [down] = evidence.unreachable(T + 20, T + 20.01, "refused").values()
    assert down.at == T + 15  # dated at the first miss of this run
