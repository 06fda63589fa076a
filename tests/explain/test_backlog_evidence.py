"""conductor-backlog (issue 13): a storm of casts that nova-conductor takes at once and works off for
minutes. Every compute's report waits behind it (they reach the database through the conductor), so
Nova counts them down a report interval after the storm began, dated at their last report; the backlog
itself is seen only when the broker's unacknowledged count is read (every 20 s on the lab, a rabbitmqctl
run of about 7 s). Dated at that reading, the backlog looked newer than the computes' silence, which is
its victim, and the computes (down: 10 points) outranked RabbitMQ (an error: 4). The backlog is dated at
the last reading that saw the queue short now: it began after that. Pure evidence rules, then the real
explainer over a real store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, NodeEvent, Symptom
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.domain.errors import PermanentError
from haven.drill.faults import FaultLab
from haven.drill.faults_observe import _poll_unacked
from haven.evidence.broker import BrokerEvidence, BrokerSeen
from haven.explain.explainer import Explainer
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology

T0 = 1_796_621_000.0  # the storm published


def test_a_backlog_is_dated_at_the_last_reading_that_saw_its_queue_short() -> None:
    evidence = BrokerEvidence()
    evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 12}, T0 - 5), T0 - 4)
    evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 12}, T0 - 5), T0 + 30)  # stale count
    [event] = evidence.observe(
        BrokerSeen(None, {"conductor": 0}, {"conductor": 4_884}, T0 + 33), T0 + 34
    ).values()
    assert (event.node, event.kind, event.at) == ("rabbitmq", EvidenceKind.ERROR, T0 - 5)
    assert "4,884 messages not yet done" in event.detail and "12 at" in event.detail
    # No reading before it saw the queue short: dated when seen, as before.
    [first] = (
        BrokerEvidence()
        .observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 4_884}, T0 + 33), T0 + 34)
        .values()
    )
    assert first.at == T0 + 34


async def test_the_computes_waiting_behind_a_backlog_are_its_victims(tmp_path: Path) -> None:
    evidence = BrokerEvidence()
    evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 0}, T0 - 5), T0 - 4)
    [backlog] = evidence.observe(
        BrokerSeen(None, {"conductor": 0}, {"conductor": 4_884}, T0 + 33), T0 + 34
    ).values()
    computes = [NodeEvent("nova-compute", EvidenceKind.DOWN, T0 + 1.0, f"nova-compute on compute-{n} is down "
                          "in Nova's service list", "nova-services") for n in (1, 2)]  # fmt: skip
    symptom_at = T0 + 55.0
    clock = VirtualClock(symptom_at + 1)
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        store.keep_evidence({"backlog": backlog, **{f"c{i}": e for i, e in enumerate(computes)}}, symptom_at)
        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), clock)
        what = "canary boot in zone nova failed waiting for scheduled (not ACTIVE after 40 s (task_state "
        what += "scheduling))"
        symptom = Symptom(SERVER_BOOT, symptom_at, what, "scheduling")
        record = await explainer.open_and_explain(
            ExplanationRecord("canary:x", "canary", "nova", symptom, symptom_at)
        )
    assert record.diagnosis is not None
    ranked = [e.node for e in record.diagnosis.explanations]
    assert ranked == ["rabbitmq", "nova-compute"], ranked
    assert record.diagnosis.explanations[1].explained_by == ("rabbitmq",)


async def test_computes_seen_reporting_just_after_a_backlog_began_are_still_its_victims(
    tmp_path: Path,
) -> None:
    """conductor-backlog, round 2 on the lab (2026-12-07 05:54-05:56, load 14 to 25): the backlog seen
    short at 05:54:42 and 1,383 deep at 05:55:08; a look at Nova's list saw every compute reporting
    (HEALTHY, dated at the oldest report: between those two times, the only way the drill's ranking
    had the computes as no victim; the storm had not yet grown behind their reports; the drill's JSON
    keeps no HEALTHY, so 16 s here is a stand-in) and the next both down since 05:55:00. Seen working
    after the backlog's onset, the
    computes were no victim of it, and their DOWN (10 points) ranked over it (4). Within the onset
    tolerance (30 s) of a dependency's onset, being seen working no longer clears a node."""
    t = 1_796_622_882.27
    backlog = NodeEvent(
        "rabbitmq",
        EvidenceKind.ERROR,
        t,
        "Nova's conductor queue holds 1,383 messages not yet taken, seen at 05:55:08; 0 at 05:54:42",
        "broker:queue:conductor",
    )
    reporting = NodeEvent("nova-compute", EvidenceKind.HEALTHY, t + 16.0, "every nova-compute is up in "
                          "Nova's service list", "nova-services")  # fmt: skip
    down = [NodeEvent("nova-compute", EvidenceKind.DOWN, t + 17.7 + n, f"nova-compute on compute-{n} is down "
                      "in Nova's service list", "nova-services") for n in (1, 2)]  # fmt: skip
    symptom_at = t + 105.0
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        store.keep_evidence({"b": backlog, "r": reporting, "d1": down[0], "d2": down[1]}, symptom_at)
        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), VirtualClock(symptom_at + 1))
        what = "canary boot in zone nova failed waiting for scheduled (not ACTIVE after 40 s)"
        symptom = Symptom(SERVER_BOOT, symptom_at, what, "scheduling")
        record = await explainer.open_and_explain(
            ExplanationRecord("canary:y", "canary", "nova", symptom, symptom_at)
        )
    assert record.diagnosis is not None
    assert [e.node for e in record.diagnosis.explanations] == ["rabbitmq", "nova-compute"]


def test_a_backlog_that_comes_back_is_not_dated_before_the_end_of_the_last_one() -> None:
    """conductor-backlog repeated on the lab (rounds 2 and 3, 06:04-06:07): the drained queue's HEALTHY was
    dated at the look (the AMQP look every 2 s), the next backlog at its last short reading (the
    rabbitmqctl count, older): the new ERROR fell before the old HEALTHY in the same scope, so the
    ranker took it as ended and the backlog had no evidence at all in round 2."""
    evidence = BrokerEvidence()
    evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 0}, 95.0), 100.0)
    evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 5_000}, 118.0), 120.0)
    [drained] = evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 0}, 140.0), 150.0).values()
    evidence.observe(BrokerSeen(None, {"conductor": 0}, {"conductor": 0}, 140.0), 152.0)
    [again] = evidence.observe(
        BrokerSeen(None, {"conductor": 0}, {"conductor": 8_000}, 165.0), 170.0
    ).values()
    assert (drained.kind, again.kind) == (EvidenceKind.HEALTHY, EvidenceKind.ERROR)
    assert again.at >= drained.at, (again.at, drained.at)


async def test_a_failed_count_of_the_unacknowledged_is_no_short_queue() -> None:
    """conductor-backlog on the lab (2026-12-07, night, load 9 to 15): rabbitmqctl read 9,781 unacknowledged
    at 21:58:09, then one run failed: its counts cleared, the look at 21:59:09 added 0 unacknowledged to 0
    ready and kept "down to 0 messages", which ended the backlog; 16 s later it read 9,117 and the backlog
    came back dated at 21:59:09, after the computes' silence (21:58:01), which outranked it (a down: 10
    points). A run that fails, or leaves the queue out, is no reading: the last one stands, with its time."""
    answers: list[dict[str, int] | Exception] = [
        {"conductor": 9_781, "scheduler": 0},
        PermanentError("rabbitmq list_queues: timed out"),
        {"scheduler": 0},  # answered, but left the conductor's queue out
        {"conductor": 9_117, "scheduler": 0},
    ]
    into: dict[str, int] = {}
    read: list[float] = []
    seen: list[tuple[dict[str, int], list[float]]] = []

    def reader(lab: object) -> dict[str, int]:
        seen.append((dict(into), list(read)))
        if not answers:
            raise asyncio.CancelledError  # the end of the test: through to_thread, past the poll's except
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with pytest.raises(asyncio.CancelledError):
        await _poll_unacked(cast(FaultLab, None), into, read, every_s=0.0, reader=reader)
    first = seen[1]
    assert first[0] == {"conductor": 9_781, "scheduler": 0}
    assert seen[2] == first and seen[3] == first  # the failed run and the one without the queue: no reading
    assert seen[4][0] == {"conductor": 9_117, "scheduler": 0} and seen[4][1] >= first[1]
    # What the looks then saw (0 ready: the consumer took every message): the backlog never ends.
    evidence = BrokerEvidence()
    [began] = evidence.observe(BrokerSeen(None, {"conductor": 0}, first[0], first[1][0]), T0).values()
    assert began.kind is EvidenceKind.ERROR
    for counts, when in seen[2:]:
        assert evidence.observe(BrokerSeen(None, {"conductor": 0}, counts, when[0]), T0 + 60) == {}
