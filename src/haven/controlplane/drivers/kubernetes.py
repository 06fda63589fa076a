"""Kubernetes: one node's pods of the services' Deployments as its units, and an audit of what
OpenStack-Helm leaves off by default.

A ``Units`` port for a controller that is a Kubernetes node (OpenStack-Helm, Atmosphere): a unit is the
pod of a service's Deployment (``unit`` = the Deployment's name) running on that node. It speaks the API
server's REST API with httpx (the official client is not a dependency): the Deployment's
``spec.selector.matchLabels`` finds its pods, ``fieldSelector=spec.nodeName=NODE`` keeps this node's.

The kubelet restarts failed containers and the ReplicaSet replaces deleted pods; haven never competes
with them. ``restart`` deletes the pod (the ReplicaSet makes a new one: what an operator does for a pod
the kubelet keeps alive while it does not serve, a hung worker its liveness probe does not see);
``start`` and ``stop`` are refused (scale the Deployment). Read, in systemd's words for the planner:

- Running, every container ready: active (since the latest container start);
- Running with a container not ready, or Pending: activating (the kubelet's probes are at work);
- a container waiting in ``CrashLoopBackOff``, ``Error``, ``CreateContainerError``,
  ``RunContainerError`` or ``ImagePullBackOff``, or phase Failed: failed; Succeeded: inactive; a pod
  being deleted: deactivating;
- no pod on the node, or no such Deployment: not loaded (haven never places a pod, so a replica
  the scheduler put elsewhere is not one to start here);
- phase Unknown (the node stopped reporting): a TemporaryError, the replica unknown that pass.

NRestarts is the sum of the containers' ``restartCount`` (the kubelet's restarts count towards haven's
back-off and crash loop); the invocation is the pod's uid and that count, so a restart by the kubelet
is a new process too. Errors are translated here: 404 NotFound, the API server unreachable or 5xx a
TemporaryError, 401/403 and other refusals a PermanentError.

``audit`` reads a namespace's Deployments and PodDisruptionBudgets and says, per Deployment, what
OpenStack-Helm leaves off by default: no PDB (or one that allows every pod down), anti-affinity only
preferred with no topology spread, fewer than 2 replicas, and how long a hung container lives under
its liveness probe (period x failures + timeout) when that is longer than the kubelet's default
(10 s x 3).

Chosen by ``[controlplane] driver = "kubernetes"`` with ``[controlplane.kubernetes]`` (the API server,
namespace, token variable, CA), built by haven.controlplane.running.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from haven.domain.controlplane import UnitActive, UnitStatus
from haven.domain.errors import NotFound, PermanentError, TemporaryError

_BAD_WAITING = frozenset(
    {"CrashLoopBackOff", "Error", "CreateContainerError", "RunContainerError", "ImagePullBackOff"}
)


class KubernetesUnits:
    """``api``: the API server's URL; ``node``: this controller's node name; ``token``: a bearer token
    (a service account's); ``verify``: the cluster's CA bundle path, or False for none."""

    def __init__(
        self,
        api: str,
        node: str,
        namespace: str = "openstack",
        token: str = "",
        verify: str | bool = True,
        timeout_s: float = 5.0,
    ) -> None:
        self._api, self._node, self._namespace = api, node, namespace
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        tls: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._client = httpx.AsyncClient(base_url=api, headers=headers, verify=tls, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def pod(self, unit: str) -> dict[str, Any] | None:
        """This node's pod of Deployment ``unit`` (the newest if several), None when there is none."""
        ns = self._namespace
        deployment = await self._get(f"/apis/apps/v1/namespaces/{ns}/deployments/{unit}")
        labels: Mapping[str, str] = (deployment.get("spec") or {}).get("selector", {}).get(
            "matchLabels"
        ) or {}
        if not labels:
            raise PermanentError(f"Deployment {ns}/{unit} has no matchLabels selector haven can read")
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        pods = await self._get(
            f"/api/v1/namespaces/{ns}/pods",
            labelSelector=selector,
            fieldSelector=f"spec.nodeName={self._node}",
        )
        items: list[dict[str, Any]] = [p for p in pods.get("items") or [] if isinstance(p, dict)]
        if not items:
            return None
        return max(items, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp", "")))

    async def status(self, unit: str) -> UnitStatus:
        try:
            pod = await self.pod(unit)
        except NotFound:
            return UnitStatus(UnitActive.INACTIVE, "dead", loaded=False)
        if pod is None:  # haven does not place pods: for the planner, not deployed on this node
            return UnitStatus(UnitActive.INACTIVE, "no pod", loaded=False)
        return pod_status(pod)

    async def restart(self, unit: str) -> None:
        pod = await self.pod(unit)
        if pod is None:
            raise NotFound(f"no pod of Deployment {self._namespace}/{unit} on node {self._node}")
        name = str(pod["metadata"]["name"])
        await self._call("DELETE", f"/api/v1/namespaces/{self._namespace}/pods/{name}")

    async def start(self, unit: str) -> None:
        raise PermanentError(
            f"haven does not start pods: Kubernetes schedules {unit}'s (scale its Deployment)"
        )

    async def stop(self, unit: str) -> None:
        raise PermanentError(f"haven does not stop pods: scale Deployment {unit} instead")

    async def audit(self) -> list[Finding]:
        """The namespace's Deployments audited against its PodDisruptionBudgets (see ``audit``)."""
        ns = self._namespace
        deployments = await self._get(f"/apis/apps/v1/namespaces/{ns}/deployments")
        pdbs = await self._get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets")
        return audit(deployments.get("items") or [], pdbs.get("items") or [])

    async def _get(self, path: str, **params: str) -> dict[str, Any]:
        body = (await self._call("GET", path, params)).json()
        if not isinstance(body, dict):
            raise TemporaryError(f"the Kubernetes API gave no object for {path}")
        return body

    async def _call(self, method: str, path: str, params: Mapping[str, str] | None = None) -> httpx.Response:
        try:
            answer = await self._client.request(method, path, params=params)
        except httpx.TimeoutException:
            raise TemporaryError(
                f"the Kubernetes API at {self._api} did not answer {method} {path}"
            ) from None
        except httpx.HTTPError as exc:
            raise TemporaryError(f"cannot reach the Kubernetes API at {self._api}: {exc}") from exc
        if answer.status_code < 400:
            return answer
        try:
            text = str(answer.json().get("message", answer.status_code))
        except (ValueError, AttributeError):
            text = answer.text.strip()[:200]
        if answer.status_code == 404:
            raise NotFound(f"Kubernetes: {text}")
        if answer.status_code >= 500:
            raise TemporaryError(f"the Kubernetes API refused {method} {path}: {text}")
        raise PermanentError(f"the Kubernetes API refused {method} {path}: {text}")


def pod_status(pod: Mapping[str, Any]) -> UnitStatus:
    """A pod (``GET /api/v1/namespaces/NS/pods``'s items) as a unit's status."""
    meta: Mapping[str, Any] = pod.get("metadata") or {}
    status: Mapping[str, Any] = pod.get("status") or {}
    phase = str(status.get("phase", ""))
    containers: Sequence[Mapping[str, Any]] = status.get("containerStatuses") or []
    restarts = sum(int(c.get("restartCount") or 0) for c in containers)
    invocation = f"{meta.get('uid', '')}:{restarts}"
    starts = [_time((c.get("state") or {}).get("running", {}).get("startedAt")) for c in containers]
    since = max((s for s in starts if s is not None), default=_time(status.get("startTime")))

    def unit(active: UnitActive, sub: str, at: float | None = None) -> UnitStatus:
        return UnitStatus(active, sub, restarts, invocation, at)

    if phase == "Unknown":
        raise TemporaryError(f"pod {meta.get('name')} is Unknown: its node does not report")
    if meta.get("deletionTimestamp"):
        return unit(UnitActive.DEACTIVATING, "terminating")
    waiting = [
        str((c.get("state") or {}).get("waiting", {}).get("reason", ""))
        for c in containers
        if "waiting" in (c.get("state") or {})
    ]
    bad = [w for w in waiting if w in _BAD_WAITING]
    if bad or phase == "Failed":
        return unit(UnitActive.FAILED, bad[0] if bad else "failed")
    if phase == "Succeeded":
        return unit(UnitActive.INACTIVE, "succeeded")
    if phase == "Running" and containers and all(c.get("ready") for c in containers):
        return unit(UnitActive.ACTIVE, "running", since)
    if phase == "Running":
        return unit(UnitActive.ACTIVATING, "running (not ready)")
    return unit(UnitActive.ACTIVATING, phase.lower() or "pending")


def _time(value: object) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# ---- the audit --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    deployment: str
    what: str  # "no_pdb", "pdb_allows_all_down", "anti_affinity_preferred", "single_replica", "liveness"
    detail: str  # what is so and what to change


def audit(deployments: Sequence[Mapping[str, Any]], pdbs: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """What each Deployment (``items`` of ``GET .../deployments``) lacks for HA, given the namespace's
    PodDisruptionBudgets (``items`` of ``GET .../poddisruptionbudgets``). Pure."""
    findings: list[Finding] = []
    for d in deployments:
        name = str((d.get("metadata") or {}).get("name", ""))
        spec: Mapping[str, Any] = d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        labels: Mapping[str, str] = (spec.get("selector") or {}).get("matchLabels") or {}
        template: Mapping[str, Any] = (spec.get("template") or {}).get("spec") or {}
        if replicas < 2:
            findings.append(Finding(name, "single_replica", f"replicas = {replicas}: set 2 or more"))
        budgets = [p for p in pdbs if _selects(p, labels)]
        if not budgets:
            findings.append(
                Finding(name, "no_pdb", "no PodDisruptionBudget selects its pods: add one, minAvailable 1")
            )
        for p in budgets:
            pname = str((p.get("metadata") or {}).get("name", ""))
            pspec: Mapping[str, Any] = p.get("spec") or {}
            if str(pspec.get("minAvailable", "")) in ("0", "0%") or _all(
                pspec.get("maxUnavailable"), replicas
            ):
                findings.append(
                    Finding(
                        name,
                        "pdb_allows_all_down",
                        f"PodDisruptionBudget {pname} lets every pod go at once: set minAvailable 1",
                    )
                )
        anti = (template.get("affinity") or {}).get("podAntiAffinity") or {}
        spread = template.get("topologySpreadConstraints") or []
        hard_spread = any(c.get("whenUnsatisfiable") == "DoNotSchedule" for c in spread)
        if not anti.get("requiredDuringSchedulingIgnoredDuringExecution") and not hard_spread:
            soft = "only preferred" if anti else "none"
            findings.append(
                Finding(
                    name,
                    "anti_affinity_preferred",
                    f"pod anti-affinity {soft}, no DoNotSchedule topology spread: its replicas may share a "
                    "node; require anti-affinity on kubernetes.io/hostname or a topology spread constraint",
                )
            )
        for c in template.get("containers") or []:
            live: Mapping[str, Any] = c.get("livenessProbe") or {}
            if not live:
                findings.append(
                    Finding(
                        name, "liveness", f"container {c.get('name')}: no liveness probe, a hang lives on"
                    )
                )
                continue
            period, failures = int(live.get("periodSeconds", 10)), int(live.get("failureThreshold", 3))
            timeout = int(live.get("timeoutSeconds", 1))
            worst = period * failures + timeout
            if period * failures > 30:  # beyond the kubelet's default, 10 s x 3
                findings.append(
                    Finding(
                        name,
                        "liveness",
                        f"container {c.get('name')}: a hang is restarted only after about {worst} s "
                        f"(period {period} s x {failures} failures + timeout {timeout} s)",
                    )
                )
    return findings


def _selects(pdb: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    wanted: Mapping[str, str] = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def _all(max_unavailable: object, replicas: int) -> bool:
    if max_unavailable is None:
        return False
    text = str(max_unavailable)
    if text.endswith("%"):
        return int(text[:-1]) >= 100
    return int(text) >= replicas
