"""The Kubernetes driver against answers in the Kubernetes API's shape, served by a local HTTP stub.

No Kubernetes can run on these machines (no kubelet, no container runtime a cluster would accept, no
registry for its images), so this driver is not tested against a cluster. The answers in
``tests/controlplane/k8s/`` were NOT captured from one: they are written by hand in the shape the API
reference gives (apps/v1 DeploymentList, policy/v1 PodDisruptionBudgetList, v1 PodList and Pod, the
v1 Status of a 404), modelled on what OpenStack-Helm's nova chart deploys by default: labels
``application``/``component``/``release_group``, anti-affinity only *preferred* on
``kubernetes.io/hostname``, a PodDisruptionBudget with ``minAvailable: 0``, the conductor's RPC liveness
probe every 90 s with a 70 s timeout. Two nova-api pods (ctl-1 serving; ctl-2 in CrashLoopBackOff after
5 restarts) and a conductor.

The stub filters pods by the label and field selectors the driver sends (as the API server does), checks
the bearer token, and answers a pod's DELETE as the API server and its ReplicaSet would: the pod goes,
a new one (another uid, Pending) appears. What this proves: the driver's requests, selectors and reading
of these shapes; not how a real cluster behaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.drivers.kubernetes import KubernetesUnits, audit, pod_status
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.reconciler import Reconciler
from haven.controlplane.running import ControlPlane
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    ActionKind,
    ActionState,
    Controller,
    ControlPlaneSettings,
    DomainName,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    UnitActive,
)
from haven.domain.errors import ConfigError, PermanentError, TemporaryError
from haven.domain.ids import HostName
from haven.store import Store

HERE = Path(__file__).parent / "k8s"
TOKEN = "t0ken"
NS = "/api/v1/namespaces/openstack"
APPS = "/apis/apps/v1/namespaces/openstack/deployments"


def _load(name: str) -> Any:
    return json.loads((HERE / name).read_text())


class Cluster:
    """The recorded answers, and what the driver asked (ground truth of the stub)."""

    def __init__(self) -> None:
        self.deployments = _load("deployments.json")
        self.pdbs = _load("poddisruptionbudgets.json")
        self.pods: list[dict[str, Any]] = _load("pods.json")["items"]
        self.replacement = _load("pod-replacement.json")
        self.deleted: list[str] = []
        self.requests: list[tuple[str, str]] = []

    def answer(self, method: str, url: str, auth: str) -> tuple[int, object]:
        self.requests.append((method, url))
        if auth != f"Bearer {TOKEN}":
            return 401, _status(401, "Unauthorized")
        parsed = urllib.parse.urlsplit(url)
        path, query = parsed.path, dict(urllib.parse.parse_qsl(parsed.query))
        if method == "GET" and path == APPS:
            return 200, self.deployments
        if method == "GET" and path.startswith(APPS + "/"):
            name = path.rsplit("/", 1)[1]
            for d in self.deployments["items"]:
                if d["metadata"]["name"] == name:
                    return 200, d
            return 404, _status(404, f'deployments.apps "{name}" not found')
        if method == "GET" and path == "/apis/policy/v1/namespaces/openstack/poddisruptionbudgets":
            return 200, self.pdbs
        if method == "GET" and path == f"{NS}/pods":
            items = [p for p in self.pods if _matches(p, query)]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        if method == "DELETE" and path.startswith(f"{NS}/pods/"):
            name = path.rsplit("/", 1)[1]
            gone = [p for p in self.pods if p["metadata"]["name"] == name]
            if not gone:
                return 404, _status(404, f'pods "{name}" not found')
            self.pods = [p for p in self.pods if p["metadata"]["name"] != name] + [self.replacement]
            self.deleted.append(name)
            return 200, gone[0]
        return 404, _status(404, "the server could not find the requested resource")


def _status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code}


def _matches(pod: dict[str, Any], query: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels", {})
    for term in filter(None, query.get("labelSelector", "").split(",")):
        key, value = term.split("=", 1)
        if labels.get(key) != value:
            return False
    field = query.get("fieldSelector", "")
    return not field or pod["spec"]["nodeName"] == field.removeprefix("spec.nodeName=")


@pytest.fixture
def cluster() -> Iterator[tuple[Cluster, str]]:
    state = Cluster()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            code, body = state.answer(self.command, self.path, self.headers.get("Authorization", ""))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_DELETE = _reply

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_a_pod_is_read_per_node_and_a_restart_deletes_it(cluster: tuple[Cluster, str]) -> None:
    state, url = cluster
    ctl1, ctl2 = (KubernetesUnits(url, node, token=TOKEN) for node in ("ctl-1", "ctl-2"))
    try:
        serving = await ctl1.status("nova-api-osapi")
        assert (serving.active, serving.sub_state, serving.n_restarts) == (UnitActive.ACTIVE, "running", 0)
        assert serving.active_since is not None and serving.invocation_id.startswith("5b0e7c52")
        looping = await ctl2.status("nova-api-osapi")
        assert (looping.active, looping.sub_state, looping.n_restarts) == (
            UnitActive.FAILED,
            "CrashLoopBackOff",
            5,
        )
        # The selector the driver built is the Deployment's matchLabels, and the node its own.
        gets = [u for m, u in state.requests if m == "GET" and "/pods?" in u]
        assert all("application%3Dnova" in u and "component%3Dos-api" in u for u in gets), gets
        assert any("spec.nodeName%3Dctl-2" in u for u in gets), gets
        await ctl2.restart("nova-api-osapi")
        assert state.deleted == ["nova-api-osapi-7c9d8f5b6-r7w4m"]  # that node's pod, and only it
        fresh = await ctl2.status("nova-api-osapi")
        assert fresh.active is UnitActive.ACTIVATING and fresh.invocation_id != looping.invocation_id
        assert (await ctl1.status("nova-api-osapi")).invocation_id == serving.invocation_id
        absent = await ctl2.status("nova-conductor")  # its one replica runs on ctl-1
        assert (absent.sub_state, absent.loaded) == ("no pod", False)
        assert not (await ctl1.status("keystone-api")).loaded  # no such Deployment: a 404 Status
        with pytest.raises(PermanentError, match="does not start pods"):
            await ctl2.start("nova-conductor")
    finally:
        await ctl1.close()
        await ctl2.close()


async def test_a_bad_token_and_an_unreachable_api_are_told_apart(cluster: tuple[Cluster, str]) -> None:
    _, url = cluster
    wrong = KubernetesUnits(url, "ctl-1", token="nope")
    gone = KubernetesUnits("http://127.0.0.1:9", "ctl-1", token=TOKEN, timeout_s=1.0)
    try:
        with pytest.raises(PermanentError, match="Unauthorized"):
            await wrong.status("nova-api-osapi")
        with pytest.raises(TemporaryError, match="cannot reach the Kubernetes API"):
            await gone.status("nova-api-osapi")
    finally:
        await wrong.close()
        await gone.close()


async def test_the_audit_names_what_openstack_helm_leaves_off(cluster: tuple[Cluster, str]) -> None:
    _, url = cluster
    units = KubernetesUnits(url, "ctl-1", token=TOKEN)
    try:
        findings = {(f.deployment, f.what): f.detail for f in await units.audit()}
    finally:
        await units.close()
    assert set(findings) == {
        ("nova-api-osapi", "pdb_allows_all_down"),
        ("nova-api-osapi", "anti_affinity_preferred"),
        ("nova-api-osapi", "liveness"),  # tcp check every 60 s x 3 + 15 s
        ("nova-conductor", "single_replica"),
        ("nova-conductor", "no_pdb"),
        ("nova-conductor", "anti_affinity_preferred"),
        ("nova-conductor", "liveness"),
    }
    assert "about 340 s" in findings[("nova-conductor", "liveness")]  # 90 s x 3 + 70 s, the figure
    assert "about 195 s" in findings[("nova-api-osapi", "liveness")]


def test_a_required_anti_affinity_and_a_real_budget_pass_the_audit() -> None:
    deployment = _load("deployments.json")["items"][0]
    spec = deployment["spec"]["template"]["spec"]
    terms = spec["affinity"]["podAntiAffinity"].pop("preferredDuringSchedulingIgnoredDuringExecution")
    spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = [
        terms[0]["podAffinityTerm"]
    ]
    spec["containers"][0]["livenessProbe"].update(periodSeconds=10, timeoutSeconds=5)
    pdb = _load("poddisruptionbudgets.json")["items"][0]
    pdb["spec"] = {"minAvailable": 1, "selector": pdb["spec"]["selector"]}
    assert audit([deployment], [pdb]) == []


def test_a_pod_whose_node_stopped_reporting_is_unknown_not_failed() -> None:
    pod = _load("pods.json")["items"][0]
    pod["status"]["phase"] = "Unknown"
    with pytest.raises(TemporaryError, match="does not report"):
        pod_status(pod)
    pod["status"]["phase"] = "Running"
    pod["metadata"]["deletionTimestamp"] = "2026-12-06T07:41:00Z"
    assert pod_status(pod).active is UnitActive.DEACTIVATING


def test_haven_toml_selects_the_driver_and_needs_the_api_and_its_token() -> None:
    section = {
        "driver": "kubernetes",
        "kubernetes": {"api": "https://10.0.0.1:6443", "token_env": "HAVEN_KUBE_TOKEN"},
        "controllers": [{"host": "ctl-1"}, {"host": "ctl-2"}],
        "services": {"nova-api": {}, "nova-conductor": {}, "glance-api": {"unit": "glance-api-v2"}},
    }
    config = parse_controlplane(section, "haven.toml")
    assert config.kubernetes is not None and config.kubernetes.namespace == "openstack"
    units = {s.name: s.unit for s in config.services}
    assert units == {
        "nova-api": "nova-api-osapi",
        "nova-conductor": "nova-conductor",
        "glance-api": "glance-api-v2",
    }
    with pytest.raises(ConfigError, match="HAVEN_KUBE_TOKEN is not set"):
        ControlPlane(config, simulated_cloud=False, clock=RealClock(), environ={})
    plane = ControlPlane(config, simulated_cloud=False, clock=RealClock(), environ={"HAVEN_KUBE_TOKEN": "x"})
    assert all(isinstance(u, KubernetesUnits) for u in plane.units.values())
    assert "Kubernetes pods" in plane.describe()
    asyncio.run(plane.aclose())
    with pytest.raises(ConfigError, match="needs the API server"):
        parse_controlplane({"driver": "kubernetes"}, "haven.toml")
    with pytest.raises(ConfigError, match="api must be the API server's URL"):
        parse_controlplane({"kubernetes": {"api": "10.0.0.1"}}, "haven.toml")
    bad_ca = {**section, "kubernetes": {"api": "https://k:6443", "ca": "/nonexistent/ca.crt"}}
    with pytest.raises(ConfigError, match="cannot be read"):
        ControlPlane(parse_controlplane(bad_ca, "haven.toml"), simulated_cloud=False, clock=RealClock())


async def test_the_reconciler_deletes_the_crash_looping_pod_once(cluster: tuple[Cluster, str]) -> None:
    """haven's planner over the stub: ctl-2's pod is failed (CrashLoopBackOff), so it is deleted once;
    the ReplicaSet's new pod is Pending (activating: the kubelet's to judge), so nothing more happens."""
    state, url = cluster
    spec = ServiceSpec(
        ServiceName("nova-api"), "nova-api-osapi", 2, restart=RestartPolicy(backoff_initial_s=0.2)
    )
    hosts = (HostName("ctl-1"), HostName("ctl-2"))
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.1),
        tuple(Controller(h, DomainName(f"rack-{h}")) for h in hosts),
        (spec,),
    )
    units = {h: KubernetesUnits(url, h, token=TOKEN) for h in hosts}
    with Store.open("sqlite://") as store:
        prober = NetworkProber()
        task = asyncio.create_task(Reconciler(config, units, None, prober, store, RealClock()).run())
        try:
            await asyncio.sleep(1.5)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await prober.close()
            for u in units.values():
                await u.close()
        actions = [(a.kind, a.host, a.state) for a in store.actions_since(0)]
    assert state.deleted == ["nova-api-osapi-7c9d8f5b6-r7w4m"]
    assert actions == [(ActionKind.RESTART, "ctl-2", ActionState.DONE)]
