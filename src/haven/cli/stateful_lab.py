"""The HA lab's Galera and RabbitMQ clusters, found for ``haven drill galera-*|rabbitmq-* --cloud lab``.

Called by haven.cli.galera and haven.cli.rabbitmq. ``haven lab up --ha`` keeps each cluster's nodes
(unit, controller's D-Bus, ports, folders) in the lab's records (``lab.json``, ``ha.stateful``:
haven.lab.ha_stateful.describe); they are read back here into the drills' clusters of units
(haven.stateful.unit_clusters). A folder with no running lab, or a plain lab, is the user's mistake:
a UserError naming the fix.

After a heal, when the lab's OpenStack runs on these clusters (the default of ``haven lab up --ha``:
the lab's ``nova/nova.conf.plain`` exists), ``openstack_after`` asks Nova, through the HA lab's
endpoints (Keystone's and nova-api's HAProxy frontends), for its servers, flavors and compute
services (what an operator's first commands would be), then boots one server and deletes it
(``boot_after``: the RPC path over the healed cluster, which the reads do not take).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console

from haven.cli.lab_controls import running_lab
from haven.domain.errors import UserError
from haven.lab import ha_openstack, ha_stateful
from haven.lab.keystone import Account
from haven.lab.process import LabServiceError
from haven.stateful.drills import GaleraDrillReport
from haven.stateful.rabbitmq_drills import RabbitDrillReport
from haven.stateful.unit_clusters import UnitGaleraCluster, UnitRabbitCluster

LAB = "lab"
NOVA_HEADERS = {"OpenStack-API-Version": "compute 2.79"}
OPENSTACK_WAIT_S = 60.0  # services reconnect to the healed cluster (oslo.db, oslo.messaging retries)
BOOT_WAIT_S = 120.0  # the boot after the heal: accepted, scheduled and ACTIVE (the lab's fake driver)
RESTART = "restart it: `haven lab down`, then `haven lab up --ha`"


def check_cloud(cloud: str | None, scenario: str) -> None:
    """These drills run on their own temporary cluster, or on the HA lab: no other cloud."""
    if cloud not in (None, LAB):
        raise UserError(
            f"{scenario} runs on its own temporary cluster or on the HA lab's (--cloud lab), "
            f"not on --cloud {cloud}",
            f"run `haven drill {scenario}` without --cloud, or with --cloud lab on a `haven lab up --ha`",
        )


def _stateful(folder: Path | None, part: str) -> tuple[Path, Any]:
    state = running_lab(folder)
    where = Path(state.folder)
    fix = f"start one: `haven lab down --folder {where}` then `haven lab up --ha --folder {where}`"
    if not state.ha:
        raise UserError(f"the lab in {where} is not an HA lab: it runs no Galera or RabbitMQ cluster", fix)
    stateful = state.ha.get("stateful")
    if not isinstance(stateful, dict) or part not in stateful:
        raise UserError(f"the HA lab in {where} has no {part} cluster in its records (an older lab)", fix)
    return where, stateful[part]


def galera(folder: Path | None) -> UnitGaleraCluster:
    where, saved = _stateful(folder, "galera")
    try:
        return UnitGaleraCluster(ha_stateful.from_state(saved).nodes)
    except LabServiceError as exc:
        raise UserError(f"the lab in {where}: {exc}", RESTART) from exc


def rabbitmq(folder: Path | None) -> UnitRabbitCluster:
    where, saved = _stateful(folder, "rabbitmq")
    try:
        return UnitRabbitCluster(ha_stateful.rabbit_from_state(saved).nodes)
    except LabServiceError as exc:
        raise UserError(f"the lab in {where}: {exc}", RESTART) from exc


def on_clusters(folder: Path | None) -> bool:
    """Whether the lab's OpenStack was moved onto its clusters (haven.lab.ha_openstack)."""
    state = running_lab(folder)
    return ha_openstack.on_clusters(Path(state.folder))


def openstack_after(folder: Path | None, wait_s: float = OPENSTACK_WAIT_S) -> dict[str, Any]:
    """Nova's server list, flavor list and compute services through the lab's endpoints, each retried
    until it answers 200 or ``wait_s`` passed: ``{"ok", "seconds", "calls": {name: status or error},
    "tries", "first_failures", "computes_up"}``. A new token is taken (Keystone's database is on
    Galera too)."""
    state = running_lab(folder)
    where = Path(state.folder)
    password = (where / "keystone" / "admin-password").read_text().strip()
    compute = state.urls["compute"]
    calls: dict[str, str] = {}
    tries: dict[str, int] = {}
    first_failures: dict[str, str] = {}  # a call that answered on a later try: its first answer
    started = time.monotonic()
    answers: dict[str, Any] = {}
    token = ""
    for name in ("token", "servers", "flavors", "os-services"):
        while True:
            tries[name] = tries.get(name, 0) + 1
            try:
                if name == "token":
                    token = Account(state.urls["keystone"], "admin", password, "admin").token()
                    calls[name] = "ok"
                else:
                    reply = httpx.get(
                        f"{compute}/{name}", headers={**NOVA_HEADERS, "X-Auth-Token": token}, timeout=15
                    )
                    calls[name] = str(reply.status_code)
                    if reply.status_code == 200:
                        answers[name] = reply.json()
            except Exception as exc:  # keystoneauth's and httpx's errors: what the client saw
                calls[name] = f"{type(exc).__name__}: {exc}"[:200]
            if calls[name] not in ("ok", "200"):
                first_failures.setdefault(name, calls[name])
            if calls[name] in ("ok", "200") or time.monotonic() - started > wait_s:
                break
            time.sleep(1.0)
    services = answers.get("os-services", {}).get("services", [])
    computes = [s for s in services if s.get("binary") == "nova-compute"]
    read_ok = all(v in ("ok", "200") for v in calls.values())
    flavors = answers.get("flavors", {}).get("flavors", [])
    flavor = next((f["id"] for f in flavors if state.flavor in (f.get("name"), f.get("id"))), state.flavor)
    booted = boot_after(compute, token, state.image_id, flavor) if read_ok else None
    return {
        "ok": read_ok and booted is not None and booted["status"] == "ACTIVE",
        "boot": booted,
        "seconds": round(time.monotonic() - started, 2),
        "calls": calls,
        "tries": tries,
        "first_failures": first_failures,
        "servers": len(answers.get("servers", {}).get("servers", [])),
        "flavors": len(answers.get("flavors", {}).get("flavors", [])),
        "computes_up": sum(1 for s in computes if s.get("state") == "up"),
        "computes": len(computes),
    }


# Answers to the create after which Nova may have made the server all the same: a proxy's (HAProxy's 502,
# 504, a 503), and Nova's own 500 (its BuildRequest written before the cast to the conductor failed).
_UNSURE = (500, 502, 503, 504)


def boot_after(
    compute: str,
    token: str,
    image: str,
    flavor: str,
    wait_s: float = BOOT_WAIT_S,
    poll_s: float = 1.0,
    gone_wait_s: float = 30.0,
) -> dict[str, Any]:
    """One server booted through nova-api's frontend after the heal, then deleted: the API, the
    conductor, the scheduler, Placement and a compute over the message bus and the database, which
    the reads above do not use. ``{"status": ACTIVE|ERROR|last status|"not accepted", "seconds",
    "detail", "deleted"}``; ACTIVE is read from Nova's own record of the server, and ``deleted`` is
    true once Nova answers 404 for it (within ``gone_wait_s``). An answer that is not Nova's JSON is
    the check's failure (in ``detail``), never a traceback; a server that was accepted is deleted
    whatever happened after. A 202 with no ``server.id`` in it, or a null or empty one ("accepted, no
    server id"), a proxy's 502/503/504 to the create, or a create sent and never answered, may still have
    made a server: it is found by its name (unique to this
    check) in Nova's list, deleted, and its 404 awaited; ``detail`` says what Nova answered and what
    was found."""
    headers = {**NOVA_HEADERS, "X-Auth-Token": token}
    name = f"haven-drill-check-{int(time.time())}-{uuid.uuid4().hex[:8]}"
    body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}}
    started = time.monotonic()
    found: dict[str, Any] = {"status": "not accepted", "detail": "", "deleted": False}
    server = ""
    unsure = False  # Nova may have made a server this check holds no id of
    with httpx.Client(timeout=15.0) as client:
        try:
            try:
                answer = client.post(f"{compute}/servers", json=body, headers=headers)
            except httpx.HTTPError as exc:
                # Sent (unless no connection was made): Nova may have made it, its answer lost
                unsure = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                raise
            if answer.status_code != 202:
                found["detail"] = f"{answer.status_code} {answer.text[:160]}"
                # A proxy's answer (HAProxy's 502/504, a 503), Nova's 500: the server may exist
                unsure = answer.status_code in _UNSURE
            else:
                unsure = True
                found["status"] = "accepted, no server id"
                found["detail"] = f"202 without a server id: {answer.text[:160]!r}"
                ident = answer.json()["server"]["id"]
                if not isinstance(ident, str) or not ident.strip():  # null, "": no id, not "None"
                    raise ValueError(f"server.id is {ident!r}")
                server = ident
                unsure = False
                found["status"], found["detail"] = "accepted", ""
            while server and time.monotonic() - started < wait_s:
                try:
                    shown = client.get(f"{compute}/servers/{server}", headers=headers)
                    if shown.status_code == 200:
                        record = shown.json()["server"]
                        found["status"] = str(record["status"])
                        if record["status"] == "ERROR":
                            found["detail"] = str((record.get("fault") or {}).get("message", ""))[:200]
                        if record["status"] in ("ACTIVE", "ERROR"):
                            break
                except httpx.HTTPError as exc:
                    found["detail"] = f"{type(exc).__name__}: {exc}"[:200]
                time.sleep(poll_s)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:  # no answer, or not Nova's JSON
            error = f"{type(exc).__name__}: {exc}"[:200]
            found["detail"] = f"{found['detail']}: {error}" if found["detail"] else error
        finally:
            found["seconds"] = round(time.monotonic() - started, 2)
            if server:
                found["deleted"] = _delete(
                    client, f"{compute}/servers/{server}", headers, gone_wait_s, poll_s
                )
            elif unsure:
                found["deleted"], found["detail"] = _delete_by_name(
                    client, compute, name, headers, gone_wait_s, poll_s, found["detail"]
                )
    return found


def _delete_by_name(
    client: httpx.Client,
    compute: str,
    name: str,
    headers: dict[str, str],
    wait_s: float,
    poll_s: float,
    detail: str,
) -> tuple[bool, str]:
    """The servers named ``name`` in Nova's list (looked for up to ``wait_s``), each deleted and its 404
    awaited (``wait_s`` each): whether all are gone, and ``detail`` with what was found. Nova's name
    filter is a regular expression: anchored, and the names compared again here, so only this check's
    own server is ever touched."""
    until = time.monotonic() + wait_s
    ids: list[str] = []
    while not ids and time.monotonic() < until:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            listed = client.get(f"{compute}/servers", params={"name": f"^{name}$"}, headers=headers)
            if listed.status_code == 200:
                ids = [str(s["id"]) for s in listed.json()["servers"] if s.get("name") == name]
        if not ids:
            time.sleep(poll_s)
    if not ids:
        return False, f"{detail}; no server named {name} in Nova's list within {wait_s:g} s"
    gone = [_delete(client, f"{compute}/servers/{i}", headers, wait_s, poll_s) for i in ids]
    words = "deleted" if all(gone) else "deleted, not all gone (404) in time"
    return all(gone), f"{detail}; found by its name {name}: {', '.join(ids)}, {words}"


def _delete(client: httpx.Client, url: str, headers: dict[str, str], wait_s: float, poll_s: float) -> bool:
    """DELETE the server, then wait until Nova answers 404 for it: gone by Nova's own record."""
    until = time.monotonic() + wait_s
    with contextlib.suppress(httpx.HTTPError):
        client.delete(url, headers=headers)
    while time.monotonic() < until:
        with contextlib.suppress(httpx.HTTPError):
            if client.get(url, headers=headers).status_code == 404:
                return True
        time.sleep(poll_s)
    return False


def judge_openstack(report: GaleraDrillReport | RabbitDrillReport, folder: Path | None) -> None:
    """After a recovered drill on a lab whose OpenStack runs on the clusters: Nova must answer too."""
    if report.verdict != "recovered" or not on_clusters(folder):
        return
    report.openstack = openstack_after(folder)
    if not report.openstack["ok"]:
        report.problems.append(
            f"Nova did not answer after the heal: {report.openstack['calls']}, "
            f"a boot: {report.openstack['boot']}"
        )
        report.verdict = "failed"


def describe_openstack(seen: dict[str, Any]) -> str:
    calls = ", ".join(f"{name} {answer}" for name, answer in seen["calls"].items())
    booted = seen.get("boot")
    boot = f"; a boot {booted['status']} in {booted.get('seconds')} s" if booted else "; no boot tried"
    return (
        f"OpenStack after the heal ({seen['seconds']} s): {calls}; {seen['servers']} servers, "
        f"{seen['flavors']} flavors, {seen['computes_up']} of {seen['computes']} computes up{boot}"
    )


Report = TypeVar("Report", GaleraDrillReport, RabbitDrillReport)


def finish(
    report: Report,
    args: argparse.Namespace,
    out: Console,
    err: Console,
    table: Callable[[Report, Console], None],
) -> int:
    """A stateful drill's end: on the lab, Nova's answers after the heal; the report; its exit code."""
    if args.cloud == LAB:
        with err.status("after the heal: Nova's answers through the lab's endpoints..."):
            judge_openstack(report, args.lab_folder)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        table(report, out)
    return 0 if report.verdict == "recovered" else 1
