"""RabbitMQ queues' health: the backlog read from a node, and the pure judgement of it.

Who calls it: haven.stateful.rabbitmq_node (``QUEUES_EXPR`` and ``parse_queues``: the read, through
erl_call or ``rabbitmqctl eval``), haven.stateful.rabbitmq_recovery (``judge`` each pass, one
``rabbitmq_backlog`` alert per backlog), the drills' report and the tests, which feed ``judge`` reads
and a fake clock. Everything here but the Erlang text is pure.

**The read** is one call per pass to one node, whatever the number of queues: ``QUEUES_EXPR`` runs on
the node what ``rabbitmqctl list_queues name messages_ready messages_unacknowledged consumers`` asks,
for every vhost (Mnesia's queue table is the cluster's: one node lists every queue of the cluster and
asks each queue's process wherever it runs), and returns only the totals (queues, messages ready,
unacknowledged) and the queues that hold anything, the ``QUEUE_READ_LIMIT`` fullest first: a cloud's
thousands of empty ``reply_*`` and fanout queues never leave the node. Measured on Debian's RabbitMQ
3.10.8, 3 nodes (bench/rabbitmq_queues.py, medians of 5, load 10-16): 1,000 queues in 0.18 s through
erl_call, 0.92 s through ``rabbitmqctl eval`` (its VM); 5,000 queues in 0.51 s and 3.06 s.

**The judgement** (``judge``): a backlog is reported and alerted, never acted on. Restarting a broker
for a backlog loses the messages it holds (the issue's anchor: liveness probes that restarted
overloaded brokers); a backlog is a consumer's problem (gone, stuck, too slow), which an operator
fixes. Two kinds, after the common Prometheus rules (unacknowledged messages above 1,000 for 5 min;
a queue with no consumer for 10 min):

- ``unacked``: a queue holds ``unacked_min`` or more messages delivered and not acknowledged, without
  a break, for ``unacked_window_s`` (a consumer stuck on its messages; Nova's consumers take every
  message at once, so a storm shows here, not as ready messages);
- ``no_consumers``: a queue with no consumer holds ``idle_ready_min`` or more ready messages, without
  a break, for ``idle_window_s``, and has more now than when that began (growing: someone still
  publishes to a queue nobody reads; an abandoned queue that only sits is not a backlog). Once
  reported, it stays while it holds ``idle_ready_min`` with no consumer, grown or not.

A backlog ends (its alert clears) when the queue drains below its minimum, or a consumer attaches
(``no_consumers``), or the queue is gone. A queue absent from a full read (empty, or ranked past the
read's limit below the backlog's minimum) forgets its history. A queue that did not answer (past
``QUEUE_CALL_MS``, or on a node the reader cannot reach) is not drained: the overloaded queue is the
likeliest not to answer. A partial read keeps such a queue's history and backlogs as the last read saw
them (every queue absent from the read, when the read does not name the ones that did not answer); so
does a truncated read (more than ``QUEUE_READ_LIMIT`` queues hold anything) for an absent queue while
the fullest queues' floor still meets the backlog's minimum: it may be ranked past the limit
(``absent_kept``). A pass whose read failed judges nothing: backlogs and their alerts are kept until a
read says otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from haven.domain.errors import TemporaryError

QUEUE_READ_LIMIT = 1000  # queues holding anything returned per read, the fullest first
QUEUE_CALL_MS = 5000  # one queue's answer; a queue that does not answer in time is left out of the read
# The node's answer: {"queues": N, "answered": A, "ready": R, "unacked": U, "holding": H, "held": [[vhost,
# name, node, ready, unacked, consumers], ...], "missing": [[vhost, name], ...]}: A of the N queues
# answered (the totals are theirs), H of them hold anything, "held" the fullest of those, "missing" the
# queues that did not answer (a queue past QUEUE_CALL_MS, every queue of a node the reader cannot reach:
# delegate's bad replies); the queue's node is its process's (a quorum queue's: its leader's). Classic queues
# are asked in one batch through RabbitMQ's delegates (one message per node, each node's delegate asks
# its own queues): ``rabbit_amqqueue:info_all/2`` asks them one at a time across the distribution:
# the whole read of 5,000 queues on 3 nodes took 2.16 s with it against 0.59 s batched (medians of 10,
# load ~13). Quorum and stream queues (their pid a {Name, Node}) are asked one by one through
# rabbit_amqqueue:info/2 (a quorum queue's counts are RabbitMQ's periodic metrics: seconds late).
QUEUES_EXPR = (
    "Items = [name, pid, messages_ready, messages_unacknowledged, consumers], "
    "Num = fun(K, I) -> case proplists:get_value(K, I) of X when is_integer(X) -> X; _ -> 0 end end, "
    "Where = fun(P) when is_pid(P) -> node(P); ({_, N}) when is_atom(N) -> N; (_) -> unknown end, "
    "Qs = [Q || V <- rabbit_vhost:list_names(), Q <- rabbit_amqqueue:list(V)], "
    "{Classic, Other} = lists:partition(fun(Q) -> is_pid(amqqueue:get_pid(Q)) end, Qs), "
    "{Replies, _} = delegate:invoke([amqqueue:get_pid(Q) || Q <- Classic], "
    f"{{gen_server2, call, [{{info, Items}}, {QUEUE_CALL_MS}]}}), "
    "Ok = maps:from_list([{P, I} || {P, {ok, I}} <- Replies]), "
    "Asked = [{Q, maps:get(amqqueue:get_pid(Q), Ok, none)} || Q <- Classic] "
    "++ [{Q, catch rabbit_amqqueue:info(Q, Items)} || Q <- Other], "
    "Infos = [I || {_, I} <- Asked, is_list(I)], "
    "Missing = [[V, N] || {Q, I} <- Asked, not is_list(I), "
    "{resource, V, queue, N} <- [amqqueue:get_name(Q)]], "
    "Rows = [{V, N, Where(proplists:get_value(pid, I)), Num(messages_ready, I), "
    "Num(messages_unacknowledged, I), Num(consumers, I)} "
    "|| I <- Infos, {resource, V, queue, N} <- [proplists:get_value(name, I)]], "
    "Full = [{max(U, R), [V, N, Nd, R, U, C]} || {V, N, Nd, R, U, C} <- Rows, R + U > 0], "
    f"Held = lists:sublist(lists:reverse(lists:keysort(1, Full)), {QUEUE_READ_LIMIT}), "
    "io:put_chars(rabbit_json:encode(#{queues => length(Qs), answered => length(Rows), "
    "ready => lists:sum([R || {_, _, _, R, _, _} <- Rows]), holding => length(Full), "
    f"missing => lists:sublist(Missing, {QUEUE_READ_LIMIT}), "
    "unacked => lists:sum([U || {_, _, _, _, U, _} <- Rows]), held => [Q || {_, Q} <- Held]}))."
)


@dataclass(frozen=True, slots=True)
class QueueStat:
    """One queue as read: where it is, its messages ready and unacknowledged, its consumers."""

    vhost: str
    name: str
    node: str
    ready: int
    unacked: int
    consumers: int

    @property
    def key(self) -> str:
        """The queue's name in its vhost, as the alert and the report name it (``/:conductor``)."""
        return f"{self.vhost}:{self.name}"


@dataclass(frozen=True, slots=True)
class QueueRead:
    """One read of the cluster's queues: totals over every queue, and those holding anything."""

    queues: int
    ready: int
    unacked: int
    held: tuple[QueueStat, ...] = ()  # the fullest first, at most QUEUE_READ_LIMIT
    answered: int | None = None  # the queues that answered in time (None: every one); the totals are theirs
    holding: int | None = None  # the queues holding anything (None: not said, as many as ``held``)
    missing: tuple[str, ...] | None = None  # the keys of queues that did not answer (None: not said)

    @property
    def truncated(self) -> bool:
        return self.holding is not None and self.holding > len(self.held)

    @property
    def partial(self) -> bool:
        """Some queues did not answer: what they hold is unknown (not drained)."""
        return self.answered is not None and self.answered < self.queues

    def unseen_kept(self, key: str) -> bool:
        """Whether a queue absent from ``held`` keeps what earlier reads said of it: it did not answer, or
        the read is partial without saying which queues did not (then every absent queue is kept)."""
        if not self.partial:
            return False
        if self.missing is None or len(self.missing) < self.queues - (self.answered or 0):
            return True
        return key in self.missing


def parse_queues(text: str, source: str) -> QueueRead:
    """The node's answer to ``QUEUES_EXPR`` (erl_call prints the JSON; ``rabbitmqctl eval`` prints it
    then the expression's result, ``ok``: what follows the JSON is ignored)."""
    try:
        data, _ = json.JSONDecoder().raw_decode(text.lstrip())
        held = tuple(
            QueueStat(str(v), str(n), str(node), int(r), int(u), int(c))
            for v, n, node, r, u, c in data["held"]
        )
        queues, answered = int(data["queues"]), int(data.get("answered", data["queues"]))
        holding = int(data["holding"]) if "holding" in data else None
        missing = tuple(f"{v}:{n}" for v, n in data["missing"]) if "missing" in data else None
        return QueueRead(
            queues, int(data["ready"]), int(data["unacked"]), held, None if answered == queues else answered,
            holding, missing,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TemporaryError(
            f"{source}: the queues' read answered something unreadable: {text[:200]!r}"
        ) from exc


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """The thresholds of ``[stateful.rabbitmq]`` (haven.stateful.config checks their ranges)."""

    unacked_min: int = 1000  # unacknowledged messages in one queue that count towards a backlog
    unacked_window_s: float = 300.0  # ... held this long without a break: a backlog
    idle_ready_min: int = 100  # ready messages in a queue with no consumer that count towards a backlog
    idle_window_s: float = 600.0  # ... held this long without a break, and grown: a backlog
    report_worst: int = 10  # queues shown in the report (the fullest), beside the totals
    read_timeout_s: float = 10.0  # the whole read's deadline: past it the read fails (backlogs kept)


class BacklogKind(StrEnum):
    UNACKED = "unacked"  # messages delivered and not acknowledged: a consumer stuck or too slow
    NO_CONSUMERS = "no_consumers"  # ready messages growing in a queue nobody consumes


@dataclass(frozen=True, slots=True)
class Backlog:
    kind: BacklogKind
    queue: QueueStat
    since: float  # when the queue first met the kind's minimum, without a break since
    first: int  # its count then (unacknowledged, or ready)

    def describe(self, now: float) -> str:
        q = self.queue
        lasted = f"for {now - self.since:.0f} s"
        if self.kind is BacklogKind.UNACKED:
            what = f"{q.unacked:,} messages delivered and not acknowledged {lasted} ({q.consumers} consumers)"
        else:
            what = f"{q.ready:,} ready messages and no consumer {lasted} (up from {self.first:,})"
        return f"queue {q.name!r} in vhost {q.vhost!r} on {q.node}: {what}"

    def alert(self, cluster: str, now: float) -> str:
        """The alert's text: what, why haven does nothing, what an operator does."""
        q = self.queue
        fix = (
            "its consumer is stuck or too slow: find it (`rabbitmqctl list_consumers -p VHOST`), fix or "
            "restart that service"
            if self.kind is BacklogKind.UNACKED
            else "no service consumes it: start the service that should, or delete the queue if abandoned"
        )
        return (
            f"RabbitMQ {cluster}: backlog in {self.describe(now)}. haven does not restart a broker for a "
            f"backlog (its messages would be lost); {fix}. Read it with `rabbitmqctl list_queues -p "
            f"{q.vhost} name messages_ready messages_unacknowledged consumers`."
        )


@dataclass(frozen=True, slots=True)
class QueueMemory:
    """What ``judge`` keeps between passes: since when each queue met each kind's minimum, its count then."""

    unacked: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    idle: Mapping[str, tuple[float, int]] = field(default_factory=dict)
    reported: frozenset[tuple[str, BacklogKind]] = frozenset()  # backlogs reported, while they last
    backlogs: tuple[Backlog, ...] = ()  # the backlogs last reported (kept for a queue that did not answer)


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """A pass's judgement: the read's totals, its backlogs and the worst queues, as reported."""

    at: float
    queues: int
    ready: int
    unacked: int
    backlogs: tuple[Backlog, ...]
    worst: tuple[QueueStat, ...]
    truncated: bool = False
    unanswered: int = 0  # queues that did not answer the read in time (a hung or overloaded queue)
    kept: int = 0  # backlogs of queues that did not answer, kept as the last read saw them

    def as_json(self) -> dict[str, object]:
        return {
            "at": self.at, "queues": self.queues, "ready": self.ready, "unacked": self.unacked,
            "truncated": self.truncated, "unanswered": self.unanswered, "kept": self.kept,
            "backlogs": [
                {"kind": b.kind.value, "vhost": b.queue.vhost, "queue": b.queue.name, "node": b.queue.node,
                 "ready": b.queue.ready, "unacked": b.queue.unacked, "consumers": b.queue.consumers,
                 "since": b.since, "detail": b.describe(self.at)}
                for b in self.backlogs
            ],
            "worst": [
                {"vhost": q.vhost, "queue": q.name, "node": q.node, "ready": q.ready, "unacked": q.unacked,
                 "consumers": q.consumers}
                for q in self.worst
            ],
        }  # fmt: skip


def judge(
    read: QueueRead, now: float, memory: QueueMemory | None = None, settings: QueueSettings | None = None
) -> tuple[QueueHealth, QueueMemory]:
    """The backlogs of ``read`` at ``now``, given what earlier passes saw (``memory``); the new memory."""
    settings = settings or QueueSettings()
    memory = memory or QueueMemory()
    unacked: dict[str, tuple[float, int]] = {}
    idle: dict[str, tuple[float, int]] = {}
    backlogs: list[Backlog] = []
    for q in read.held:
        if q.unacked >= settings.unacked_min:
            since, first = unacked[q.key] = memory.unacked.get(q.key, (now, q.unacked))
            if now - since >= settings.unacked_window_s:
                backlogs.append(Backlog(BacklogKind.UNACKED, q, since, first))
        if q.consumers == 0 and q.ready >= settings.idle_ready_min:
            since, first = idle[q.key] = memory.idle.get(q.key, (now, q.ready))
            known = (q.key, BacklogKind.NO_CONSUMERS) in memory.reported
            if known or (now - since >= settings.idle_window_s and q.ready > first):
                backlogs.append(Backlog(BacklogKind.NO_CONSUMERS, q, since, first))
    kept = 0
    if read.partial or read.truncated:  # a queue not seen is not drained: what earlier reads said stands
        keep = absent_kept(read, settings)
        for kind, mine, theirs in (
            (BacklogKind.UNACKED, unacked, memory.unacked), (BacklogKind.NO_CONSUMERS, idle, memory.idle)
        ):  # fmt: skip
            mine.update((k, v) for k, v in theirs.items() if keep(k, kind))
        carried = [b for b in memory.backlogs if keep(b.queue.key, b.kind)]
        backlogs += carried
        kept = len(carried)
    backlogs.sort(key=lambda b: (-max(b.queue.unacked, b.queue.ready), b.queue.key, b.kind.value))
    worst = tuple(sorted(read.held, key=lambda q: (-max(q.unacked, q.ready), q.key))[: settings.report_worst])
    unanswered = 0 if read.answered is None else read.queues - read.answered
    health = QueueHealth(
        now, read.queues, read.ready, read.unacked, tuple(backlogs), worst, read.truncated, unanswered, kept
    )
    reported = frozenset((b.queue.key, b.kind) for b in backlogs)
    return health, QueueMemory(unacked, idle, reported, tuple(backlogs))


def absent_kept(read: QueueRead, settings: QueueSettings) -> Callable[[str, BacklogKind], bool]:
    """Whether a queue keeps what earlier reads said of a kind (its history, its backlog) after ``read``:
    it is absent from ``held`` and did not answer, or the read is truncated and the fullest queues' floor
    (an absent queue holds no more) still meets the kind's minimum: it may be ranked past the limit."""
    seen = {q.key for q in read.held}
    floor = min((max(q.unacked, q.ready) for q in read.held), default=0) if read.truncated else -1
    minimum = {BacklogKind.UNACKED: settings.unacked_min, BacklogKind.NO_CONSUMERS: settings.idle_ready_min}

    def kept(key: str, kind: BacklogKind) -> bool:
        return key not in seen and (read.unseen_kept(key) or floor >= minimum[kind])

    return kept


def describe_health(health: QueueHealth) -> str:
    """One line of totals and backlogs (the drills' report and serve's log)."""
    text = f"{health.queues:,} queues, {health.ready:,} ready, {health.unacked:,} unacknowledged"
    if health.unanswered:
        text += f" ({health.unanswered:,} did not answer in {QUEUE_CALL_MS / 1000:g} s"
        text += f"; {health.kept} backlogs of theirs kept as last read)" if health.kept else ")"
    if health.truncated:
        text += f" (only the {QUEUE_READ_LIMIT:,} fullest judged)"
    if health.backlogs:
        said = (f"{b.kind.value}: {b.describe(health.at)}" for b in health.backlogs)
        text += "; backlogs: " + "; ".join(said)
    return text
