"""Raw symptom alerts per notification delivered, on the lab: issue 13's "≥ 10 raw symptom alerts per
notification sent, with no injected root cause left unnotified".

On a running plain lab (``--folder``), this starts:

- Debian's real Alertmanager (``prometheus-alertmanager``) on a free loopback port in a temporary folder,
  with deploy/alertmanager/haven.yml's route (``group_by: [cause, alertname]``) and inhibition rule
  (a ``haven_role="cause"`` alert mutes the ``haven_role="symptom"`` alerts of an equal ``cause``), its
  group_wait / group_interval / repeat_interval set by the flags (printed), and one receiver: a webhook
  this script serves, which records every POST Alertmanager makes (``send_resolved: false``: each POST is
  a page about firing alerts);
- a recording pass-through in front of Alertmanager's API: haven posts to it, it records each request's
  alerts and hands the request on unchanged (what haven sent, read off the wire, not haven's bookkeeping);
- the real ``haven serve`` on the lab (as bench/explain.py's ``--control-minutes`` runs it: the lab's
  haven.toml with a ``[canary]``, its own database and home), with ``[diagnosis] alertmanager_url`` at the
  pass-through, ``transport_url`` the lab's bus (as an operator gives it for Nova's notifications; serve
  then also looks at the bus: RabbitMQ unreachable is evidence) and haven's shipped defaults for the rest
  (resend 60 s, settle 20 s, incident 900 s); its
  canary has its own tag, so it and the bench's own canary rounds (below) never delete each other's servers;
- API traffic beside it: a server list every ``--traffic`` s through the lab's Keystone.

Then each fault of ``--only`` (haven.drill.faults' catalogue), one at a time: the lab is proven whole
(haven.drill.faults_run.FaultRun.prove_whole: its processes, holds, BMCs and a canary round of the
bench's own, in a store of its own), the fault is injected and left ``--fault-s`` seconds while serve's
canary (every ``--interval`` s) and the traffic run, then healed and the lab proven whole again. The
fault's window runs from its injection to the next injection (the last: ``--tail-s`` after its heal,
time for haven's settle and resend and Alertmanager's group_wait).

Counted per window (``count``, pure):

- **raw symptom alerts**: the distinct ``HavenSymptom`` alerts haven posted firing whose first firing post
  fell in the window, distinct by their labels without ``cause``. Each is one failed or slow check (a
  canary boot, a token, a server list, a zone list, an image read: the ``explanation`` label is its
  record), so it is the alert a per-symptom alerting pages once: it has no cause label, and a symptom
  haven ranked again under another cause is still one failed check (``relabelled`` counts those). haven's
  re-sends of the same alert (every 60 s) are not new symptoms; a post that resolves one is not counted.
- **notifications**: every POST Alertmanager delivered to the webhook in the window, and the firing
  alerts in each (by alertname and cause);
- **root named**: whether a delivered notification in the window holds a firing ``haven_role="cause"``
  alert with ``cause`` = the fault's root (``HavenRootCause``); when not, whether such an alert was
  already firing at the injection (posted earlier, not yet ended: its page was sent before the window).

Prints a table per fault, the ratio overall and per fault, and the unnotified roots; ``--json`` prints
the report instead; ``--out`` also writes it (with every post and delivery, for a recount).

Run (a plain lab: ``haven lab up --folder F``):
    nice -n 19 .venv/bin/python bench/alert_ratio.py --folder F \\
        --only keystone-killed,database-killed,rabbitmq-killed [--fault-s 180] [--interval 30] \\
        [--until HH:MM] [--group-wait 5s] [--group-interval 30s] [--repeat-interval 1h] [--json] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]

from haven.cli.fault_drill import LabFaults
from haven.drill.faults import FAULTS, Fault
from haven.drill.faults_run import FaultRun, RunSettings
from haven.lab.state import LabState
from haven.store import Store


def _explain_bench() -> Any:
    """bench/explain.py, loaded from its file (a bare ``import explain`` meets tests/explain under pytest)."""
    if "bench_explain" not in sys.modules:
        spec = importlib.util.spec_from_file_location("bench_explain", Path(__file__).with_name("explain.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_explain"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["bench_explain"]


_EXPLAIN = _explain_bench()
HAVEN: Path = _EXPLAIN.HAVEN
a_lab = _EXPLAIN.a_lab
say = _EXPLAIN.say
serve_toml = _EXPLAIN.serve_toml
write_report = _EXPLAIN.write_report
ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")
SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "alertmanager" / "haven.yml"
SERVE_TAG = "haven-serve"  # serve's canaries; the bench's own rounds use the default tag ("haven")
DEFAULT_FAULTS = ("keystone-killed,database-killed,rabbitmq-killed,glance-killed,placement-killed,"
                  "nova-api-hung,conductor-killed,computes-down")  # fmt: skip

# ---- the counting (pure) ------------------------------------------------------------------------------

Posted = tuple[float, Sequence[Mapping[str, Any]]]  # (received at, the postable alerts of one request)
Delivered = tuple[float, Mapping[str, Any]]  # (received at, Alertmanager's webhook body)


@dataclass(frozen=True, slots=True)
class Window:
    fault: str
    root: str  # the injected root cause: a node of haven.topology, as haven's ``cause`` label names it
    start: float  # the injection
    end: float  # the next injection (the last window: the end of the run)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def symptom_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """One raw symptom alert: its labels without haven's ``cause`` (what a per-symptom alerting has)."""
    return tuple(sorted((k, v) for k, v in labels.items() if k != "cause"))


def _firing(at: float, alert: Mapping[str, Any]) -> bool:
    return "endsAt" not in alert or _epoch(alert["endsAt"]) > at


def count(
    windows: Sequence[Window], posted: Iterable[Posted], delivered: Iterable[Delivered]
) -> dict[str, Any]:
    """Per window and overall: raw symptom alerts haven posted, notifications Alertmanager delivered,
    their ratio, and whether the injected root was named in one (module docstring)."""
    posted = sorted(posted, key=lambda p: p[0])
    delivered = sorted(delivered, key=lambda d: d[0])
    first: dict[tuple[tuple[str, str], ...], tuple[float, Mapping[str, str]]] = {}
    causes: dict[tuple[tuple[str, str], ...], set[str]] = collections.defaultdict(set)
    for at, alerts in posted:
        for alert in alerts:
            labels = alert["labels"]
            if labels.get("alertname") == "HavenSymptom" and _firing(at, alert):
                first.setdefault(symptom_key(labels), (at, labels))
                causes[symptom_key(labels)].add(labels.get("cause", ""))
    rows = [_window(w, first, causes, posted, delivered) for w in windows]
    times = [at for at, _ in first.values()] + [at for at, _ in delivered]
    outside = [at for at in times if not any(w.start <= at < w.end for w in windows)]
    symptoms = sum(r["symptoms"] for r in rows)
    notifications = sum(r["notifications"] for r in rows)
    return {
        "symptoms": symptoms,
        "notifications": notifications,
        "ratio": round(symptoms / notifications, 2) if notifications else None,
        "unnotified": [r["fault"] for r in rows if not r["root_named"]],
        "unnotified_not_firing_before": [
            r["fault"] for r in rows if not r["root_named"] and not r["root_firing_before"]
        ],
        "outside_windows": len(outside),  # symptoms first posted and notifications delivered in no window
        "faults": rows,
    }


def _window(
    w: Window,
    first: Mapping[tuple[tuple[str, str], ...], tuple[float, Mapping[str, str]]],
    causes: Mapping[tuple[tuple[str, str], ...], set[str]],
    posted: Sequence[Posted],
    delivered: Sequence[Delivered],
) -> dict[str, Any]:
    mine = {k: labels for k, (at, labels) in first.items() if w.start <= at < w.end}
    posts = [body for at, body in delivered if w.start <= at < w.end]
    firing = [a["labels"] for body in posts for a in body.get("alerts", []) if a.get("status") == "firing"]

    def names(labels: Mapping[str, str]) -> bool:
        return labels.get("haven_role") == "cause" and labels.get("cause") == w.root

    before = [
        alert for at, alerts in posted if at < w.start
        for alert in alerts if names(alert["labels"]) and _firing(w.start, alert)
    ]  # fmt: skip
    return {
        "fault": w.fault,
        "root": w.root,
        "start": w.start,
        "end": w.end,
        "symptoms": len(mine),
        "by_symptom": dict(collections.Counter(_said(labels) for labels in mine.values())),
        "relabelled": sum(len(causes[k]) > 1 for k in mine),
        "notifications": len(posts),
        "notified": dict(collections.Counter(_named(a) for a in firing)),
        "ratio": round(len(mine) / len(posts), 2) if posts else None,
        "root_named": any(names(a) for a in firing),
        "root_firing_before": bool(before),
    }


def _named(labels: Mapping[str, str]) -> str:
    return f"{labels.get('alertname')} {labels.get('cause') or '-'}"


def _said(labels: Mapping[str, str]) -> str:
    return f"{labels.get('symptom', '?')} -> {labels.get('cause') or 'no cause'}"


# ---- the recorders: Alertmanager's webhook, and a pass-through in front of its API ---------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    """A loopback HTTP server in a thread: each POST's JSON body kept with its arrival time; with
    ``forward``, every request handed on to that URL and its answer returned (a recording pass-through)."""

    def __init__(self, forward: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.posts: list[tuple[float, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if method == "POST":
                    with contextlib.suppress(ValueError):
                        recorder.posts.append((time.time(), json.loads(body)))
                status, kind, text = 200, "application/json", b"{}"
                if forward:
                    try:
                        answer = httpx.request(method, forward + self.path, content=body, timeout=10.0,
                                               headers={"Content-Type": "application/json"})  # fmt: skip
                        status, text = answer.status_code, answer.content
                        kind = answer.headers.get("Content-Type", kind)
                    except httpx.HTTPError as exc:
                        status, text = 502, str(exc).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# ---- Alertmanager and haven serve -------------------------------------------------------------------------


def alertmanager_config(hook: str, wait: str, interval: str, repeat: str) -> dict[str, Any]:
    """The shipped route and inhibition, with these waits and one webhook receiver."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    config["route"].update(group_wait=wait, group_interval=interval, repeat_interval=repeat)
    config["receivers"] = [{"name": "default", "webhook_configs": [{"url": hook, "send_resolved": False}]}]
    return config


@contextlib.contextmanager
def alertmanager(folder: Path, hook: str, args: argparse.Namespace) -> Iterator[str]:
    """Debian's Alertmanager on a free loopback port, its webhook ``hook``/hook; its URL."""
    if not ALERTMANAGER.exists():
        raise SystemExit(f"{ALERTMANAGER} is missing: apt-get install prometheus-alertmanager")
    config = alertmanager_config(f"{hook}/hook", args.group_wait, args.group_interval, args.repeat_interval)
    port = free_port()
    (folder / "alertmanager.yml").write_text(yaml.safe_dump(config))
    argv = [str(ALERTMANAGER), f"--config.file={folder / 'alertmanager.yml'}",
            f"--storage.path={folder / 'am-data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address="]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with (folder / "alertmanager.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Alertmanager did not start: see {folder / 'alertmanager.log'}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_config(state: LabState, interval_s: float, alertmanager_url: str) -> str:
    """The lab's haven.toml with serve's ``[canary]`` (its own tag, a bounded boot) and ``[diagnosis]``: the
    Alertmanager, and the cloud's bus as an operator gives it for Nova's notifications (the lab's nova.conf
    ``transport_url``; serve then looks at the bus too, haven.evidence.broker)."""
    base = serve_toml(state, interval_s)
    if "\n[diagnosis]" in base:
        raise SystemExit("the lab's haven.toml already has a [diagnosis]: use a plain lab (haven lab up)")
    nova_conf = Path(state.folder) / "nova" / "nova.conf"
    conf = nova_conf.read_text() if nova_conf.exists() else ""
    found = re.search(r"^transport_url = (rabbit://\S+)$", conf, re.M)
    bus = f'transport_url = "{found[1]}"\n' if found else ""
    return (
        f'{base}tag = "{SERVE_TAG}"\nboot_timeout_s = 40.0\ndelete_timeout_s = 30.0\n'
        f'[diagnosis]  # bench/alert_ratio.py\nalertmanager_url = "{alertmanager_url}"\n{bus}'
    )


@contextlib.contextmanager
def serve(state: LabState, home: Path, interval_s: float, alertmanager_url: str) -> Iterator[dict[str, Any]]:
    """``haven serve`` on the lab; the dict it yields gets ``exited_early`` (its exit code, or None)."""
    config = home / "haven.toml"
    config.write_text(serve_config(state, interval_s, alertmanager_url))
    config.chmod(0o600)  # it holds the BMCs' password, as the lab's own
    db = f"sqlite:///{home / 'haven.db'}"
    argv = [str(HAVEN), "--home", str(home), "--config", str(config), "--db", db, "serve", "--cloud", "lab"]
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": state.files["clouds.yaml"]}
    with (home / "serve.log").open("w") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    found: dict[str, Any] = {"exited_early": None}
    try:
        yield found
    finally:
        found["exited_early"] = process.poll()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def traffic(state: LabState, every_s: float) -> Iterator[collections.Counter[str]]:
    """A server list every ``every_s`` through the lab's Keystone, in a thread; what each call did."""
    seen: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def run() -> None:
        handle = LabFaults(state)
        while not stop.is_set():
            began = time.monotonic()
            try:
                handle.call("compute", "GET", "/servers")
                seen["ok"] += 1
            except Exception as exc:  # counted: API traffic that failed is part of what the run saw
                seen[f"failed: {type(exc).__name__}"] += 1
            stop.wait(max(0.0, every_s - (time.monotonic() - began)))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=30)


# ---- the run ----------------------------------------------------------------------------------------------


async def injections(
    state: LabState, faults: Sequence[Fault], args: argparse.Namespace, notes: dict[str, dict[str, Any]]
) -> list[Window]:
    """Each fault in turn: proven whole, injected for ``fault_s``, healed; their windows. ``notes`` gets
    each fault's load at its injection and heal, and what went wrong (injection, heal, lab not whole)."""
    handle = LabFaults(state)
    windows: list[tuple[Fault, float]] = []
    with tempfile.TemporaryDirectory() as tmp, Store.open(f"sqlite:///{tmp}/bench.db") as store:
        bench = FaultRun(handle, store, RunSettings(whole_timeout_s=args.whole_timeout), say)
        say(f"warm-up: {args.warmup_s:g} s for serve to lead and run its first rounds")
        await asyncio.sleep(args.warmup_s)
        for i, fault in enumerate(faults, 1):
            if args.until is not None and time.time() >= args.until:
                say(f"--until passed: {len(faults) - i + 1} faults not injected")
                break
            wrong = await bench.prove_whole()
            if wrong:
                notes["not whole"] = {"before": fault.name, "wrong": wrong[:3]}
                say(f"[{i}/{len(faults)}] {fault.name}: lab not whole ({'; '.join(wrong[:3])}); stopping")
                break
            say(f"[{i}/{len(faults)}] {fault.name}: injecting for {args.fault_s:g} s")
            windows.append((fault, time.time()))
            notes[fault.name] = await one(fault, handle, args.fault_s)
        wrong = await bench.prove_whole()
        notes["after the last"] = {"whole": not wrong, "wrong": wrong[:3], "load": os.getloadavg()[0]}
        say(f"the lab after the last fault: {'whole' if not wrong else '; '.join(wrong[:3])}")
        say(f"tail: {args.tail_s:g} s for haven's settle and resend and Alertmanager's group_wait")
        await asyncio.sleep(args.tail_s)
    end = time.time()
    starts = [at for _, at in windows] + [end]
    return [Window(f.name, f.root, at, starts[i + 1]) for i, (f, at) in enumerate(windows)]


async def one(fault: Fault, handle: LabFaults, fault_s: float) -> dict[str, Any]:
    """One fault injected, left ``fault_s``, healed; the load at both ends and any error."""
    note: dict[str, Any] = {"load_at_inject": round(os.getloadavg()[0], 2)}
    try:
        heal = await asyncio.to_thread(fault.inject, handle)
    except Exception as exc:  # reported: the window then holds no fault
        note["inject_error"] = f"{type(exc).__name__}: {exc}"
        say(f"{fault.name}: injection failed: {note['inject_error']}")
        return note
    try:
        await asyncio.sleep(fault_s)
    finally:
        note["load_at_heal"] = round(os.getloadavg()[0], 2)
        say(f"{fault.name}: healing (load {note['load_at_heal']:.1f})")
        try:
            await asyncio.to_thread(heal)
        except Exception as exc:
            note["heal_error"] = f"{type(exc).__name__}: {exc}"
            say(f"{fault.name}: heal failed: {note['heal_error']}")
    return note


def run(args: argparse.Namespace, faults: Sequence[Fault]) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="haven-bench-alerts-"))
    notes: dict[str, dict[str, Any]] = {"start": {"load": os.getloadavg()[0]}}
    say(f"Alertmanager group_wait {args.group_wait}, group_interval {args.group_interval}, repeat_interval "
        f"{args.repeat_interval}; serve's canary every {args.interval:g} s, a server list every "
        f"{args.traffic:g} s; files in {home}")  # fmt: skip
    with (
        a_lab(args.folder) as state,
        Recorder() as hook,
        alertmanager(home, hook.url, args) as am_url,
        Recorder(forward=am_url) as wire,
        serve(state, home, args.interval, wire.url) as served,
        traffic(state, args.traffic) as calls,
    ):
        windows = asyncio.run(injections(state, faults, args, notes))
    posted = [(at, body) for at, body in wire.posts if isinstance(body, list)]
    found = count(windows, posted, hook.posts)
    found.update(
        settings={"group_wait": args.group_wait, "group_interval": args.group_interval,
                  "repeat_interval": args.repeat_interval, "canary_interval_s": args.interval,
                  "fault_s": args.fault_s, "traffic_every_s": args.traffic,
                  "haven": "alertmanager_resend_s 60, alertmanager_settle_s 20, incident_s 900 (defaults)"},
        server_lists=dict(calls),
        notes=notes, load_1min=_loads(notes),
        serve_exited_early=served["exited_early"], posted=posted, delivered=hook.posts, home=str(home),
    )  # fmt: skip
    return found


def _loads(notes: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    seen = [v for note in notes.values() for k, v in note.items() if k.startswith("load")]
    return {"min": min(seen), "median": statistics.median(seen), "max": max(seen)}


def show(found: dict[str, Any]) -> None:
    s = found["settings"]
    print(f"Alertmanager: shipped route and inhibition, group_wait {s['group_wait']}, group_interval "
          f"{s['group_interval']}, repeat_interval {s['repeat_interval']}; haven: {s['haven']}; each fault "
          f"{s['fault_s']:g} s, serve's canary every {s['canary_interval_s']:g} s")  # fmt: skip
    print(f"{'fault':<18} {'root':<15} {'symptoms':>8} {'notified':>8} {'ratio':>6}  "
          "root named   notifications")  # fmt: skip
    for r in found["faults"]:
        named = "yes" if r["root_named"] else "before" if r["root_firing_before"] else "NO"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}"
        notified = ", ".join(f"{k} x{v}" for k, v in r["notified"].items()) or "-"
        print(f"{r['fault']:<18} {r['root']:<15} {r['symptoms']:>8} {r['notifications']:>8} {ratio:>6}  "
              f"{named:<12} {notified}")  # fmt: skip
        note = found["notes"].get(r["fault"], {})
        said = ", ".join(f"{k} {v}" for k, v in note.items())
        print(f"{'':<20}{said}")
        for what, n in sorted(r["by_symptom"].items()):
            print(f"{'':<20}{n:>3} x {what}")
    ratio = "-" if found["ratio"] is None else f"{found['ratio']:.1f}"
    load = found["load_1min"]
    print(f"overall: {found['symptoms']} raw symptom alerts, {found['notifications']} notifications: "
          f"{ratio} per notification; roots unnotified in their window {found['unnotified'] or 'none'} "
          f"(of them not already firing {found['unnotified_not_firing_before'] or 'none'}); outside any "
          f"window {found['outside_windows']}; load {load['min']:.1f} to {load['max']:.1f}; server lists "
          f"{found['server_lists']}")  # fmt: skip
    if found["serve_exited_early"] is not None:
        print(f"haven serve exited early ({found['serve_exited_early']}): see {found['home']}/serve.log")
    for key in ("not whole", "after the last"):
        if key in found["notes"]:
            print(f"{key}: {found['notes'][key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="a running plain lab (haven lab up)")
    parser.add_argument("--only", default=DEFAULT_FAULTS, help="comma-separated fault names, in order")
    parser.add_argument("--fault-s", type=float, default=180.0, help="how long each fault lasts (180)")
    parser.add_argument("--interval", type=float, default=30.0, help="serve's canary round every S s (30)")
    parser.add_argument("--traffic", type=float, default=10.0, help="a server list every S s (10)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="before the first fault (60)")
    parser.add_argument("--tail-s", type=float, default=90.0, help="after the last heal (90)")
    parser.add_argument("--whole-timeout", type=float, default=240.0, help="the lab proven whole (240)")
    parser.add_argument("--until", metavar="HH:MM", type=lambda text: _EXPLAIN.until_utc(text, time.time()),
                        help="inject no fault after this time (UTC)")  # fmt: skip
    parser.add_argument("--group-wait", default="5s")
    parser.add_argument("--group-interval", default="30s")
    parser.add_argument("--repeat-interval", default="1h", help="longer than a run: no repeats (1h)")
    parser.add_argument("--out", type=Path, help="also write the JSON report here (.gz: gzipped)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in FAULTS]
    if unknown or not names:
        parser.error(f"unknown fault(s) {', '.join(unknown) or '(none given)'}: see bench/explain.py --list")
    if min(args.fault_s, args.interval, args.traffic) <= 0 or min(args.warmup_s, args.tail_s) < 0:
        parser.error("--fault-s, --interval and --traffic must be positive, --warmup-s and --tail-s "
                     "not negative")  # fmt: skip
    found = run(args, [FAULTS[n] for n in names])
    if args.out:
        write_report(args.out, found)
    if args.json:
        print(json.dumps({k: v for k, v in found.items() if k not in ("posted", "delivered")}, indent=2))
    else:
        show(found)


if __name__ == "__main__":
    main()
