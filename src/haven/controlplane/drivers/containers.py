"""Containers: one host's container engine (dockerd, or Podman's ``podman system service``) as its units.

Used by the reconciler as a controller's ``Units`` port when ``[controlplane] driver`` is ``"docker"`` or
``"podman"`` (Kolla-Ansible's deployments). Both engines serve the same Docker-compatible Engine REST API
on a unix socket, so one driver speaks it (httpx, no SDK): a unit is a container, named as the service's
``unit`` says (``{host}`` in it is replaced by the controller's host name, for engines that hold several
controllers' containers). Each call re-reads the engine; nothing is cached.

What the engine says (``GET /containers/NAME/json``), in systemd's words (the planner reads only those):
- running (no healthcheck, or ``healthy``, or ``starting``): active, ``running`` / ``running (healthy)``;
- running with healthcheck ``unhealthy``: failed, ``running (unhealthy)``;
- paused: active, ``paused`` (it answers nothing: the probe finds it, as a hung process);
- restarting (the engine's own restart policy): activating;
- exited with code 0, or created and never started: inactive, ``exited (0)`` / ``created``;
- exited with another code (137 after a SIGKILL), or dead: failed, ``exited (137)`` / ``dead``;
- no such container: not loaded (the service is not deployed on that controller).

An unhealthy container is failed for haven, so the reconciler takes it out of the load balancer and
restarts it: Docker marks a container unhealthy and never restarts it for that (Kolla-Ansible's
healthchecks only mark).
A healthcheck's ``starting`` is left to haven's own probe and its start-up grace: Podman runs
healthchecks from systemd timers, so without systemd its health stays ``starting`` until something runs
``podman healthcheck run``, and such a container must not look as if it never finished starting.
The unit's invocation is the container's id and its ``StartedAt`` (a restart keeps the id), NRestarts
is the engine's ``RestartCount``.

start, stop and restart return once the engine has done them (the engine's calls are synchronous,
unlike systemd's queued jobs); stop and restart give the process ``stop_timeout_s`` after SIGTERM
before SIGKILL. A paused container is unpaused before its restart (the engine refuses otherwise). Errors
are translated here: 404 is NotFound, an engine that cannot be reached, times out or answers 5xx a
TemporaryError, any other refusal a PermanentError.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import httpx

from haven.domain.controlplane import UnitActive, UnitStatus
from haven.domain.errors import NotFound, PermanentError, TemporaryError

# Where each engine listens unless a controller's ``engine`` says otherwise.
DEFAULT_ENGINES = {
    "docker": "unix:///var/run/docker.sock",
    "podman": "unix:///run/podman/podman.sock",
}
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


class ContainerUnits:
    """``engine``: ``unix:///path/to/engine.sock`` (or the plain path), or ``tcp://host:port``;
    ``host``: the controller's host name, put in place of ``{host}`` in container names."""

    def __init__(
        self, engine: str, host: str = "", timeout_s: float = 5.0, stop_timeout_s: float = 10.0
    ) -> None:
        self._engine = engine
        self._host = host
        self._timeout_s = timeout_s
        self._stop_timeout_s = stop_timeout_s
        if engine.startswith("tcp://"):
            transport, base = httpx.AsyncHTTPTransport(), "http://" + engine.removeprefix("tcp://")
        else:
            path = engine.removeprefix("unix://")
            transport, base = httpx.AsyncHTTPTransport(uds=path), "http://engine"
        self._client = httpx.AsyncClient(transport=transport, base_url=base, timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    def container(self, unit: str) -> str:
        """The container's name for ``unit`` on this controller."""
        return unit.replace("{host}", self._host)

    async def inspect(self, unit: str) -> dict[str, Any]:
        """The engine's own inspect document of the unit's container (NotFound when there is none)."""
        answer = await self._request("GET", f"/containers/{self.container(unit)}/json", unit)
        body = answer.json()
        if not isinstance(body, dict):
            raise TemporaryError(f"the engine at {self._engine} gave no inspect document for {unit}")
        return body

    async def status(self, unit: str) -> UnitStatus:
        try:
            return unit_status(await self.inspect(unit))
        except NotFound:
            return UnitStatus(UnitActive.INACTIVE, "dead", loaded=False)

    async def start(self, unit: str) -> None:
        await self._request("POST", f"/containers/{self.container(unit)}/start", unit)

    async def stop(self, unit: str) -> None:
        await self._request("POST", f"/containers/{self.container(unit)}/stop", unit, t=self._stop_timeout_s)

    async def restart(self, unit: str) -> None:
        state = (await self.inspect(unit)).get("State") or {}
        name = self.container(unit)
        if state.get("Paused"):
            await self._request("POST", f"/containers/{name}/unpause", unit)
        await self._request("POST", f"/containers/{name}/restart", unit, t=self._stop_timeout_s)

    async def _request(self, method: str, path: str, unit: str, t: float | None = None) -> httpx.Response:
        params = {} if t is None else {"t": str(max(0, round(t)))}
        timeout = self._timeout_s + (t or 0.0)
        try:
            answer = await self._client.request(method, path, params=params, timeout=timeout)
        except httpx.TimeoutException:
            raise TemporaryError(
                f"the container engine at {self._engine} did not answer {method} {path} within {timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise TemporaryError(
                f"cannot reach the container engine at {self._engine}: {exc or type(exc).__name__}"
            ) from exc
        if answer.status_code < 400:  # 304: already started / stopped, which is what was asked
            return answer
        text = _message(answer)
        if answer.status_code == 404:
            raise NotFound(f"container engine: no container {self.container(unit)}: {text}")
        if answer.status_code >= 500:
            raise TemporaryError(f"the container engine refused {method} {path}: {text}")
        raise PermanentError(f"the container engine refused {method} {path}: {text}")


def unit_status(inspect: Mapping[str, Any]) -> UnitStatus:
    """A container's inspect document (Docker's or Podman's, the same shape) as a unit's status."""
    state: Mapping[str, Any] = inspect.get("State") or {}
    status = str(state.get("Status", ""))
    health = str((state.get("Health") or {}).get("Status", "") or "")
    started = _timestamp(state.get("StartedAt"))
    invocation = f"{str(inspect.get('Id', ''))[:12]}@{state.get('StartedAt', '')}" if started else ""
    n_restarts = int(inspect.get("RestartCount") or 0)

    def unit(active: UnitActive, sub: str, since: float | None = None) -> UnitStatus:
        return UnitStatus(active, sub, n_restarts, invocation, since)

    if status == "running" or (state.get("Running") and status not in ("paused", "restarting")):
        if state.get("Paused"):
            return unit(UnitActive.ACTIVE, "paused", started)
        if health == "unhealthy":
            return unit(UnitActive.FAILED, "running (unhealthy)")
        return unit(UnitActive.ACTIVE, f"running ({health})" if health else "running", started)
    if status == "paused":
        return unit(UnitActive.ACTIVE, "paused", started)
    if status == "restarting":
        return unit(UnitActive.ACTIVATING, "restarting")
    if status in ("created", "configured", "initialized"):  # the last two: Podman's words before start
        return unit(UnitActive.INACTIVE, "created")
    if status in ("exited", "stopped"):
        code = int(state.get("ExitCode") or 0)
        return unit(UnitActive.INACTIVE if code == 0 else UnitActive.FAILED, f"exited ({code})")
    if status == "removing":
        return unit(UnitActive.DEACTIVATING, "removing")
    return unit(UnitActive.FAILED, status or "dead")


def _timestamp(value: object) -> float | None:
    """RFC 3339 with nanoseconds (``2026-12-06T07:24:27.437986829Z``) as epoch seconds; the engines'
    zero time (``0001-01-01T00:00:00Z``: never started) as None."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = _FRACTION.sub(r"\1", value.replace("Z", "+00:00"), count=1)
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _message(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip()[:200] or str(answer.status_code)
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(answer.status_code)
