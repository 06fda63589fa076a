"""One fault injected on a running lab and judged: inject, canary round, stored explanation, heal, whole.

Called by `haven drill fault NAME --cloud lab` (haven.cli.fault_drill) and bench/explain.py, which both
run injections in rounds in the order ``plan`` gives (``--repeat``, shuffled with a seed). For each
injection:

1. the lab is proven whole (every process it started alive, no hold left, a canary round whose probes
   and boots all pass) within ``whole_timeout_s``; a lab that is not whole skips the fault;
2. the fault is injected and, after its settle time (Nova's service list calls a silent service down
   after the lab's ``service_down_time`` = 10 s), one canary round runs (token, server list, each
   catalog endpoint, Nova's service list, the zones, one boot per zone), bounded by
   ``round_timeout_s``; a read that fails is the canary's symptom or evidence, never the drill's end;
3. the symptom judged is the failed canary boot's explanation when a boot failed, else the first
   failed probe's (token, server list, zones); no symptom at all is a miss ("no symptom");
4. the fault is healed (whatever happened) and the lab proven whole again.

A SIGTERM while a fault is in place (a `kill`, a CI job's time limit) heals it before the process stops
(exit 143, the lab's proof skipped): a SIGSTOPped Keystone or a drill's iptables rule is never left
behind by a polite stop. A SIGKILL still is (docs/explanations.md says how to find what is left).

Each symptom's ranker input (graph, events, series) is kept (``Result.inputs``), so bench/explain.py
can rank it again with the baselines (haven.diagnosis.baselines) or later code (``rank_all``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from haven.canary.model import CanarySettings, Outcome
from haven.canary.ports import CanaryCloud
from haven.canary.runner import CanaryRunner, Round
from haven.canary.unseen import probe_needs
from haven.cloud.openstack.canary import open_canary
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Series, Symptom
from haven.diagnosis.baselines import METHODS
from haven.diagnosis.records import ExplanationRecord, explanation_json
from haven.domain.clock import RealClock
from haven.domain.waiting import within
from haven.drill.faults import NO_FAULT, Fault, FaultLab, Heal
from haven.explain.explainer import Explainer, ExplainSettings, RankInputs, prepare
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology


@dataclass(frozen=True)
class RunSettings:
    boot_timeout_s: float = 40.0
    request_timeout_s: float = 10.0  # each OpenStack request
    endpoint_timeout_s: float = 3.0  # each catalog endpoint's version document
    round_timeout_s: float = 240.0  # one canary round
    whole_timeout_s: float = 240.0  # the lab proven whole
    jitter_s: float = 0.0  # with a seed: each injection lasts 0 to this many s more


@dataclass
class Result:
    fault: str
    root: str
    status: str = "run"  # run | skipped (lab not whole) | error (the injection itself failed)
    canary: str = ""  # the canary's outcome under the fault, and the probes that failed
    symptom: str = ""  # the record judged
    ranked: list[str] = field(default_factory=list)
    explained_after_s: float | None = None
    summary: str = ""
    healed: bool = True
    notes: list[str] = field(default_factory=list)
    # every method's ranking of the same evidence (haven.diagnosis.baselines), and that evidence
    methods: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    round: int = 1  # which repeat (bench --repeat): every fault once per round, each round in its own order
    seed: int | None = None  # this injection's own seed (its settle jitter)
    settle_s: float = 0.0  # how long the fault lasted before the canary round (the fault's + jitter)
    # A no-fault control period (nothing injected): every symptom it raised (an alarm), and each method's
    # ranking of a boot failure supposed at its end (what each would blame on the evidence then held).
    alarms: list[str] = field(default_factory=list)
    blamed: list[str] = field(default_factory=list)  # haven's top cause of each alarm (none: "")
    supposed: dict[str, list[str]] = field(default_factory=dict)
    supposed_inputs: dict[str, Any] | None = None
    # haven's stored explanations of the judged symptom, best first, with their evidence in words
    explanations: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0  # the whole injection: whole, inject, round, heal, whole again
    load: list[float] = field(default_factory=list)  # the 1-minute load average at its start and end

    @property
    def control(self) -> bool:
        return self.fault == NO_FAULT.name

    @property
    def top1(self) -> bool:
        return bool(self.ranked) and self.ranked[0] == self.root

    @property
    def top3(self) -> bool:
        return self.root in self.ranked[:3]

    @property
    def reason(self) -> str:
        if self.control:
            said = [f"{a} blamed {b or 'nothing'}" for a, b in zip(self.alarms, self.blamed, strict=True)]
            return f"false alarm: {'; '.join(said)}" if said else ""
        if self.top1:
            return ""
        if self.status != "run":
            return "; ".join(self.notes) or self.status
        if not self.symptom:
            return "no symptom: the canary saw nothing fail"
        if not self.ranked:
            return "nothing ranked: no evidence on any candidate"
        return f"ranked {', '.join(self.ranked[:3])} first"


def inputs_json(symptom: Symptom, found: RankInputs) -> dict[str, Any]:
    """One symptom's ranker input as JSON (kept in the report, read back by ``inputs_from_json``)."""
    graph = found.graph
    return {
        "symptom": dataclasses.asdict(symptom),
        "graph": {"depends_on": {k: list(v) for k, v in graph.depends_on.items()},
                  "labels": dict(graph.labels), "phases": {k: list(v) for k, v in graph.phases.items()},
                  "leaves": {k: list(v) for k, v in graph.leaves.items()}},
        "events": [{**dataclasses.asdict(e), "kind": e.kind.value} for e in found.events],
        "series": [{**dataclasses.asdict(s), "points": [list(p) for p in s.points]} for s in found.series],
    }  # fmt: skip


def inputs_from_json(data: dict[str, Any]) -> tuple[Graph, Symptom, list[Series], list[NodeEvent]]:
    kept = data["graph"]
    graph = Graph(kept["depends_on"], kept["labels"], kept["phases"], kept.get("leaves", {}))
    events = [NodeEvent(e["node"], EvidenceKind(e["kind"]), e["at"], e["detail"], e["scope"])
              for e in data["events"]]  # fmt: skip
    series = [Series(s["node"], s["metric"], tuple((p[0], p[1]) for p in s["points"]), s["unit"])
              for s in data["series"]]  # fmt: skip
    return graph, Symptom(**data["symptom"]), series, events


def rank_all(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every method's ranking (haven's first) of one recorded input."""
    graph, symptom, series, events = inputs_from_json(data)
    graph, events = prepare(graph, events)  # this code's own preparation (a recording's is kept as it was)
    settings = ExplainSettings().rank  # the explainer's own
    return {name: method(graph, symptom, series, events, settings) for name, method in METHODS.items()}


def plan(names: list[str], runs: int, controls: int, seed: int | None) -> list[tuple[int, str, int | None]]:
    """The injections in order, as (round, fault, its own seed): ``runs`` rounds, each every fault once
    (stopped early, every fault has run as often, give or take one), with ``controls`` no-fault periods
    spread over the rounds; with ``seed``, each round in its own shuffled order and each injection its
    own seed (its settle jitter), so the repeats of a fault differ in order, timing and what ran before."""
    rng = random.Random(seed)
    order: list[tuple[int, str, int | None]] = []
    for round_ in range(1, runs + 1):
        wanted = controls * round_ // runs - controls * (round_ - 1) // runs  # this round's share
        batch = [*names, *[NO_FAULT.name] * wanted]
        if seed is not None:
            rng.shuffle(batch)
        order += [(round_, name, None if seed is None else rng.randrange(2**31)) for name in batch]
    return order


class _Term:
    """Whether a SIGTERM came while a fault was in place, and how far its heal has gone."""

    def __init__(self) -> None:
        self.seen = False
        self.healing = False  # the heal has begun: a first SIGTERM now waits for it
        self.healed = False  # the heal is done: a first SIGTERM now cancels the lab's proof


@contextmanager
def _healing_on_sigterm(say: Callable[[str], None]) -> Iterator[_Term]:
    """While a fault is in place: the first SIGTERM cancels the running task (``seen``), except during
    the heal, which it waits for; a second one stops the process as it would have without this
    handler. Outside the main thread (no signal handlers) nothing."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    term = _Term()
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None:  # a handler not installed from Python: the default is what can be restored
        previous = signal.SIG_DFL

    def on_term() -> None:
        if term.seen:  # asked again: stop now, heal or not
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)
            signal.raise_signal(signal.SIGTERM)
            return
        term.seen = True
        say("SIGTERM: healing the fault in place before stopping (a second SIGTERM stops at once)")
        if task is not None and (not term.healing or term.healed):
            task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_term)
    except (RuntimeError, ValueError):  # not the main thread's loop
        yield term
        return
    try:
        yield term
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


class RecordingExplainer(Explainer):
    """The explainer, keeping each symptom's ranker input as it read it (before the ranking)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: dict[str, dict[str, Any]] = {}

    async def gather(self, record: ExplanationRecord) -> RankInputs:
        found = await super().gather(record)
        self.inputs[record.id] = inputs_json(record.symptom, found)
        return found


class FaultRun:
    """Injections on one lab, one at a time, each judged from the explanation haven stored for it."""

    def __init__(
        self, lab: FaultLab, store: Store, settings: RunSettings, progress: Callable[[str], None]
    ) -> None:
        self.lab = lab
        self.store = store
        self.settings = settings
        self.say = progress
        self.clock = RealClock()
        topology = openstack_topology(CATALOGUE.values())
        self.explainer = RecordingExplainer(store, topology, self.clock)
        self.needs = probe_needs(topology)  # the canary's operation probes' needs (haven.canary.unseen)
        self.canary = CanarySettings(
            flavor=lab.flavor, image=lab.image_id, poll_s=0.5, boot_timeout_s=settings.boot_timeout_s,
            delete_timeout_s=30.0, endpoint_timeout_s=settings.endpoint_timeout_s,
            slow_s=settings.boot_timeout_s,
        )  # fmt: skip
        self.symptoms: list[ExplanationRecord] = []
        self.proven = False  # the last fault's heal was proven whole by a passing canary round
        self.warmed = False  # the probes' slow baselines have their history (warm_up)

    async def _explain(self, record: ExplanationRecord) -> ExplanationRecord:
        self.symptoms.append(record)
        return await self.explainer.open_and_explain(record)

    def open_cloud(self) -> CanaryCloud:
        """A fresh connection to the lab for the canary (a hung API's sockets die with it)."""
        return open_canary("lab", clouds_yaml=self.lab.clouds_yaml, timeout_s=self.settings.request_timeout_s)

    async def round(self) -> Round:
        """One canary round on a fresh connection (a hung API's sockets die with it), bounded."""
        cloud = self.open_cloud()
        try:
            # the lab's image now: image-deleted's heal uploads a new one
            settings = dataclasses.replace(self.canary, image=self.lab.image_id)
            runner = CanaryRunner(cloud, self.store, self.clock, settings, self._explain, needs=self.needs,
                                  on_refine=self.explainer.refine)  # fmt: skip
            return await within(runner.round(), self.settings.round_timeout_s)
        finally:
            cloud.close()

    async def warm_up(self) -> None:
        """Once per run (its store is new): the canary's probes asked until each has the passing answers
        its slow baseline needs (haven.canary.slow), without symptoms; ``haven serve`` has them from its
        earlier rounds."""
        if self.warmed:
            return
        self.warmed = True
        cloud = self.open_cloud()
        try:
            settings = dataclasses.replace(self.canary, image=self.lab.image_id)
            runner = CanaryRunner(cloud, self.store, self.clock, settings)
            for _ in range(settings.slow.min_history):
                await runner.probe()
                await runner.probe_image_data()
        finally:
            cloud.close()

    async def prove_whole(self) -> list[str]:
        """Within whole_timeout_s: every lab process alive, no hold, all probes and boots passing."""
        deadline = time.monotonic() + self.settings.whole_timeout_s
        wrong: list[str] = []
        while time.monotonic() < deadline:
            wrong = await asyncio.to_thread(self.lab.whole)
            if not wrong:
                try:
                    found = await self.round()
                except Exception as exc:  # a round that fails is not whole: wait on
                    wrong = [f"canary round: {type(exc).__name__} {exc}"]
                else:
                    if found.runs and found.ok:
                        await self.warm_up()
                        return []
                    wrong = [f"probe {p.name} failed" for p in found.probes if not p.ok] + [
                        f"canary {r.outcome}: {r.error}" for r in found.runs if r.outcome is not Outcome.OK
                    ] or ["no canary boot ran"]
            await asyncio.sleep(5.0)
        return wrong

    async def inject(self, fault: Fault, round_: int = 1, seed: int | None = None) -> Result:
        """One injection (or, for NO_FAULT, one control period); ``seed`` jitters how long the fault lasts
        before the canary round (0 to jitter_s more), so the repeats of a fault differ in timing too."""
        started = time.monotonic()
        load_at_start = os.getloadavg()[0]
        jitter = random.Random(seed).uniform(0.0, self.settings.jitter_s) if seed is not None else 0.0
        result = Result(
            fault.name, fault.root, round=round_, seed=seed, settle_s=round(fault.settle_s + jitter, 2)
        )
        # The previous fault's heal was just proven by a whole canary round: its processes, holds and
        # BMCs are checked again (cheap), not a second round.
        proven, self.proven = self.proven, False
        if not proven:
            self.say("proving the lab whole (its processes, holds, BMCs and one canary round)")
        wrong = await asyncio.to_thread(self.lab.whole) if proven else await self.prove_whole()
        if wrong:
            result.status = "skipped"
            result.notes.append(f"lab not whole before it: {'; '.join(wrong[:3])}")
            result.wall_s = round(time.monotonic() - started, 1)
            return result
        # Only what the fault raised is judged: a round that failed while the lab was being proven whole
        # (nova-api timing out on a loaded host) raised symptoms of its own, before the injection.
        self.symptoms = []
        heal: Heal | None = None
        injecting: asyncio.Future[Heal] | None = None
        with _healing_on_sigterm(self.say) as term:
            try:
                injecting = asyncio.ensure_future(asyncio.to_thread(fault.inject, self.lab))
                heal = await asyncio.shield(injecting)  # a SIGTERM mid-injection still gets its heal
                self.say(f"{fault.name}: injected ({fault.what}); canary round in {result.settle_s:g} s")
                await asyncio.sleep(result.settle_s)
                try:
                    found = await self.round()
                except TimeoutError:
                    result.notes.append(f"the canary round took over {self.settings.round_timeout_s:g} s")
                    found = None
                self._judge(result, found)
                if fault is NO_FAULT:
                    await self._judge_control(result)
            except asyncio.CancelledError:
                if not term.seen:
                    raise
                _uncancel()  # the cancellation was the SIGTERM handler's, handled here: the heal may wait
                result.status = "error"
                result.notes.append("stopped by SIGTERM: healed, the lab not proven whole")
            except Exception as exc:  # the injection itself failed: reported, the run goes on
                result.status = "error"
                result.notes.append(f"{type(exc).__name__}: {exc}")
            finally:
                term.healing = True
                if heal is None and injecting is not None and not injecting.cancelled():
                    with contextlib.suppress(Exception):  # an injection that failed left nothing to heal
                        heal = await injecting
                await self._heal(fault, heal, result, term)
        if term.seen:
            failed = [n for n in result.notes if n.startswith("heal failed")]
            if failed:  # the fault may still be in place: say what went wrong, never "healed"
                self.say(f"{fault.name}: stopping after SIGTERM, NOT healed: {'; '.join(result.notes)}")
            else:
                self.say(f"{fault.name}: healed after SIGTERM; stopping")
            raise SystemExit(143)
        result.wall_s = round(time.monotonic() - started, 1)
        result.load = [round(load_at_start, 2), round(os.getloadavg()[0], 2)]
        self.say(f"{fault.name}: canary {result.canary}; judged {result.symptom or '-'}; ranked "
                 f"{result.ranked[:3]}; {result.summary}; {'; '.join(result.notes)}")  # fmt: skip
        return result

    async def _heal(self, fault: Fault, heal: Heal | None, result: Result, term: _Term) -> None:
        if heal is not None:
            self.say(f"{fault.name}: healing, then proving the lab whole again")
            try:
                await asyncio.to_thread(heal)
            except Exception as exc:
                result.notes.append(f"heal failed: {type(exc).__name__}: {exc}")
        term.healed = True
        if term.seen:
            return
        try:
            wrong = await self.prove_whole()
        except asyncio.CancelledError:
            if not term.seen:
                raise
            _uncancel()
            result.notes.append("stopped by SIGTERM after the heal: the lab not proven whole")
            return
        self.proven = not wrong
        if wrong:
            result.healed = False
            within = self.settings.whole_timeout_s
            result.notes.append(f"not healed within {within:g} s: {'; '.join(wrong[:3])}")

    async def _judge_control(self, result: Result) -> None:
        """A control period: each symptom raised is an alarm, with haven's top cause of it (a false alarm
        names one); and a boot failure supposed now (no phase: no narrowing) ranked by every method on the
        evidence held now, to see what each would blame when nothing is wrong."""
        for found in sorted(self.symptoms, key=lambda s: s.symptom.at):
            record = self.store.get_explanation(found.id)
            ranked = [e.node for e in record.diagnosis.explanations] if record.diagnosis else []
            result.alarms.append(record.source)
            result.blamed.append(ranked[0] if ranked else "")
        now = self.clock.now()
        symptom = Symptom(SERVER_BOOT, now, "boot failed (supposed)", None)
        supposed = ExplanationRecord(f"supposed:{now}", "supposed", SERVER_BOOT, symptom, now)
        result.supposed_inputs = inputs_json(symptom, await self.explainer.gather(supposed))
        result.supposed = rank_all(result.supposed_inputs)

    def _judge(self, result: Result, found: Round | None) -> None:
        if found is not None:
            failed_probes = [p.name for p in found.probes if not p.ok]
            outcomes = [str(r.outcome) for r in found.runs] or ["no boot"]
            result.canary = ",".join(outcomes) + (
                f" (failed: {','.join(failed_probes)})" if failed_probes else ""
            )
        boots = [s for s in self.symptoms if s.source == "canary"]
        probes = sorted(
            (s for s in self.symptoms if s.source.startswith("probe:")), key=lambda s: s.symptom.at
        )
        if not boots and not probes:
            return
        chosen = (boots or probes)[0]
        record = self.store.get_explanation(chosen.id)
        result.symptom = record.source
        if record.diagnosis is not None and record.explained_at is not None:
            result.ranked = [e.node for e in record.diagnosis.explanations]
            result.explanations = [explanation_json(e) for e in record.diagnosis.explanations]
            result.explained_after_s = round(record.explained_at - record.symptom.at, 2)
            result.summary = record.diagnosis.summary
        result.inputs = self.explainer.inputs.get(record.id)
        if result.inputs is not None:
            result.methods = rank_all(result.inputs)
