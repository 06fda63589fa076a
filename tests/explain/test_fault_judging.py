"""keystone-hung as `haven drill fault` ran it on the loaded lab (2026-12-06, load 30; a miss, nova-api
ranked): the symptom judged must be one the fault raised, not one of the rounds that proved the lab
whole before it.

The lab's shape, replayed through the real FaultRun, CanaryRunner, explainer and SQLite store over a
scripted cloud (no lab): proving the lab whole, the first canary round's server list and boot timed out
in nova-api on the loaded host (``.../v2.1/servers timed out``: nova-api's own error, Keystone fine), the
second round passed; then Keystone was SIGSTOPped and its token, the server list and the zone list all
waited for ``/v3/auth/tokens``. The failed boot of the proving round was the only boot symptom, so it was
judged ("boots first"), and nova-api, right for that round, was taken for the fault's explanation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from haven.canary.model import RUNNING, Found, ServerView
from haven.canary.runner import CanaryRunner, Round
from haven.domain.errors import NotFound, TemporaryError
from haven.drill.faults import Fault, FaultLab, Heal
from haven.drill.faults_run import FaultRun, RunSettings
from haven.store import Store

TOKENS = "cannot reach the cloud: Request to http://127.0.0.1:34397/v3/auth/tokens timed out"
SERVERS = "cannot reach the cloud: Request to http://127.0.0.1:37947/v2.1/servers timed out"


class LoadedLab:
    """The canary's cloud: nova-api too slow for the first ``slow_rounds`` rounds, Keystone hung or not."""

    def __init__(self) -> None:
        self.keystone_hung = False
        self.slow_rounds = 1
        self.rounds = 0
        self.servers: dict[str, int] = {}  # id → polls left before gone (after its delete)

    def _token(self, what: str) -> None:
        if self.keystone_hung:
            raise TemporaryError(f"{what}: {TOKENS}")

    def _nova(self, what: str) -> None:
        self._token(what)
        if self.rounds <= self.slow_rounds:
            raise TemporaryError(f"{what}: {SERVERS}")

    async def find(self, prefix: str, tag_key: str) -> Sequence[Found]:
        self._token("find canaries")
        return []

    async def issue_token(self) -> None:
        self.rounds += 1  # each round's first probe, and the more asks of a passing one (confirm)
        self._token("issue a token")

    async def list_servers(self) -> int:
        self._nova("list servers")
        return 0

    async def endpoints(self) -> Mapping[str, str]:
        self._token("the service catalog")
        return {"identity": "http://k/v3", "compute": "http://n/v2.1", "image": "http://g"}

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        return None

    async def services(self) -> Sequence[tuple[str, str, str, float | None, str]]:
        self._token("list nova-compute services")
        return [("nova-compute", "compute-1", "nova", None, "up"), ("nova-scheduler", "ctl", "", None, "up")]

    async def zones(self) -> Sequence[str]:
        self._token("list nova-compute services")
        return ["nova"]

    async def boot(
        self, name: str, zone: str, flavor: str, image: str, network: str, metadata: Mapping[str, str]
    ) -> str:
        self._nova(f"boot canary {name} in {zone}")
        self.servers[name] = -1
        return name

    async def look(self, server_id: str) -> ServerView:
        left = self.servers.get(server_id)
        if left is None or left == 0:
            raise NotFound(server_id)
        if left > 0:
            self.servers[server_id] = left - 1
        return ServerView("ACTIVE", None, "compute-1", RUNNING)

    async def delete(self, server_id: str) -> None:
        self.servers[server_id] = 1

    async def image_status(self, image: str) -> str:
        return "active"

    async def image_data(self, image: str) -> int:
        return 1024

    async def image_via_compute(self, image: str) -> None:
        return None

    async def placement_room(self, flavor: str) -> int:
        return 1

    def close(self) -> None:
        return None


class Lab:
    """The FaultLab the run needs here: whole, with a flavor and an image."""

    flavor = "lab.tiny"
    image_id = "img-1"

    def whole(self) -> list[str]:
        return []


class ScriptedRun(FaultRun):
    def __init__(self, cloud: LoadedLab, store: Store) -> None:
        settings = RunSettings(boot_timeout_s=5.0, whole_timeout_s=30.0)
        super().__init__(Lab(), store, settings, lambda _message: None)  # type: ignore[arg-type]
        self.cloud = cloud
        self.canary = dataclasses.replace(self.canary, poll_s=0.05)

    def open_cloud(self) -> LoadedLab:  # the baselines' warm-up asks it too
        return self.cloud

    async def round(self) -> Round:
        runner = CanaryRunner(self.cloud, self.store, self.clock, self.canary, self._explain)
        return await runner.round()


async def test_a_symptom_of_the_round_that_proved_the_lab_whole_is_not_the_fault_s(tmp_path: Path) -> None:
    cloud = LoadedLab()

    def hang(lab: FaultLab) -> Heal:
        cloud.keystone_hung = True
        return lambda: setattr(cloud, "keystone_hung", False)

    fault = Fault("keystone-hung", "hung", "keystone", "Keystone SIGSTOPped", hang)
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        run = ScriptedRun(cloud, store)
        result = await run.inject(fault)
        # every symptom the fault raised (token, server list, zone list) is explained by Keystone first
        raised = {r.source: store.get_explanation(r.id) for r in run.symptoms}
    # proving: slow then whole; under the fault; healed and whole again; and, once, the warm-up of the
    # probes' slow baselines (each probe asked min_history times, haven.canary.slow); a passing token with a
    # baseline is asked `confirm` more times: the warm-up's last two and the healed round's
    slow = run.canary.slow
    assert cloud.rounds == 4 + slow.min_history + 3 * slow.confirm
    assert result.canary == "no boot (failed: token,server-list,zones)"
    assert result.symptom == "probe:token"  # before the fix: "canary", the proving round's failed boot
    assert result.ranked[0] == "keystone" and result.top1
    assert result.healed and result.status == "run"
    assert set(raised) == {"probe:token", "probe:server-list", "probe:zones"}
    for record in raised.values():
        assert record.diagnosis is not None and record.diagnosis.explanations[0].node == "keystone"
