"""RabbitMQ queues' health: the pure judgement (a fake clock: ``now`` is given), the read's parse
(recorded answers of the real node), the loop's one alert per backlog, and the config's ranges.

The read on a real node is tested in test_rabbitmq_real.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from haven.domain.clock import VirtualClock
from haven.domain.errors import ConfigError, TemporaryError
from haven.domain.incidents import AlertKind
from haven.service.config import load_config
from haven.service.metrics import HavenMetrics
from haven.service.status import status_summary
from haven.stateful.rabbitmq import ClusterStatus, DecisionKind, RabbitSettings
from haven.stateful.rabbitmq_queues import (
    QUEUE_READ_LIMIT,
    BacklogKind,
    QueueRead,
    QueueSettings,
    QueueStat,
    describe_health,
    judge,
    parse_queues,
)
from haven.stateful.rabbitmq_recovery import RabbitRecovery
from haven.store import Store

RECORDED = Path(__file__).parent / "recorded"
SETTINGS = QueueSettings(unacked_min=100, unacked_window_s=60, idle_ready_min=10, idle_window_s=120)


def _read(*queues: QueueStat) -> QueueRead:
    return QueueRead(1000, sum(q.ready for q in queues), sum(q.unacked for q in queues), queues)


def _q(name: str, ready: int = 0, unacked: int = 0, consumers: int = 1) -> QueueStat:
    return QueueStat("/", name, "rabbit-1@h", ready, unacked, consumers)


def _kinds(read: QueueRead, times: list[float]) -> list[list[tuple[str, BacklogKind]]]:
    """The backlogs judged at each of ``times`` (the same read each time), carrying the memory over."""
    memory, seen = None, []
    for now in times:
        health, memory = judge(read, now, memory, SETTINGS)
        seen.append([(b.queue.name, b.kind) for b in health.backlogs])
    return seen


def test_unacked_above_the_minimum_is_a_backlog_only_after_its_window() -> None:
    read = _read(_q("conductor", unacked=150))
    assert _kinds(read, [0, 30, 59.9, 60]) == [[], [], [], [("conductor", BacklogKind.UNACKED)]]


def test_a_break_in_the_unacked_backlog_restarts_its_window_and_draining_clears_it() -> None:
    memory = None
    for now, unacked, expected in [(0, 150, 0), (50, 20, 0), (100, 150, 0), (159, 150, 0), (160, 150, 1),
                                   (170, 99, 0)]:  # fmt: skip
        health, memory = judge(_read(_q("c", unacked=unacked)), now, memory, SETTINGS)
        assert len(health.backlogs) == expected, now


def test_ready_with_no_consumer_is_a_backlog_only_when_it_grew_over_its_window() -> None:
    memory = None
    steps = [(0, 10, 0), (60, 40, 0), (120, 40, 1), (180, 15, 1), (190, 9, 0)]
    for now, ready, expected in steps:  # grown from 10 to 40 at 120 s: a backlog until below 10
        health, memory = judge(_read(_q("fanout", ready=ready, consumers=0)), now, memory, SETTINGS)
        assert [b.kind for b in health.backlogs] == [BacklogKind.NO_CONSUMERS] * expected, now
    # An abandoned queue that only sits (no growth) is never a backlog, however long.
    assert _kinds(_read(_q("old", ready=500, consumers=0)), [0, 1000, 100000])[-1] == []


def test_a_consumer_attaching_ends_a_no_consumer_backlog() -> None:
    health, memory = judge(_read(_q("q", ready=20, consumers=0)), 0, None, SETTINGS)
    health, memory = judge(_read(_q("q", ready=30, consumers=0)), 200, memory, SETTINGS)
    assert [b.kind for b in health.backlogs] == [BacklogKind.NO_CONSUMERS]
    health, memory = judge(_read(_q("q", ready=30, consumers=1)), 210, memory, SETTINGS)
    assert health.backlogs == ()


def test_the_report_is_the_worst_n_and_the_totals() -> None:
    queues = [_q(f"reply_{i}", ready=i) for i in range(1, 40)]
    health, _ = judge(_read(*queues), 0, None, QueueSettings(report_worst=3))
    assert [q.name for q in health.worst] == ["reply_39", "reply_38", "reply_37"]
    assert (health.queues, health.ready) == (1000, sum(range(1, 40)))
    assert describe_health(health) == "1,000 queues, 780 ready, 0 unacknowledged"


def test_the_alert_text_says_haven_does_not_restart_and_how_to_read_it() -> None:
    health, _ = judge(
        _read(_q("conductor", unacked=5000, consumers=2)), 0, None, QueueSettings(unacked_window_s=0)
    )
    text = health.backlogs[0].alert("mq", 0)
    assert "does not restart a broker" in text and "rabbitmqctl list_queues -p /" in text
    assert "5,000 messages delivered and not acknowledged" in text


def test_the_recorded_answers_of_erl_call_and_rabbitmqctl_eval_parse_alike() -> None:
    by_erl_call = parse_queues((RECORDED / "queues_erl_call.json").read_text(), "n")
    by_eval = parse_queues((RECORDED / "queues_rabbitmqctl_eval.txt").read_text(), "n")
    assert by_erl_call == by_eval and (by_erl_call.queues, by_erl_call.answered) == (5002, None)
    held = {q.name: q for q in by_erl_call.held}
    assert (held["haven-unacked"].unacked, held["haven-unacked"].consumers) == (40, 1)
    assert (held["haven-idle"].ready, held["haven-idle"].consumers) == (25, 0)
    with pytest.raises(TemporaryError, match="unreadable"):
        parse_queues("{badarg", "n")
    # A queue that does not answer in time is left out of the totals, and counted.
    slow = parse_queues('{"answered":9,"held":[],"queues":10,"ready":0,"unacked":0}', "n")
    health, _ = judge(slow, 0)
    assert health.unanswered == 1 and "1 did not answer in 5 s" in describe_health(health)


def test_a_partial_read_keeps_what_the_last_read_said_of_the_queues_that_did_not_answer() -> None:
    s = QueueSettings(unacked_min=10, unacked_window_s=0)
    conductor, compute = QueueStat("/", "conductor", "rabbit@a", 0, 50000, 1), _q("compute", unacked=3)
    health, memory = judge(QueueRead(3, 0, 50003, (conductor, compute)), 0.0, None, s)
    assert [b.queue.key for b in health.backlogs] == ["/:conductor"]
    # The overloaded queue did not answer in time (2 of 3 answered): not drained, its backlog stays,
    # whether the read names the queues that did not answer or not (then every absent queue is kept).
    for missing in (None, ("/:conductor",)):
        partial = QueueRead(3, 0, 3, (compute,), answered=2, missing=missing)
        health, kept = judge(partial, 10.0, memory, s)
        assert [(b.queue.key, b.queue.unacked, b.since) for b in health.backlogs] == [
            ("/:conductor", 50000, 0)
        ]
        assert dict(kept.unacked) == {"/:conductor": (0.0, 50000)} and health.kept == 1
        assert "1 backlogs of theirs kept as last read" in describe_health(health)
    # Another queue did not answer: conductor answered and is absent, so it drained.
    drained, _ = judge(QueueRead(3, 0, 3, (compute,), answered=2, missing=("/:other",)), 10.0, memory, s)
    assert drained.backlogs == () and drained.kept == 0
    health, kept = judge(partial, 10.0, memory, s)
    assert judge(QueueRead(3, 0, 3, (compute,)), 20.0, kept, s)[0].backlogs == ()  # a full read: drained


def test_the_read_names_the_queues_that_did_not_answer_and_is_truncated_past_its_limit() -> None:
    answer = (
        '{"answered":2,"held":[],"holding":0,"missing":[["/","conductor"],["nova","x"]],'
        '"queues":4,"ready":0,"unacked":0}'
    )
    read = parse_queues(answer, "n")
    assert (read.answered, read.missing, read.partial) == (2, ("/:conductor", "nova:x"), True)
    full = tuple(_q(f"q{i}", ready=1) for i in range(QUEUE_READ_LIMIT))
    assert not QueueRead(5000, 1000, 0, full, holding=QUEUE_READ_LIMIT).truncated  # exactly the limit
    assert QueueRead(5000, 1001, 0, full, holding=QUEUE_READ_LIMIT + 1).truncated


class _Node:
    def __init__(self, name: str, read: QueueRead | Exception) -> None:
        self.name, self.read, self.calls = name, read, []

    async def running(self) -> bool:
        return True

    async def status(self) -> ClusterStatus:
        return ClusterStatus(("a@h", "b@h"))

    async def queues(self, timeout_s: float | None = None) -> QueueRead:
        self.calls.append("queues")
        if isinstance(self.read, Exception):
            raise self.read
        return self.read


def test_the_loop_keeps_one_alert_per_backlog_and_clears_it_when_it_drains_without_acting() -> None:
    store, clock = Store.open("sqlite://"), VirtualClock()
    a, b = _Node("a@h", _read(_q("conductor", unacked=500))), _Node("b@h", _read())
    settings = QueueSettings(unacked_min=100, unacked_window_s=30)
    loop = RabbitRecovery.on_store([a, b], store, "mq", clock, settings=RabbitSettings(), queues=settings)

    def backlog_alerts() -> list[str]:
        return [str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG]

    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING and backlog_alerts() == []
    clock.advance_to(clock.now() + 31)
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING  # a backlog: never acted on
    assert backlog_alerts() == ["mq:unacked:/:conductor"] and (a.calls, b.calls) == (["queues"] * 2, [])
    shown = status_summary(store).to_dict()["alerts"]  # `haven status [--json]`, GET /v1/haven/status
    assert [(x["kind"], x["host"]) for x in shown] == [("rabbitmq_backlog", "mq:unacked:/:conductor")]
    scraped = generate_latest(HavenMetrics(store).registry).decode()  # what /metrics serves
    assert 'haven_alerts_active{kind="rabbitmq_backlog"} 1.0' in scraped
    a.read = TemporaryError("erl_call: no answer in 30 s")  # unread: the alert stays
    clock.advance_to(clock.now() + 5)
    asyncio.run(loop.run_pass())
    assert backlog_alerts() == ["mq:unacked:/:conductor"] and "no answer" in loop.queue_error
    for _ in range(2):  # the third failed read in a row: one alert says the queues cannot be read
        asyncio.run(loop.run_pass())
    assert sorted(backlog_alerts()) == ["mq:unacked:/:conductor", "mq:unread"]
    unread = next(x for x in store.list_alerts() if str(x.host) == "mq:unread").message
    assert "could not be read 3 times in a row (last: queues of a@h: erl_call: no answer" in unread
    asyncio.run(loop.run_pass())
    assert len([x for x in store.list_alerts(active_only=False) if str(x.host) == "mq:unread"]) == 1
    a.read = _read(_q("conductor", unacked=3))
    asyncio.run(loop.run_pass())
    assert backlog_alerts() == [] and loop.queue_health is not None and loop.queue_health.backlogs == ()
    cleared = [x for x in store.list_alerts(active_only=False) if x.kind is AlertKind.RABBITMQ_BACKLOG]
    assert sorted(str(x.host) for x in cleared) == ["mq:unacked:/:conductor", "mq:unread"]
    assert all(x.cleared_at is not None for x in cleared)
    assert any("does not restart a broker" in x.message for x in cleared)


def test_a_partial_read_keeps_the_alert_and_watch_queues_off_clears_what_a_watch_left() -> None:
    store, clock = Store.open("sqlite://"), VirtualClock()
    a, b = _Node("a@h", _read(_q("conductor", unacked=500))), _Node("b@h", _read())
    settings = QueueSettings(unacked_min=100, unacked_window_s=0)
    loop = RabbitRecovery.on_store([a, b], store, "mq", clock, settings=RabbitSettings(), queues=settings)

    def backlog_alerts() -> list[str]:
        return [str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG]

    asyncio.run(loop.run_pass())
    assert backlog_alerts() == ["mq:unacked:/:conductor"]
    a.read = QueueRead(1000, 0, 0, (), answered=999, missing=("/:conductor",))  # it did not answer
    asyncio.run(loop.run_pass())
    assert backlog_alerts() == ["mq:unacked:/:conductor"]
    unwatched = RabbitRecovery.on_store([a, b], store, "mq", clock, settings=RabbitSettings())
    asyncio.run(unwatched.run_pass())  # watch_queues = false: nothing will read the queues again
    assert backlog_alerts() == [] and a.calls == ["queues", "queues"]


def _leader_left_an_alert(store: Store, clock: VirtualClock) -> None:
    """A previous leader's term: it raised ``mq:unacked:/:q`` (then it stopped)."""
    a, b = _Node("a@h", _read(_q("q", unacked=500))), _Node("b@h", _read())
    settings = QueueSettings(unacked_min=100, unacked_window_s=0)
    asyncio.run(RabbitRecovery.on_store([a, b], store, "mq", clock, queues=settings).run_pass())


def test_a_new_leaders_partial_or_truncated_first_read_keeps_the_alerts_of_queues_it_did_not_see() -> None:
    store, clock = Store.open("sqlite://"), VirtualClock()
    _leader_left_an_alert(store, clock)
    partial = QueueRead(3, 0, 0, (), answered=2, holding=0, missing=("/:q",))  # /:q did not answer
    a, b = _Node("a@h", partial), _Node("b@h", _read())
    settings = QueueSettings(unacked_min=100, unacked_window_s=0)
    loop = RabbitRecovery.on_store([a, b], store, "mq", clock, queues=settings)  # a new term

    def backlog_alerts() -> list[str]:
        return sorted(str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG)

    for _ in range(2):
        asyncio.run(loop.run_pass())
        assert backlog_alerts() == ["mq:unacked:/:q"]
    held = tuple(_q(f"p{i}", unacked=200) for i in range(3))  # /:q ranked past the limit: unseen, kept
    a.read = QueueRead(9, 0, 600, held, holding=4)
    asyncio.run(loop.run_pass())
    assert backlog_alerts() == ["mq:unacked:/:p0", "mq:unacked:/:p1", "mq:unacked:/:p2", "mq:unacked:/:q"]
    a.read = QueueRead(9, 0, 600, held, holding=3)  # a full read without /:q: it drained
    asyncio.run(loop.run_pass())
    assert backlog_alerts() == ["mq:unacked:/:p0", "mq:unacked:/:p1", "mq:unacked:/:p2"]


def test_a_truncated_read_keeps_an_absent_queues_backlog_while_the_limits_floor_meets_its_minimum() -> None:
    now, settings = 0.0, QueueSettings(unacked_min=100, unacked_window_s=0)
    _, memory = judge(_read(_q("q", unacked=500)), now, None, settings)
    held = tuple(_q(f"p{i}", unacked=150) for i in range(3))  # the fullest 3 of 4: /:q may hold 150
    health, memory = judge(QueueRead(9, 0, 450, held, holding=4), 1.0, memory, settings)
    assert "/:q" in {b.queue.key for b in health.backlogs} and "/:q" in memory.unacked
    low = tuple(_q(f"p{i}", ready=50) for i in range(3))  # the floor is 50: /:q holds less than 100
    health, memory = judge(QueueRead(9, 150, 0, low, holding=4), 2.0, memory, settings)
    assert health.backlogs == () and "/:q" not in memory.unacked


def test_a_found_alert_of_a_long_queue_name_cut_to_the_stores_255_characters_is_matched_to_its_queue() -> (
    None
):
    store, clock, name = Store.open("sqlite://"), VirtualClock(), "reply_" + "x" * 300
    settings = QueueSettings(unacked_min=100, unacked_window_s=0)
    first = _Node("a@h", _read(_q(name, unacked=500)))
    asyncio.run(
        RabbitRecovery.on_store(
            [first, _Node("b@h", _read())], store, "mq", clock, queues=settings
        ).run_pass()
    )
    [cut] = [str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG]
    assert len(cut) == 255 and "~" in cut
    a = _Node("a@h", QueueRead(3, 0, 0, (), answered=2, holding=0, missing=(f"/:{name}",)))
    loop = RabbitRecovery.on_store([a, _Node("b@h", _read())], store, "mq", clock, queues=settings)
    asyncio.run(loop.run_pass())  # it did not answer: kept
    assert [str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG] == [cut]
    a.read = QueueRead(3, 0, 0, (_q(name, unacked=5), _q("other", ready=1)), holding=2)  # seen, drained
    asyncio.run(loop.run_pass())
    assert [x for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG] == []


def test_a_new_leader_whose_reads_fail_raises_unread_beside_the_alerts_it_found() -> None:
    store, clock = Store.open("sqlite://"), VirtualClock()
    _leader_left_an_alert(store, clock)
    a, b = _Node("a@h", TemporaryError("erl_call: no answer")), _Node("b@h", _read())
    loop = RabbitRecovery.on_store([a, b], store, "mq", clock, queues=QueueSettings())  # a new term
    for _ in range(6):
        asyncio.run(loop.run_pass())
    active = sorted(str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG)
    assert active == ["mq:unacked:/:q", "mq:unread"]
    a.read = _read()  # a full read: /:q drained, the queues read again
    asyncio.run(loop.run_pass())
    assert [x for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG] == []


def _config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(
        f"""
[stateful.rabbitmq]
home = "{tmp_path}"
{extra}
[[stateful.rabbitmq.nodes]]
name = "rabbit-1@localhost"
folder = "{tmp_path}/n1"
amqp_port = 5672
dist_port = 25672
[[stateful.rabbitmq.nodes]]
name = "rabbit-2@localhost"
folder = "{tmp_path}/n2"
amqp_port = 5673
dist_port = 25673
"""
    )
    return path


def test_the_thresholds_are_read_and_bad_values_refused_by_name_with_their_bound(tmp_path: Path) -> None:
    config = load_config(
        tmp_path, _config(tmp_path, "backlog_unacked_min = 50\nbacklog_idle_window_s = 30.0")
    )
    assert config.stateful.rabbitmq is not None and config.stateful.rabbitmq.queues is not None
    assert (config.stateful.rabbitmq.queues.unacked_min, config.stateful.rabbitmq.queues.idle_window_s) == (
        50,
        30,
    )
    assert config.stateful.rabbitmq.queues.read_timeout_s == 10
    quick = load_config(tmp_path, _config(tmp_path, "queues_timeout_s = 3.0"))
    assert quick.stateful.rabbitmq is not None and quick.stateful.rabbitmq.queues is not None
    assert quick.stateful.rabbitmq.queues.read_timeout_s == 3
    off = load_config(tmp_path, _config(tmp_path, "watch_queues = false"))
    assert off.stateful.rabbitmq is not None and off.stateful.rabbitmq.queues is None
    for line, words in [
        ("backlog_unacked_min = 0", "backlog_unacked_min: Input should be greater than or equal to 1"),
        (
            "backlog_idle_window_s = 100000.0",
            "backlog_idle_window_s: Input should be less than or equal to 86400",
        ),
        ("backlog_report_worst = 5000", "backlog_report_worst: Input should be less than or equal to 1000"),
        ("queues_timeout_s = 0.5", "queues_timeout_s: Input should be greater than or equal to 1"),
        ("queues_timeout_s = 120.0", "queues_timeout_s: Input should be less than or equal to 60"),
    ]:
        with pytest.raises(ConfigError, match=words):
            load_config(tmp_path, _config(tmp_path, line))
