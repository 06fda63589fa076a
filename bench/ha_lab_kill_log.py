"""tests/lab/test_ha_lab.py's kill -9 drill on a running HA lab, through a second HAProxy that logs every
request (HAProxy's httplog: queue time Tw, server time Tr, retries, queue lengths), with or without a
per-server ``maxconn``: what the in-flight and following requests saw, from HAProxy's side.

    nice -n 19 .venv/bin/python bench/ha_lab_kill_log.py --folder LAB --maxconn 4 --out /tmp/x/m4
    nice -n 19 .venv/bin/python bench/ha_lab_kill_log.py --folder LAB --maxconn 0 --out /tmp/x/m0

The second HAProxy has the lab's haven backends for Keystone and nova-api (the same replicas, its own
frontends and admin socket, haven.lab.ha's server line), so the lab's own HAProxy is left alone. Two
clients (the test's: 10 s timeout) list servers through it; ctl-1's nova-api is killed with SIGKILL
after 1 s; systemd restarts it (Restart=on-failure). Prints the client errors, the answers slower than
2 s and every HAProxy log line that is not a quick plain 200 (OUT/haproxy.log has them all; OUT/stats.txt
HAProxy's show stat every 0.2 s: status, qcur, scur, check_status). Found the kill test's 10 s timeouts
to be the returning replica's first answers, not the cap (docs/controlplane.md, 2026-12-07).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx

from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.lab import ha, lab
from haven.lab.keystone import Account
from haven.lab.process import free_port


def _config(cluster: ha.HaLab, socket: str, frontends: dict[str, int], maxconn: int) -> str:
    lines = [
        "global", f"    stats socket {socket} mode 600 level admin", "    log stdout format raw local0 info",
        "defaults", "    mode http", "    log global", "    option httplog", "    option redispatch",
        "    retries 3", "    retry-on conn-failure empty-response response-timeout",
        "    timeout connect 1s", "    timeout client 120s", "    timeout server 120s",
        "    timeout check 2s",
    ]  # fmt: skip
    for api in cluster.apis:
        if api.service not in frontends:
            continue
        cap = f"maxconn {maxconn} " if maxconn else ""
        lines += [f"frontend {api.backend}", f"    bind 127.0.0.1:{frontends[api.service]}",
                  f"    default_backend {api.backend}", f"backend {api.backend}",
                  f"    option httpchk GET {api.check_path}", f"    timeout queue {ha.TIMEOUT_QUEUE}",
                  *(f"    server {c.host} {c.address}:{cluster.ports[api.service]} {cap}{ha._CHECK}"
                    for c in cluster.active)]  # fmt: skip
    return "\n".join(lines) + "\n"


def _notable(log: Path) -> list[str]:
    out = []
    for line in log.read_text().splitlines():
        fields = line.split()
        if len(fields) < 12 or not fields[0][:1].isdigit() or "/" not in fields[3]:
            if "ctl-" in line and ("DOWN" in line or " UP" in line) and not line.startswith("["):
                out.append("    " + line[:140])
            continue
        timers = fields[4].split("/")
        total = int(timers[4]) if timers[4].lstrip("+-").isdigit() else -1
        if (
            total > 2000
            or fields[9] != "----"
            or fields[10].split("/")[-1] != "0"
            or fields[5] not in ("200", "201")
        ):
            # time, backend/server, Tq/Tw/Tc/Tr/Ta, status, termination, conns/retries, srv/backend queue
            out.append(
                " ".join(
                    [fields[1][13:-1], fields[3], fields[4], fields[5], fields[9], fields[10], fields[11]]
                )
            )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a running HA lab")
    parser.add_argument("--maxconn", type=int, default=ha.SERVER_MAXCONN, help="per server; 0: none")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the logs")
    args = parser.parse_args()
    state = lab.running(args.folder)
    if state is None or not state.ha:
        print(f"no HA lab runs in {args.folder}")
        return 2
    cluster = ha.from_state(state.ha)
    args.out.mkdir(parents=True, exist_ok=True)
    socket = str(args.out / "haproxy.sock")
    frontends = {"keystone": free_port(), "nova-api": free_port()}
    (args.out / "haproxy.cfg").write_text(_config(cluster, socket, frontends, args.maxconn))
    started = time.monotonic()

    def now() -> float:
        return round(time.monotonic() - started, 2)

    with open(args.out / "haproxy.log", "wb") as log:
        proxy = subprocess.Popen([ha.HAPROXY, "-db", "-f", str(args.out / "haproxy.cfg")], stdout=log,
                                 stderr=subprocess.STDOUT)  # fmt: skip
    runtime = HAProxyRuntime(socket)
    try:
        while not Path(socket).exists():
            time.sleep(0.1)
        while not all(op == "2" for op in _ops(runtime)):
            time.sleep(0.3)
        password = (args.folder / "keystone" / "admin-password").read_text().strip()
        token = Account(f"http://127.0.0.1:{frontends['keystone']}/v3", "admin", password, "admin").token()
        for c in cluster.active:  # warm, as the test does
            _warm(f"http://{c.address}:{cluster.ports['nova-api']}/v2.1/servers", token)
        url = f"http://127.0.0.1:{frontends['nova-api']}/v2.1/servers"
        answers: list[tuple[float, float, int]] = []
        errors: list[tuple[float, float, int, str]] = []
        stop = threading.Event()

        def client(index: int) -> None:
            with httpx.Client(timeout=10.0) as http:
                while not stop.is_set():
                    sent = now()
                    try:
                        status = http.get(url, headers={"X-Auth-Token": token}).status_code
                    except httpx.HTTPError as exc:
                        errors.append((sent, now(), index, repr(exc)))
                        continue
                    answers.append((sent, now(), status))
                    if status != 200:
                        errors.append((sent, now(), index, f"HTTP {status}"))

        victim = ha.main_pid(cluster.controller("ctl-1"), "nova-api.service")
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        stats = []
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        killed = now()
        while now() - killed < 40:
            text = asyncio.run(runtime.command("show stat -1 4 -1")).splitlines()
            header = text[0][2:].split(",")
            for line in text[1:]:
                row = dict(zip(header, line.split(","), strict=False))
                if row.get("pxname") == "nova_api":
                    stats.append(
                        (now(), row["svname"], row["status"], row["qcur"], row["scur"], row["check_status"])
                    )
            time.sleep(0.2)
        stop.set()
        for thread in threads:
            thread.join(15)
        (args.out / "stats.txt").write_text("\n".join(map(str, stats)) + "\n")
        queued = max((int(s[3] or 0) for s in stats), default=0)
        print(json.dumps({"maxconn": args.maxconn, "killed_at": killed, "answers": len(answers),
                          "errors": errors, "slower_than_2s": [a for a in answers if a[1] - a[0] > 2],
                          "qcur_max": queued, "load": os.getloadavg()[0]}))  # fmt: skip
    finally:
        proxy.terminate()
        proxy.wait(10)
    print("\n".join(_notable(args.out / "haproxy.log")))
    return 0


def _ops(runtime: HAProxyRuntime) -> list[str]:
    text = asyncio.run(runtime.command("show servers state nova_api"))
    return [line.split()[5] for line in text.splitlines()[2:] if line.strip()]


def _warm(url: str, token: str) -> None:
    for _ in range(300):
        try:
            if httpx.get(url, headers={"X-Auth-Token": token}, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


if __name__ == "__main__":
    raise SystemExit(main())
