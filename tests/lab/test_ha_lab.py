"""The HA lab's controllers over the session's lab: kill -9, SIGSTOP and a crash loop of a replica.

Reuses the session lab (tests/servers/nova.py) and starts over it what ``haven lab up --ha`` adds
(haven.lab.ha.start): two controllers, each Debian's systemd as PID 1 of its own namespace with its
keystone.service and nova-api.service (``haven lab up --ha`` also has placement-api and glance-api:
left out here to keep the test short), and Debian's HAProxy in front. The session lab's catalog is
left alone (other tests share it); the client goes through HAProxy's frontends directly. Judged from
what the client saw, from HAProxy's own ``show servers state`` and from systemd's unit state over its
D-Bus. Needs root (skipped without, like the control plane's driver tests). One HA lab for the session
(``ha_lab`` in tests/lab/conftest.py, shared with tests/lab/test_ha_lab_drills.py).

The kill, hung-replica and crash-loop drills run haven's control plane as ``haven serve`` does
(haven.lab.ha_drills.Healer: the lab's ``[controlplane]``, systemd over each controller's D-Bus,
HAProxy's runtime API, HTTP probes), each with a store of its own, and judge from HAProxy, systemd,
``/proc`` and the clients; haven's records are read only for what only haven has (its alert, and that
its probe, not systemd, found the hung replica). In the kill drill haven's deep probe of nova-api (a
token, then Nova's service list on the replica) is what keeps the restarted replica out of HAProxy
until it is warm: judged by a real request on it answering within 2 s once HAProxy has it back, and
by the clients (10 s timeout) seeing no failure but the requests in flight on the killed process.

The second test needs no lab: ``haven lab down``'s stop of a namespace's PID 1 (a SIGKILL to exactly
it: an init ignores a SIGTERM it has no handler for, and systemd takes it as "re-execute").
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from haven.controlplane.drivers.service_probes import NovaRpc, ProbeFailed
from haven.domain.controlplane import ActionKind, ActionState, ProbeKind, ProbeSpec
from haven.domain.incidents import AlertKind
from haven.lab import ha, ha_drills
from haven.lab.keystone import Account
from haven.lab.state import alive, record, stop_processes
from servers.nova import NovaLab


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


# A request the kill did not catch is answered within this. Not longer: at load 18-31 (2026-12-07),
# without haven, the restarted replica's first two answers took 10-12 s (HAProxy: 0 ms queued) and at
# 24 over 30 s, with or without a per-server cap; a replica that slow is a failure to see
# (docs/controlplane.md). haven's deep probe now keeps it out of HAProxy until it is warm.
CLIENT_TIMEOUT_S = 10.0


def test_kill_9_of_a_nova_api_replica_costs_only_the_requests_in_flight_on_it(
    nova_lab: NovaLab, ha_lab: ha.HaLab, tmp_path: Path
) -> None:
    """kill -9 of nova-api@ctl-1 under 2 clients (10 s timeout) with haven's control plane running:
    systemd restarts it (Restart=on-failure); haven takes its member out and puts it back only once its
    deep probe (a token, then Nova's service list on the replica) has passed, so the restarted replica's
    first requests are not its cold ones (HAProxy's own check, ``GET /``, passes seconds before that)."""
    state = ha.servers_state(ha_lab)
    backends = ("keystone", "nova_api", "keystone_kolla", "nova_api_kolla")  # and Kolla's anchor
    expected = {(b, c.host) for b in backends for c in ha_lab.controllers}
    assert set(state) == expected
    _wait(lambda: _all_up(ha_lab), 30, "every member UP before the drill")
    # A token through Keystone's frontend, then servers listed through nova-api's, in a loop.
    password = (nova_lab.folder / "keystone" / "admin-password").read_text().strip()
    token = Account(ha_lab.frontend_url("keystone") + "/v3", "admin", password, "admin").token()
    url = ha_lab.frontend_url("nova-api") + "/v2.1/servers"
    # Warm: a replica's first server lists after its start take seconds (its caches, its database
    # connections); the drill is a kill in a serving cluster.
    for ctl in ha_lab.controllers:
        direct = f"http://{ctl.address}:{ha_lab.ports['nova-api']}/v2.1/servers"
        _wait(lambda direct=direct: _quick(direct, token), 60, f"nova-api on {ctl.host} to answer within 2 s")
    answers: list[int] = []
    errors: list[tuple[float, str]] = []  # (when the request was sent, what went wrong)
    slow: list[tuple[float, float]] = []  # (when sent, seconds) of answers slower than 2 s
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = http.get(url, headers={"X-Auth-Token": token}).status_code
                except httpx.HTTPError as exc:
                    errors.append((sent, repr(exc)))
                    continue
                if time.monotonic() - sent > 2.0:
                    slow.append((sent, time.monotonic() - sent))
                answers.append(status)
                if status != 200:
                    errors.append((sent, f"HTTP {status}"))

    ctl = ha_lab.controller("ctl-1")
    unit = "nova-api.service"
    before = ha_drills.unit_status(ctl, unit)
    victim = ha.main_pid(ctl, unit)
    victim_started = record("victim", victim, Path("/dev/null"))
    loaders = [threading.Thread(target=client) for _ in range(2)]
    samples: list[tuple[float, str, str]] = []  # (s after the kill, member admin, operational)
    with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
        time.sleep(2.0)  # steady: every probe passes, nothing to do
        assert healer.actions() == []
        for thread in loaders:
            thread.start()
        try:
            time.sleep(1.0)
            count = len(answers)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            back_s = warm = None
            direct = f"http://{ctl.address}:{ha_lab.ports['nova-api']}"
            while time.monotonic() - killed < 60:
                admin, op = ha.servers_state(ha_lab)[("nova_api", "ctl-1")]
                samples.append((round(time.monotonic() - killed, 1), admin, op))
                restarted = ha_drills.unit_status(ctl, unit).invocation_id != before.invocation_id
                if restarted and (admin, op) == ("ready", "up"):
                    back_s = time.monotonic() - killed
                    # The replica, as HAProxy sends it traffic again, answers a real request directly
                    # (its first with this token: keystonemiddleware validates it once per process,
                    # 1.5-7 s at load 10-11 when the deep probe has warmed the rest).
                    sent = time.monotonic()
                    answer = _answer(f"{direct}/v2.1/servers", token, CLIENT_TIMEOUT_S)
                    warm = (round(time.monotonic() - sent, 2), answer)
                    break
                time.sleep(0.2)
            time.sleep(3.0)  # the clients' next requests go to it too
        finally:
            stop.set()
            for thread in loaders:
                thread.join(CLIENT_TIMEOUT_S + 5)  # each client's last request answered or timed out
        actions = [(a.kind, a.reason) for a in healer.actions("nova-api", "ctl-1")]
    outs = [s for s in samples if s[1:] != ("ready", "up")]
    print(f"\nnova-api@ctl-1 killed: back at {back_s} s (warm: {warm}); {len(answers)} answers, slow after "
          f"the kill {[(round(t - killed, 1), round(d, 1)) for t, d in slow if t > killed]}, errors "
          f"{[(round(t - killed, 1), e[:80]) for t, e in errors]}; haven: "
          f"{[(k.value, r[:60]) for k, r in actions]}; HAProxy {samples[::5]}")  # fmt: skip
    assert not any(thread.is_alive() for thread in loaders), "a client's last request never ended"
    assert not alive(victim_started), "the killed process is gone"
    assert back_s is not None, f"not back within 60 s: {samples[-5:]}, {actions}"
    assert outs, samples  # out of HAProxy's rotation at some point (HAProxy's check or haven)
    assert ha.unit_state(ctl, unit)[0] == "active"
    assert ha.main_pid(ctl, unit) != victim  # a new process (systemd's Restart=, or haven's restart)
    assert warm is not None and warm[1] == "200", f"back in HAProxy, then a real request on it: {warm}"
    assert len(answers) > count, "the client kept getting answers during the drill"
    # A request the killed process had begun to answer is lost with it (HAProxy cannot send it elsewhere
    # once the response started: the clean-clone run of 2026-12-06 saw one, "received 0 bytes, expected
    # 15"); at most one per client, sent before the kill. Every request after the kill is answered.
    in_flight = [e for e in errors if e[0] <= killed and "closed connection" in e[1]]
    assert len(in_flight) <= len(loaders) and [e for e in errors if e not in in_flight] == [], (
        f"killed at {killed:.2f}, back after {back_s} s: {errors[:5]}"
    )


def _answer(url: str, token: str, timeout_s: float) -> str:
    """The status of a GET with ``token``, or what went wrong."""
    try:
        response = httpx.get(url, headers={"X-Auth-Token": token}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return repr(exc)
    return (
        str(response.status_code)
        if response.status_code == 200
        else f"{response.status_code} {response.text[:120]}"
    )


def _quick(url: str, token: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(url, headers={"X-Auth-Token": token}, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def _token(nova_lab: NovaLab, cluster: ha.HaLab) -> str:
    password = (nova_lab.folder / "keystone" / "admin-password").read_text().strip()
    return Account(cluster.frontend_url("keystone") + "/v3", "admin", password, "admin").token()


def _all_up(cluster: ha.HaLab) -> bool:
    return all(
        admin == "ready" and op == "up"
        for (backend, _host), (admin, op) in ha.servers_state(cluster).items()
        if not backend.endswith("_kolla")
    )


def _wait(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.2)


def test_a_hung_nova_api_replica_is_found_by_haven_probe_drained_restarted_and_readied(
    nova_lab: NovaLab, ha_lab: ha.HaLab, tmp_path: Path
) -> None:
    """SIGSTOP of nova-api@ctl-2 (master and worker): systemd still says active; haven's HTTP probe
    times out, haven drains it from HAProxy, restarts it and returns it once its probe passes."""
    _wait(lambda: _all_up(ha_lab), 30, "every member UP before the drill")
    ctl = ha_lab.controller("ctl-2")
    unit = "nova-api.service"
    before = ha_drills.unit_status(ctl, unit)
    url = ha_lab.frontend_url("nova-api") + "/v2.1/servers"
    samples: list[tuple[float, str, str, str]] = []  # (s, member admin, unit ActiveState, processes)
    with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
        time.sleep(2.0)  # steady: every probe passes, nothing to do
        assert healer.actions() == []
        with ha_drills.Load(url, _token(nova_lab, ha_lab), clients=2) as load:
            time.sleep(1.0)
            pids = ha_drills.hang(ctl, unit)
            hung = time.monotonic()
            try:
                back_s = None
                while time.monotonic() - hung < 45:
                    admin, op = ha.servers_state(ha_lab)[("nova_api", "ctl-2")]
                    status = ha_drills.unit_status(ctl, unit)
                    procs = "".join(sorted(set(ha_drills.proc_states(pids).values())))
                    samples.append((round(time.monotonic() - hung, 1), admin, status.active.value, procs))
                    if status.invocation_id != before.invocation_id and (admin, op) == ("ready", "up"):
                        back_s = time.monotonic() - hung
                        break
                    time.sleep(0.2)
                time.sleep(1.0)
            finally:
                ha_drills.resume(pids)
        actions = [(a.kind, a.state) for a in healer.actions("nova-api", "ctl-2")]
        drain = next(a for a in healer.actions("nova-api", "ctl-2") if a.kind is ActionKind.DRAIN)
    print(f"\nnova-api@ctl-2 hung: back at {back_s} s; {load.answers} answers, {len(load.errors)} errors, "
          f"slowest {load.slowest[0]:.1f} s; timeline {samples[::5]}")  # fmt: skip
    # systemd still called it active, its processes stopped, when it left HAProxy: only haven's probe saw.
    assert any(adm != "ready" and act == "active" and procs == "T" for _t, adm, act, procs in samples), (
        samples
    )
    assert "unhealthy" in drain.reason, drain
    assert back_s is not None, f"not back within 45 s: {samples[-5:]}"
    assert back_s < 40
    assert ha_drills.proc_states(pids) == dict.fromkeys(pids, "gone")  # the hung processes were ended
    after = ha_drills.unit_status(ctl, unit)
    # haven restarted it (its RESTART below), SIGKILLing it first (hung): systemd's Restart= may take
    # that kill for a crash and restart it once itself before haven's restart job runs (seen at load
    # 11 with the deep probe; tests/lab/test_ha_lab_workers.py allows the same). A SIGSTOPped process
    # alone is never restarted by systemd.
    assert after.n_restarts <= before.n_restarts + 1
    assert actions == [
        (ActionKind.DRAIN, ActionState.DONE),
        (ActionKind.MAINT, ActionState.DONE),
        (ActionKind.RESTART, ActionState.DONE),
        (ActionKind.READY, ActionState.DONE),
    ]
    assert _answers(f"http://{ctl.address}:{ha_lab.ports['nova-api']}/")
    assert load.errors == [], load.errors[:5]


def test_a_crash_looping_keystone_replica_backs_off_stops_at_the_limit_with_one_alert_and_stays_out(
    ha_lab: ha.HaLab, tmp_path: Path
) -> None:
    """keystone@ctl-1 fails at every start (Restart=no: its restarts are haven's): haven restarts it
    with growing gaps, stops at the crash-loop limit (5 within 600 s) with one alert, keeps it in
    maintenance; once mended and started by hand, haven returns it."""
    _wait(lambda: _all_up(ha_lab), 30, "every member UP before the drill")
    ctl = ha_lab.controller("ctl-1")
    api = next(a for a in ha_lab.apis if a.service == "keystone")
    url = ha_lab.frontend_url("keystone") + "/v3"
    starts: list[float] = []  # when systemd had a new invocation of the unit (seconds after the kill)
    members: list[str] = []  # the member's admin state in HAProxy, each change
    with ha_drills.Healer(ha_lab, tmp_path / "haven") as healer:
        time.sleep(2.0)
        assert healer.actions() == []
        try:
            with ha_drills.Load(url, "", clients=2, timeout_s=10.0) as load:
                ha_drills.break_replica(ctl, api)
                seen = ha_drills.unit_status(ctl, api.unit).invocation_id
                os.kill(ha.main_pid(ctl, api.unit), signal.SIGKILL)
                killed = time.monotonic()
                held_at: float | None = None
                while time.monotonic() - killed < 40 and held_at is None:
                    status = ha_drills.unit_status(ctl, api.unit)
                    if status.invocation_id != seen:
                        seen = status.invocation_id
                        starts.append(round(time.monotonic() - killed, 2))
                    admin = ha.servers_state(ha_lab)[("keystone", "ctl-1")][0]
                    if not members or members[-1] != admin:
                        members.append(admin)
                    if any(a.kind is AlertKind.REPLICA_CRASH_LOOP for a in healer.alerts()):
                        held_at = time.monotonic() - killed
                    time.sleep(0.1)
                _wait(lambda: ha_drills.unit_status(ctl, api.unit).active.value == "failed", 10, "failed")
                time.sleep(3.0)  # held: no restart after the alert
                final = ha_drills.unit_status(ctl, api.unit)
                member = ha.servers_state(ha_lab)[("keystone", "ctl-1")][0]
            restarts = [
                a.created_at for a in healer.actions("keystone", "ctl-1") if a.kind is ActionKind.RESTART
            ]
            alerts = [(a.kind, a.host) for a in healer.alerts()]
        finally:
            ha_drills.mend_replica(ctl, api)
        # Mended and started by hand: haven returns it once its probe passes.
        _wait(lambda: ha.servers_state(ha_lab)[("keystone", "ctl-1")] == ("ready", "up"), 30, "keystone back")
    print(f"\nkeystone@ctl-1 crash loop: starts at {starts} s, held at {held_at} s; "
          f"{load.answers} answers, {len(load.errors)} errors")  # fmt: skip
    # One alert for the one root event (the service left short by it is folded into it).
    assert alerts == [(AlertKind.REPLICA_CRASH_LOOP, "keystone@ctl-1")], healer.alerts()
    assert len(restarts) == 5, restarts
    gaps = [b - a for a, b in itertools.pairwise(restarts)]
    # Exponential back-off: each restart waited at least 1, 2, 4, 8 s after the previous one (longer
    # when the start took longer to fail).
    assert all(gap >= delay - 0.05 for gap, delay in zip(gaps, (1, 2, 4, 8), strict=True)), gaps
    # systemd's own account: the 5 starts haven asked for, none after the hold; failed, out of HAProxy.
    assert len(starts) == 5, starts
    assert final.active.value == "failed" and final.invocation_id == seen
    assert held_at is not None
    assert members in (["ready", "drain", "maint"], ["ready", "maint"]) and member == "maint", members
    # The other replica served every request, but one that keystone@ctl-1 had begun to answer when it was
    # killed (the clean-clone run of 2026-12-06 saw one: "received 0 bytes, expected 250", gunicorn having
    # sent the headers): at most one per client, sent before the kill.
    lost = load.cut_by(killed)
    assert [e for e in load.errors if e not in lost] == [], (killed, load.errors[:5])


def test_the_nova_rpc_probe_on_the_real_conductor_and_scheduler_and_its_close_while_the_broker_hangs(
    nova_lab: NovaLab,
) -> None:
    """The RPC ping (haven.controlplane.drivers.service_probes.NovaRpc) against the session lab's real
    nova-conductor and nova-scheduler (their ``host`` is this machine's name): they answer; a host with
    no service, and the conductor SIGSTOPped, give no answer within the timeout; continued, it answers
    again. Then ``close`` with the broker itself SIGSTOPped returns within its guard (oslo.messaging's
    own cleanup joins a thread that waits on the hung broker for ever)."""
    conf = (nova_lab.folder / "nova" / "nova.conf").read_text()
    environ = {
        "URL": next(line.split(" = ", 1)[1] for line in conf.splitlines() if line.startswith("transport_url"))
    }
    processes = {p.name: p for p in nova_lab.state.processes}
    host = socket.gethostname()

    def spec(topic: str) -> ProbeSpec:
        return ProbeSpec(ProbeKind.NOVA_RPC, 0, topic=topic, transport_url_env="URL", timeout_s=5.0)

    rpc = NovaRpc()
    try:
        assert rpc.ping(host, spec("conductor"), environ).startswith(f"conductor on {host} answered")
        assert rpc.ping(host, spec("scheduler"), environ).startswith(f"scheduler on {host} answered")
        with pytest.raises(ProbeFailed, match="no answer within 5 s"):
            rpc.ping("no-such-host", spec("conductor"), environ)
        conductor = processes["nova-conductor"]
        assert alive(conductor)
        os.killpg(conductor.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ProbeFailed, match=f"conductor on {host}: no answer within 5 s"):
                rpc.ping(host, spec("conductor"), environ)
        finally:
            os.killpg(conductor.pid, signal.SIGCONT)
        _wait(lambda: _pings(rpc, host, spec("conductor"), environ), 30, "the conductor to answer again")
    finally:
        broker = processes["rabbitmq-server"]
        os.killpg(broker.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            rpc.close(timeout_s=3.0)
            closed_in = time.monotonic() - started
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
    assert closed_in < 5.0  # the guard's 3 s, not for ever


def _pings(rpc: NovaRpc, host: str, spec: ProbeSpec, environ: dict[str, str]) -> bool:
    try:
        rpc.ping(host, spec, environ)
    except ProbeFailed:
        return False
    return True


def test_lab_down_kills_a_namespace_pid1_at_once(tmp_path: Path) -> None:
    """A PID namespace's init ignores a SIGTERM it has no handler for: down must SIGKILL exactly it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a PID namespace)")
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "sleep", "300"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 5
        children: list[str] = []
        while not children and time.monotonic() < deadline:
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
            time.sleep(0.02)
        entry = record("systemd@ctl-x", int(children[0]), tmp_path / "log", namespace=True)
        started = time.monotonic()
        assert stop_processes([entry], grace_s=20) == ["systemd@ctl-x"]
        assert time.monotonic() - started < 2.0  # SIGKILL at once, not a SIGTERM ignored for 20 s
        assert not alive(entry)
        assert unshare.wait(5) != 0  # unshare reports its child's death by SIGKILL
    finally:
        if unshare.poll() is None:
            unshare.kill()
            unshare.wait(5)
