"""Synthetic checks run: cheap API probes, then one canary boot per zone, each step committed.

Built by haven.service.explaining (``haven serve`` runs ``run`` while it leads) and by ``haven canary
run`` (one ``round``). A canary follows haven's step shape:

1. before a round, servers carrying haven's canary tag are deleted (what an engine stopped mid-run left)
   and runs still ``booting``/``deleting`` in the store are marked ``abandoned``;
2. the run is committed ``booting`` with its server's name before the boot is asked for, its server id
   after Nova accepted it, ``deleting`` before the delete, and its verdict last;
3. the server is deleted whatever happened (an ERROR server too) and the run waits until it is gone; a
   run cancelled mid-way (leadership lost, serve stopped) still asks for the delete before it ends.

A failed or slow canary, and a failed probe or one that passed far slower than its own baseline
(haven.canary.slow), is handed to ``on_symptom`` (the explainer) as a symptom record as soon as the check
that saw it ends, while the round goes on: a hung service's other checks each wait for their timeout,
and an explanation then waited for all of them (60 s for a hung Keystone on the lab). The round's look
(every endpoint, Nova's service list, what no check covers) is evidence too, kept after those symptoms
were explained: each symptom handed in the round is given to ``on_refine`` after it, which ranks it again
(haven.explain.explainer.Explainer.refine). Time comes from the injected clock; waiting is
``clock.sleep_until``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from haven.canary.model import (
    CANARY_PREFIX,
    CANARY_TAG,
    NAMED_NODES,
    CanaryRun,
    CanarySettings,
    Found,
    Outcome,
    Phase,
    ProbeResult,
    RunState,
    awaited,
    failure_phase,
    named_causes,
    probe_json,
    run_from_json,
    run_json,
    seen,
    slowest,
    symptom_words,
)
from haven.canary.ports import CanaryCloud
from haven.canary.slow import CONFIRM_GAP_S, baseline, confirmed
from haven.canary.unseen import BALANCER, left_to_blame, no_answer, passed_events, unseen_events
from haven.diagnosis import EvidenceKind, NodeEvent, Symptom
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import Clock
from haven.domain.errors import CloudError, NotFound, TemporaryError
from haven.domain.waiting import within
from haven.store import Store
from haven.topology import LABELS, SERVER_BOOT, node_of_binary

_log = logging.getLogger(__name__)

BOOT = "boot"
PROBE = "probe"
# Evidence scopes (haven.diagnosis NodeEvent.scope): a HEALTHY of one ends only that scope's evidence.
ENDPOINT = "endpoint"  # a catalog endpoint's version document
NOVA_SERVICES = "nova-services"  # Nova's service list: a binary down, or all of it reporting
IMAGE_DATA = "image-data"  # the probe reading the canary image's data from Glance
VIA_COMPUTE = "via:nova-api"  # Glance as Nova's API reaches it (the canary image through Nova's image proxy)
KEEP_S = 7 * 86_400.0  # finished runs and probes are pruned after a week
_CANCEL_DELETE_S = 10.0
# Probes kept per round, at most (the checks and every catalog endpoint): how far back a history reads.
_PROBES_PER_ROUND = 16
# The service catalog's types and the topology's nodes (haven.topology) serving them.
SERVICE_NODES = {
    "identity": "keystone",
    "compute": "nova-api",
    "image": "glance-api",
    "placement": "placement-api",
    "network": "neutron-server",
}

# What the OpenStack driver's placement_room says when Placement itself answered 5xx (not Nova, not auth),
# or, asked straight with a token already issued, gave no answer in time (a starved or stuck Placement
# that still serves its version document: bench/explain.py, placement-cpu-starved, 2026-12-07).
PLACEMENT_FAILED = "Placement answered"
PLACEMENT_SILENT = "Placement did not answer"
# The scope of Placement not answering allocation candidates in time (its silence): not "room", one of
# the canary's own-state scopes (haven.explain.explainer.STATE_SCOPES), since a Placement that cannot
# answer may be a dependency's victim: keystone-slow on the lab (2026-12-07 night, catalogue round 10),
# Placement's candidates timed out while Keystone, stalled, validated its token, and as own state it
# outranked Keystone's slow token 41 s older. Any answer is HEALTHY here.
ROOM_ANSWER = "room:answer"
SymptomSink = Callable[[ExplanationRecord], Awaitable[object]]
# What an operation probe needs (haven.canary.unseen.probe_needs): (its hard needs, the caches it uses).
Needs = Mapping[str, tuple[frozenset[str], frozenset[str]]]
# The nodes a round can see working by a check of its own: Keystone by its token, each catalog
# service by its endpoint, the load balancer (where there is one) by any endpoint answering through it.
CHECKED = frozenset({"keystone", *SERVICE_NODES.values(), BALANCER})


@dataclass(frozen=True, slots=True)
class Round:
    cleaned: tuple[Found, ...]
    probes: tuple[ProbeResult, ...]
    runs: tuple[CanaryRun, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.probes) and all(r.outcome is Outcome.OK for r in self.runs)


class CanaryRunner:
    def __init__(
        self,
        cloud: CanaryCloud,
        store: Store,
        clock: Clock,
        settings: CanarySettings,
        on_symptom: SymptomSink | None = None,
        progress: Callable[[str], None] | None = None,
        needs: Needs | None = None,
        on_refine: SymptomSink | None = None,
    ) -> None:
        self._cloud = cloud
        self._store = store
        self._clock = clock
        self._settings = settings
        self._on_symptom = on_symptom
        self._on_refine = on_refine
        self._progress = progress or (lambda _: None)
        # The nodes a real call failed on in this round: their endpoint answering its version document
        # does not make them seen working (a Keystone whose database hangs still serves that document).
        self._failing: set[str] = set()
        self._image_state: str | None = None  # the canary image's status the last look saw (None: not seen)
        self._listed_s: float | None = None  # this round's server list: its seconds (None: failed, not run)
        # The operation probes' needs (none given: no elimination, haven.canary.unseen); in this round,
        # what was seen working (node -> how, in words), the operation probes that failed, and the
        # symptoms handed on in this round not yet ranked again with the round's look (``_refine``).
        self._needs: Needs = needs or {}
        self._seen: dict[str, str] = {}
        self._op_failed: list[tuple[ProbeResult, str]] = []  # (the probe, the node it asked)
        self._handed: list[ExplanationRecord] = []

    async def run(self, stop: asyncio.Event) -> None:
        """A round now, then every ``interval_s``, until ``stop``; an unexpected error loses that round."""
        while not stop.is_set():
            try:
                await self.round()
            except Exception:
                _log.exception("a canary round failed; the next one runs as planned")
            await _until(stop, self._clock, self._clock.now() + self._settings.interval_s)

    async def round(self) -> Round:
        """Clean orphans, probe the APIs, then one canary boot per zone (in turn)."""
        self._failing = set()
        self._image_state = None
        self._listed_s = None
        self._seen, self._op_failed, self._handed = {}, [], []
        cleaned = await self.clean()
        probes = await self.probe() if self._settings.probes else []
        if self._settings.probes:
            probes += await self.observe()
            await self._refine()  # the probes' symptoms, explained at once, ranked with the look's evidence
            probes += await self.probe_image_data()
        zones = self._settings.zones or await self._zones(probes)
        runs = []
        for zone in zones:
            runs.append(await self.boot_one(zone))
        await asyncio.to_thread(self._store.prune_canaries, self._clock.now() - KEEP_S)
        return Round(tuple(cleaned), tuple(probes), tuple(runs))

    async def _zones(self, probes: list[ProbeResult]) -> tuple[str, ...]:
        """The zones with compute hosts, from Nova's service list; when Nova cannot list them, none.

        A list that fails (nova-api or its database hung, a timeout) is a symptom in the ``api`` phase,
        like a failed server list, never the end of the round: the probes' evidence is kept all the same.
        """
        started = self._clock.now()
        try:
            zones = tuple(sorted(await self._cloud.zones()))
        except CloudError as exc:
            error = str(exc)
        else:  # listed: nova-api's earlier zone-list failure ended
            listed = ProbeResult("zones", started, True, self._clock.now() - started)
            await self._keep_seen("nova-api", listed)
            await self._operation_seen(listed, "nova-api")
            return zones
        result = ProbeResult("zones", started, False, self._clock.now() - started, error)
        self._progress(f"probe zones: failed in {result.seconds:.2f} s ({error})")
        key = await self._keep_probe(result)
        probes.append(result)
        await self._keep_seen("nova-api", result)
        await self._operation_seen(result, "nova-api")
        symptom = Symptom("nova-api", started, f"listing the compute zones failed ({error})", "api")
        await self._symptom(ExplanationRecord(key, "probe:zones", "zones", symptom, started))
        if self._settings.probes:
            await self.observe()  # look again: what failed meanwhile is evidence
            await self._refine()
        return ()

    async def clean(self) -> list[Found]:
        """Delete every server with haven's canary tag, then mark unfinished runs abandoned.

        A cloud that cannot be asked now leaves both for the next round (the deleted ones are returned).
        """
        try:
            found = await self._cloud.find(CANARY_PREFIX, CANARY_TAG)
        except CloudError as exc:
            self._progress(f"cannot look for canary servers left behind now: {exc}")
            return []
        deleted: list[Found] = []
        for server in (f for f in found if f.tag == self._settings.tag):
            self._progress(f"deleting canary server {server.name} left by an earlier run")
            try:
                await self._cloud.delete(server.id)
            except CloudError as exc:
                self._progress(f"cannot delete {server.name} now: {exc}")
                return deleted
            deleted.append(server)
        states = [RunState.BOOTING.value, RunState.DELETING.value]
        left = await asyncio.to_thread(self._store.list_canaries, BOOT, states=states, limit=1000)
        for doc in left:
            run = run_from_json(doc)
            await self._save(replace(run, state=RunState.ABANDONED, finished_at=self._clock.now()))
        return deleted

    async def probe(self) -> list[ProbeResult]:
        """Issue a token, then list servers: each timed; a failure is a symptom."""
        checks: list[tuple[str, Callable[[], Awaitable[object]], str, str | None]] = [
            ("token", self._cloud.issue_token, "keystone", None),
            ("server-list", self._cloud.list_servers, "nova-api", "api"),
        ]
        return await self._probes(checks)

    async def probe_image_data(self) -> list[ProbeResult]:
        """Read the start of the canary image's data from Glance, as a hypervisor does to boot it; a
        failure is a symptom in the image download phase. The fake or a caching driver never downloads
        it, so only this sees a store gone or a download route failing. Asked when Keystone issued this
        round's token (a download needs one) and no look saw the image other than active (a deactivated
        or deleted image is its own evidence); also when Glance did not answer its endpoint or the
        image's status in time: a lossy or slow Glance fails those checks first, and the download is
        what its users feel (before, a lossy Glance was never asked for data: no symptom)."""
        token = "keystone" in self._seen and "keystone" not in self._failing
        if not self._settings.image or not token or self._image_state not in (None, "active"):
            return []
        return await self._probes([(IMAGE_DATA, self._read_image_data, "glance-api", "image download")])

    async def _read_image_data(self) -> None:
        image = self._settings.image
        if await self._cloud.image_data(image) == 0:
            # Glance answers 204 No Content when the store has no data for an active image (its file gone)
            raise TemporaryError(
                f"Glance served no data for the active image {image}: its store has none", 1.0
            )

    async def _probes(
        self, checks: Sequence[tuple[str, Callable[[], Awaitable[object]], str, str | None]]
    ) -> list[ProbeResult]:
        """Each check timed and kept; a failure, or a pass far slower than the check's own baseline
        (``_judge_speed``), is a symptom handed on as soon as the check ends."""
        results = []
        for name, call, node, phase in checks:
            started = self._clock.now()
            error = await _ask(call)
            result = ProbeResult(name, started, not error, self._clock.now() - started, error)
            if result.ok:
                result = await self._judge_speed(result, call)
            said = "failed" if not result.ok else "slow" if result.slow else "ok"
            self._progress(f"probe {name}: {said} in {result.seconds:.2f} s")
            key = await self._keep_probe(result)
            results.append(result)
            if name == "server-list":
                self._listed_s = result.seconds if result.ok else None
            await self._keep_seen(node, result)
            await self._operation_seen(result, node)
            if result.ok and name == "token":
                self._seen["keystone"] = f"issued a token in {result.seconds:.2f} s"
            if not result.ok or result.slow:
                what = f"failed ({result.error})" if not result.ok else f"slow: {result.slow}"
                symptom = Symptom(node, started, f"API probe {name} {what}", phase)
                await self._symptom(ExplanationRecord(key, f"probe:{name}", name, symptom, started))
        return results

    async def _judge_speed(self, result: ProbeResult, call: Callable[[], Awaitable[object]]) -> ProbeResult:
        """``result`` (passed) marked slow when the median of it and ``confirm`` more asks, made whatever it
        took, is over its check's baseline limit (haven.canary.slow: one answer, slow or fast, decides
        nothing)."""
        settings = self._settings.slow
        history = await asyncio.to_thread(self._passed_seconds, result.name, settings.history)
        usual = baseline(history, settings)
        if usual is None:
            return result
        answers = [result.seconds]
        answered: list[str] = []  # the confirming asks' errors that were answers (a 500), not silence
        for _ in range(settings.confirm):
            await self._clock.sleep_until(self._clock.now() + CONFIRM_GAP_S)
            started = self._clock.now()
            error = await _ask(call)
            answers.append(math.inf if error else self._clock.now() - started)
            if error and not no_answer(error):
                answered.append(error)
        limit = usual.limit(settings)
        if not confirmed(answers, limit):
            return result
        if answered:  # it failed, with words (Nova's 500 naming the database): a failure, not slowness
            return replace(result, ok=False, error=answered[-1])
        took = ", ".join("no answer" if math.isinf(a) else f"{a:.2f} s" for a in answers)
        return replace(result, slow=f"took {took} against {usual.words()}; slow above {limit:.2f} s")

    def _passed_seconds(self, name: str, count: int) -> list[float]:
        """The seconds of the last ``count`` passing answers of probe ``name``, newest first, the slow ones
        too: a lasting slowdown (more load, a slower backend) becomes the check's usual once it fills half
        its history, instead of a symptom every round until the fast past is pruned (KEEP_S)."""
        docs = self._store.list_canaries(PROBE, limit=max(count, 1) * _PROBES_PER_ROUND)
        return [float(d["seconds"]) for d in docs if d.get("name") == name and d.get("ok")][:count]

    async def _operation_seen(self, result: ProbeResult, node: str) -> None:
        """An operation probe (haven.canary.unseen): passing, its needs worked for it (seen, and HEALTHY
        in its ``unseen:`` scope); failing with no answer in time (``no_answer``) and an error that names no
        dependency, it is weighed once the round's look has probed the endpoints (``_keep_unseen``)."""
        needs = self._needs.get(result.name)
        if needs is None:
            return
        if result.ok:
            for node in needs[0]:
                self._seen.setdefault(node, f"served {result.name} in {result.seconds:.2f} s")
            events = passed_events(result.name, result.at, needs)
            await asyncio.to_thread(self._store.keep_evidence, events, self._clock.now())
        elif no_answer(result.error) and not named_causes(result.error):
            self._op_failed.append((result, node))

    async def _keep_unseen(self) -> None:
        """Each operation probe that failed in this round, weighed against what the round saw working:
        what it needs that no check covers is kept as an ERROR (haven.canary.unseen)."""
        failed, self._op_failed = self._op_failed, []
        kept: dict[str, NodeEvent] = {}
        for result, asked in failed:
            # Seen working: not a node a real call failed on in this round (Keystone's endpoint answers
            # while its token fails), except the one the failed probe asked, which is weighed by its
            # endpoint (Nova's API answers its version document, not the list).
            seen = {n: how for n, how in self._seen.items() if n not in self._failing or n == asked}
            hard, soft = self._needs[result.name]
            blamed = left_to_blame((hard, soft), seen, CHECKED)
            words = {n: how for n, how in seen.items() if n in hard | soft and n != BALANCER}
            kept.update(unseen_events(result.name, result.at, result.error, blamed, words, LABELS))
        if kept:
            await asyncio.to_thread(self._store.keep_evidence, kept, self._clock.now())

    async def observe(self) -> list[ProbeResult]:
        """Each catalog endpoint probed, and Nova's service list read: what fails is kept as evidence.

        Not symptoms (a canary or a probe above is): evidence the explainer ranks. An endpoint that
        fails or does not answer within ``endpoint_timeout_s`` is an ERROR of its service, one that
        answers is that service HEALTHY (its earlier evidence ended) unless a real call to it failed in
        this round; Nova's service list as ``_service_events`` says.
        """
        now = self._clock.now()
        kept: dict[str, NodeEvent] = {}
        results = []
        try:
            endpoints = await self._cloud.endpoints()
        except CloudError as exc:
            endpoints = {}
            self._progress(f"no service catalog: {exc}")
        for kind, url in sorted(endpoints.items()):
            node = SERVICE_NODES.get(kind)
            if node is None:
                continue
            started = self._clock.now()
            error = ""
            try:
                await self._cloud.probe_endpoint(url, self._settings.endpoint_timeout_s)
            except CloudError as exc:
                error = str(exc)
            result = ProbeResult(f"endpoint:{kind}", started, not error, self._clock.now() - started, error)
            results.append(result)
            await self._keep_probe(result)
            if not error:
                self._seen.setdefault(node, f"answered its endpoint in {result.seconds:.2f} s")
                self._seen.setdefault(BALANCER, "forwarded an endpoint's answer")
            if error:
                kept[f"probe:{kind}:{started:.3f}"] = NodeEvent(
                    node, EvidenceKind.ERROR, started, f"its endpoint did not answer: {error}", ENDPOINT
                )
            elif node not in self._failing:  # its endpoint answers again: ends its own "did not answer"
                kept[f"probe:{kind}:{started:.3f}"] = NodeEvent(
                    node,
                    EvidenceKind.HEALTHY,
                    started,
                    f"its endpoint answered in {result.seconds:.2f} s",
                    ENDPOINT,
                )
        if self._op_failed:
            # What no check covers is known once the endpoints answered: weighed, and the symptoms ranked
            # with it, before the calls below (each may wait for its timeout: a hung database holds both
            # Placement's room and Nova's service list, 20 s on the lab).
            if kept:
                await asyncio.to_thread(self._store.keep_evidence, kept, now)
            kept = {}
            await self._keep_unseen()
            await self._refine(clear=False)
        failed = {r.name for r in results if not r.ok}
        if self._settings.image and "endpoint:image" not in failed:
            kept.update(await self._image_events())
        if self._settings.flavor and "endpoint:placement" not in failed:
            kept.update(await self._room_events())
        try:
            services = await self._cloud.services()
        except CloudError:
            services = []
        kept.update(_service_events(services, now))
        if kept:
            await asyncio.to_thread(self._store.keep_evidence, kept, now)
        return results

    async def _image_events(self) -> dict[str, NodeEvent]:
        """The canary image not active in Glance (deactivated, deleted) is an ERROR of Glance: every boot
        of it is refused; active (again) is HEALTHY in that scope. Asked only when Glance's endpoint
        answered (a hung Glance is its probe's)."""
        started = self._clock.now()
        try:
            status = await self._cloud.image_status(self._settings.image)
        except CloudError:
            return {}
        self._image_state = status
        if status == "active":
            detail = f"the canary image {self._settings.image} is active"
            direct_s = self._clock.now() - started
            return {f"image:{self._settings.image}:{started:.3f}": NodeEvent(
                "glance-api", EvidenceKind.HEALTHY, started, detail, "image"),
                **await self._via_compute_events(direct_s)}  # fmt: skip
        detail = f"the canary image {self._settings.image} is {status} in the image service"
        return {f"image:{self._settings.image}:{started:.3f}": NodeEvent(
            "glance-api", EvidenceKind.ERROR, started, detail, "image")}  # fmt: skip

    async def _via_compute_events(self, direct_s: float) -> dict[str, NodeEvent]:
        """The canary image asked of Nova's API (its image proxy: Nova's API asks Glance, as for a boot).
        Failing, or taking ``endpoint_timeout_s`` longer than Nova's server list and Glance's direct answer
        took together in this round, is an ERROR of Glance as Nova's API reaches it (a slow or broken path
        between the two, which neither alone shows); else HEALTHY in that scope. Asked only when both
        ends answered alone (the path tells nothing of an end that fails by itself). Relative to the
        ends' own times, so a loaded host that slows every answer is not a slow path."""
        limit = self._settings.endpoint_timeout_s
        listed = self._listed_s
        if listed is None:
            return {}
        started = self._clock.now()
        error = ""
        try:
            await self._cloud.image_via_compute(self._settings.image)
        except CloudError as exc:
            error = str(exc)
        took = self._clock.now() - started
        key = f"{VIA_COMPUTE}:{started:.3f}"
        if error or took - (listed + direct_s) >= limit:
            what = error or f"it took {took:.2f} s"
            detail = (f"Nova's API could not get the canary image from it in time ({what}), while Nova's "
                      f"API listed servers in {listed:.2f} s and it answered haven directly in "
                      f"{direct_s:.2f} s")  # fmt: skip
            return {key: NodeEvent("glance-api", EvidenceKind.ERROR, started, detail, VIA_COMPUTE)}
        detail = f"Nova's API got the canary image from it in {took:.2f} s"
        return {key: NodeEvent("glance-api", EvidenceKind.HEALTHY, started, detail, VIA_COMPUTE)}

    async def _room_events(self) -> dict[str, NodeEvent]:
        """Placement without room for the canary's flavor (no allocation candidate) is an ERROR of
        Placement (every boot gets NoValidHost); room again is HEALTHY in that scope. Computes down or
        disabled still have inventory there: this sees capacity only."""
        started = self._clock.now()
        key = f"placement-room:{started:.3f}"
        try:
            room = await self._cloud.placement_room(self._settings.flavor)
        except CloudError as exc:  # Placement's 5xx or silence to allocation candidates is its own error
            if PLACEMENT_FAILED not in str(exc) and PLACEMENT_SILENT not in str(exc):
                return {}
            # its silence is no word on its state (room): it may be a dependency's victim (ROOM_ANSWER); its
            # 500 is its own (a Keystone it cannot reach makes its auth answer 503 or 401, never 500: review
            # R3-D1, placement-candidates-500 blamed on a slow Keystone token in the same window)
            silent = PLACEMENT_SILENT in str(exc) and PLACEMENT_FAILED not in str(exc)
            detail = f"its allocation candidates failed: {exc}"
            scope = ROOM_ANSWER if silent else "room"
            return {key: NodeEvent("placement-api", EvidenceKind.ERROR, started, detail, scope)}
        answered = NodeEvent("placement-api", EvidenceKind.HEALTHY, started, "it answered allocation "
                             "candidates", ROOM_ANSWER)  # fmt: skip
        both = {f"placement-answer:{started:.3f}": answered}
        if room > 0:
            detail = "it has room for the canary's flavor"
            return {**both, key: NodeEvent("placement-api", EvidenceKind.HEALTHY, started, detail, "room")}
        detail = f"it has no room for the canary's flavor {self._settings.flavor} (no allocation candidate)"
        return {**both, key: NodeEvent("placement-api", EvidenceKind.ERROR, started, detail, "room")}

    async def _keep_seen(self, node: str, result: ProbeResult) -> None:
        """An API probe is evidence on the node it asked: an ERROR when it failed, HEALTHY when it passed.

        Kept before its symptom is explained, so a failed token issue is explained by Keystone's own
        failure (and a server list that failed with it by Keystone first: the deepest cause).
        """
        if not result.ok:  # a slow pass still answered: seen working (what it needs stays blamable)
            self._failing.add(node)
        if result.slow:
            event = NodeEvent(node, EvidenceKind.ERROR, result.at, f"its {result.name} was slow: "
                              f"{result.slow}", f"probe:{result.name}")  # fmt: skip
        elif result.ok:
            await asyncio.to_thread(
                self._store.keep_evidence, _named_ended(result.at, result.name), self._clock.now()
            )
            event = NodeEvent(node, EvidenceKind.HEALTHY, result.at, f"it answered {result.name} in "
                              f"{result.seconds:.2f} s", f"probe:{result.name}")  # fmt: skip
        else:
            event = NodeEvent(
                node,
                EvidenceKind.ERROR,
                result.at,
                f"its {result.name} failed: {result.error}",
                f"probe:{result.name}",
            )
        key = f"probe:{result.name}:{result.at:.3f}"
        kept = {key: event, **_named(result.error, result.at, result.name, f"{result.name} failed")}
        await asyncio.to_thread(self._store.keep_evidence, kept, self._clock.now())

    async def _keep_probe(self, result: ProbeResult) -> str:
        key = f"probe:{result.name}:{result.at:.6f}"
        doc = {**probe_json(result), "id": key, "zone": "", "state": "done"}
        await asyncio.to_thread(self._store.save_canary, PROBE, doc)
        return key

    async def boot_one(self, zone: str) -> CanaryRun:
        """One canary boot in ``zone``: committed, booted, watched to ACTIVE, deleted, judged."""
        run_id = f"{zone}-{uuid.uuid4().hex[:10]}"
        run = CanaryRun(run_id, zone, f"{CANARY_PREFIX}{run_id}", self._clock.now())
        await self._save(run)  # the intent: a server of this name may exist from now on
        self._progress(f"canary {run.server_name}: booting in zone {zone}")
        handed = False
        try:
            run = await self._boot_and_watch(run)
            if run.outcome is Outcome.FAILED:
                # Its symptom now, not after the delete (an ERROR server Nova cannot delete is waited
                # for up to delete_timeout_s: neutron-hung's was explained 31.6 s after it failed).
                try:
                    await self._boot_symptom(run)
                    handed = True
                except Exception:  # the store's trouble: the delete still goes first, handed after it
                    _log.warning("canary %s: its symptom not handed yet", run.server_name, exc_info=True)
            run = await self._delete(run)
        except asyncio.CancelledError:
            # Stopped mid-run: ask for the delete before going (the next round cleans what this misses).
            with contextlib.suppress(Exception):
                await asyncio.shield(within(self._forget(run.server_name), _CANCEL_DELETE_S))
            raise
        run = await self._judge(run)
        self._progress(f"canary {run.server_name}: {run.outcome} {dict(run.phases)}")
        if run.outcome is Outcome.OK:  # a boot went through: what an earlier boot's error named works again
            ended = _named_ended(self._clock.now(), BOOT)
            await asyncio.to_thread(self._store.keep_evidence, ended, self._clock.now())
        else:
            if not handed:  # slow, or failed only in its delete
                await self._boot_symptom(run)
            if self._settings.probes:
                await self.observe()  # look again: what failed meanwhile is evidence (dated when it began)
                await self._refine()
        return run

    async def _boot_symptom(self, run: CanaryRun) -> None:
        """What the failed or slow ``run``'s error names kept as evidence, then its symptom handed on."""
        at = run.failed_at or self._clock.now()
        named = _named(run.error or "", at, BOOT, f"canary {run.id} failed")
        if named:
            await asyncio.to_thread(self._store.keep_evidence, named, self._clock.now())
        await self._symptom(self._record(run))

    async def _boot_and_watch(self, run: CanaryRun) -> CanaryRun:
        s = self._settings
        metadata = {CANARY_TAG: s.tag, "haven-canary-run": run.id}
        try:
            server_id = await self._cloud.boot(
                run.server_name, run.zone, s.flavor, s.image, s.network, metadata
            )
        except CloudError as exc:
            return self._failed(run, str(exc))
        run = replace(run, server_id=server_id, phases={Phase.ACCEPTED.value: self._elapsed(run)})
        await self._save(run)
        deadline = run.started_at + s.boot_timeout_s
        last_error = ""
        task_state: str | None = None
        while True:
            try:
                view = await self._cloud.look(server_id)
            except NotFound:
                return self._failed(run, "the server vanished before it was ACTIVE")
            except CloudError as exc:
                last_error = str(exc)
            else:
                run = replace(
                    run, phases=seen(run.phases, view, self._elapsed(run)), host=view.host or run.host
                )
                task_state = view.task_state
                if view.status == "ERROR":
                    return self._failed(run, view.fault or "Nova put the server in ERROR without a fault")
                if view.status == "ACTIVE":
                    return run
            if self._clock.now() >= deadline:
                stuck = f"task_state {task_state}" if task_state else (last_error or "no answer")
                return self._failed(run, f"not ACTIVE after {s.boot_timeout_s:g} s ({stuck})")
            await self._clock.sleep_until(min(deadline, self._clock.now() + s.poll_s))

    async def _delete(self, run: CanaryRun) -> CanaryRun:
        server_id = run.server_id
        if server_id is None:
            # The boot was not accepted, but a server may exist all the same (an answer lost on the way).
            with contextlib.suppress(CloudError):
                await self._forget(run.server_name)
            return run
        run = replace(run, state=RunState.DELETING)
        await self._save(run)
        asked = self._clock.now()
        deadline = asked + self._settings.delete_timeout_s
        try:
            await self._cloud.delete(server_id)
        except CloudError as exc:
            return self._delete_failed(run, f"delete refused: {exc}")
        while True:
            try:
                await self._cloud.look(server_id)
            except NotFound:
                return replace(run, phases=seen(run.phases, None, self._elapsed(run)))
            except CloudError:
                pass
            if self._clock.now() >= deadline:
                return self._delete_failed(run, f"not deleted after {self._settings.delete_timeout_s:g} s")
            await self._clock.sleep_until(min(deadline, self._clock.now() + self._settings.poll_s))

    async def _forget(self, name: str) -> None:
        for found in await self._cloud.find(name, CANARY_TAG):
            if found.name == name:
                await self._cloud.delete(found.id)

    def _failed(self, run: CanaryRun, error: str) -> CanaryRun:
        """``run`` failed now, waiting for its first phase not reached."""
        failed_in = awaited(run.phases).value
        return replace(
            run, outcome=Outcome.FAILED, failed_in=failed_in, error=error, failed_at=self._clock.now()
        )

    def _delete_failed(self, run: CanaryRun, error: str) -> CanaryRun:
        if run.outcome is Outcome.FAILED:
            return replace(run, error=f"{run.error}; {error}")
        return replace(run, outcome=Outcome.FAILED, failed_in=Phase.DELETED.value, error=error,
                       failed_at=self._clock.now())  # fmt: skip

    async def _judge(self, run: CanaryRun) -> CanaryRun:
        now = self._clock.now()
        if run.outcome is None:
            active = run.phases.get(Phase.ACTIVE.value, 0.0)
            if active > self._settings.slow_s:
                history = await self._history(run.zone)
                run = replace(run, outcome=Outcome.SLOW, failed_in=slowest(run.phases, history))
            else:
                run = replace(run, outcome=Outcome.OK)
        run = replace(run, state=RunState.DONE, finished_at=now)
        await self._save(run)
        return run

    async def _history(self, zone: str) -> list[dict[str, float]]:
        docs = await asyncio.to_thread(
            self._store.list_canaries, BOOT, states=[RunState.DONE.value], limit=50
        )
        runs = [run_from_json(d) for d in docs]
        return [dict(r.phases) for r in runs if r.zone == zone and r.outcome is Outcome.OK]

    def _record(self, run: CanaryRun) -> ExplanationRecord:
        at = run.failed_at or run.started_at + run.phases.get(Phase.ACTIVE.value, 0.0)
        symptom = Symptom(SERVER_BOOT, at, symptom_words(run, self._settings), failure_phase(run))
        return ExplanationRecord(f"canary:{run.id}", "canary", run.zone, symptom, self._clock.now())

    async def _symptom(self, record: ExplanationRecord) -> None:
        if self._on_symptom is None:
            return
        self._handed.append(record)
        try:
            await self._on_symptom(record)
        except Exception:  # the explainer's error loses that explanation, never the canary
            _log.exception("could not explain %s", record.id)

    async def _refine(self, clear: bool = True) -> None:
        """Each symptom handed on since the last look, ranked again now that the look's evidence is kept
        (what no check covers is dated at the failed call's start: the database behind a list that
        timed out); with ``clear``, the look is over and they are not ranked again."""
        handed = self._handed
        if clear:
            self._handed = []
        if self._on_refine is None:
            return
        for record in handed:
            try:
                await self._on_refine(record)
            except Exception:  # as above
                _log.exception("could not explain %s again", record.id)

    def _elapsed(self, run: CanaryRun) -> float:
        return round(self._clock.now() - run.started_at, 3)

    async def _save(self, run: CanaryRun) -> None:
        await asyncio.to_thread(self._store.save_canary, BOOT, run_json(run))


async def _ask(call: Callable[[], Awaitable[object]]) -> str:
    """``call`` done: "" when it passed, else the cloud's error in words."""
    try:
        await call()
    except CloudError as exc:
        return str(exc)
    return ""


def _named(error: str, at: float, check: str, what: str) -> dict[str, NodeEvent]:
    """An ERROR of each dependency ``error`` names (Nova's 500 with ``DBConnectionError``: the database),
    in the scope of the ``check`` that saw it."""
    return {
        f"named:{check}:{node}:{at:.3f}": NodeEvent(
            node, EvidenceKind.ERROR, at, f"{what} on it: {error}", f"named:{check}"
        )
        for node in named_causes(error)
    }


def _named_ended(at: float, check: str) -> dict[str, NodeEvent]:
    """``check`` passed: what its earlier errors named works again for it (HEALTHY in that scope only)."""
    return {
        f"named:{check}:{node}:{at:.3f}": NodeEvent(
            node, EvidenceKind.HEALTHY, at, f"{check} passed through it", f"named:{check}"
        )
        for node in NAMED_NODES
    }


def _service_events(
    services: Sequence[tuple[str, str, str, float | None, str]], now: float
) -> dict[str, NodeEvent]:
    """Nova's service list as evidence.

    A service down is DOWN since its last report (when it went silent). A binary whose services all
    report in time is HEALTHY in this scope (reporting again: its earlier DOWN from this list ended; an
    error seen otherwise stands, since a conductor that reports may still not consume its RPC). A
    disabled nova-compute is an ERROR only when no compute of its zone is up and enabled (a host in
    maintenance beside working ones explains nothing; every one of them disabled leaves the zone no
    host to schedule on); no zone so closed is HEALTHY in that scope (re-enabled: that error ended).
    """
    open_zones = {zone for binary, _host, zone, _at, state in services if binary == "nova-compute"
                  and state == "up"}  # fmt: skip
    kept: dict[str, NodeEvent] = {}
    reports: dict[str, list[float | None]] = {}
    for binary, _host, _zone, reported, state in services:
        reports.setdefault(binary, []).append(None if state == "down" else (reported or now))
    for binary, times in sorted(reports.items()):
        if all(at is not None for at in times):
            # Every one of them reported in time: seen working at the oldest of those reports (never
            # later: one that hung since is still "up" until Nova's service_down_time, and its DOWN will
            # be dated at that same last report), which ends the node's earlier evidence.
            at = min(min(t for t in times if t is not None), now)
            detail = f"every {binary} is up in Nova's service list"
            kept[f"nova-service:{binary}:up:{at:.3f}"] = NodeEvent(
                node_of_binary(binary), EvidenceKind.HEALTHY, at, detail, NOVA_SERVICES
            )
    for binary, host, zone, reported, state in services:
        at = min(now, reported) if reported is not None else now
        node = node_of_binary(binary)
        if state == "down":
            detail = f"{binary} on {host} is down in Nova's service list"
            kept[f"nova-service:{binary}:{host}:{at:.3f}"] = NodeEvent(
                node, EvidenceKind.DOWN, at, detail, NOVA_SERVICES
            )
        elif state.startswith("disabled") and binary == "nova-compute" and zone not in open_zones:
            reason = state.partition(":")[2].strip()
            detail = (f"{binary} on {host} is disabled ({reason}) in Nova's service list, and "
                      f"no compute of zone {zone or '?'} is up and enabled")  # fmt: skip
            kept[f"nova-service:{binary}:{host}:disabled:{at:.3f}"] = NodeEvent(
                node, EvidenceKind.ERROR, at, detail, "nova-services:disabled"
            )
    computes = [(zone, reported, state) for binary, _h, zone, reported, state in services
                if binary == "nova-compute"]  # fmt: skip
    if computes and not any(s.startswith("disabled") and z not in open_zones for z, _r, s in computes):
        # No zone closed by disabled computes (re-enabled): that error ended, as of the oldest report.
        at = min([now, *(r for _z, r, _s in computes if r is not None)])
        detail = "no zone has all its nova-computes disabled in Nova's service list"
        kept[f"nova-service:nova-compute:enabled:{at:.3f}"] = NodeEvent(
            node_of_binary("nova-compute"), EvidenceKind.HEALTHY, at, detail, "nova-services:disabled"
        )
    return kept


async def _until(stop: asyncio.Event, clock: Clock, deadline: float) -> None:
    """Until ``stop`` is set or the clock reaches ``deadline``."""
    sleeper = asyncio.ensure_future(clock.sleep_until(deadline))
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([sleeper, waiter], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waiter):
            task.cancel()


def recent_runs(store: Store, limit: int = 50) -> Sequence[CanaryRun]:
    """Stored canary boots, newest first."""
    return [run_from_json(d) for d in store.list_canaries(BOOT, limit=limit)]
