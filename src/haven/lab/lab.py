"""``haven lab``: a real minimal OpenStack on loopback, started, inspected and stopped as one.

Who calls it: the CLI (haven.cli.lab) and the test fixture tests/servers/nova.py. ``up``
starts, in a folder: MariaDB and RabbitMQ (Debian packages), Keystone, Placement, Glance
with a tiny image, Nova's API, conductor and scheduler, a Neutron stand-in (the lab has
no real networking), an etcd, one Redfish BMC per compute host and the power wiring
(haven.lab.hardware) that runs each host's nova-compute (fake driver) and haven agent
(haven.lab.agents) while its BMC says On. It writes ``clouds.yaml`` (cloud ``lab``),
``haven.toml`` (fencing per host, the etcd, the API address the agents report to) and
``lab.json`` (haven.lab.state), so ``status`` and ``down`` work from any process.
Tool venvs are installed the first time and reused after. Each ``up`` starts a fresh
lab: the previous one's data in that folder is thrown away.
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from platformdirs import user_data_dir

from haven.lab import agents, bmc, glance, ha_stateful, labfiles, nova, placement
from haven.lab import cinder as cinder_lab
from haven.lab import ha as ha_lab
from haven.lab.etcd import ETCD, EtcdServer
from haven.lab.hardware import read_holds
from haven.lab.keystone import REGION, Account, KeystoneServer, Provisioner
from haven.lab.mariadb import start_mariadb
from haven.lab.process import LabProcess, LabServiceError, free_port
from haven.lab.rabbitmq import start_rabbitmq
from haven.lab.state import LabState, alive, load_state, record, start_time, stop_processes
from haven.lab.toolenv import Progress, ensure_tool_env

TOOLS = ("keystone", "nova", "glance", "sushy-tools")
# The services this Python process started (the test fixture's case): kept referenced while
# they run, and reaped by ``down``, so none is left a zombie or garbage-collected while running.
_CHILDREN: list[LabProcess] = []
FLAVOR = "lab.tiny"
T = TypeVar("T")


def default_folder() -> Path:
    return Path(user_data_dir("haven")) / "lab"


def running(folder: Path) -> LabState | None:
    """The lab running in ``folder`` (some of its processes alive), else None."""
    state = load_state(folder)
    if state is None or not any(alive(entry) for entry in state.processes):
        return None
    return state


def up(
    folder: Path,
    computes: int = 2,
    progress: Progress | None = None,
    ha: bool = False,
    cinder: bool = False,
    controllers: int = 2,
) -> LabState:
    """Start a fresh lab with ``computes`` compute hosts in ``folder``; its state once all is up.

    ``ha``: then also Keystone and nova-api replicas as systemd units on two controllers behind
    HAProxy (haven.lab.ha), the catalog, clouds.yaml and haven.toml pointing at HAProxy's frontends.
    ``controllers``: with ``ha``, 3 adds a spare controller (haven.lab.ha.add_spare: its units stopped).
    ``cinder``: then also Cinder (haven.lab.cinder: NFS driver on a bind mount, posix backups); opt-in.
    """
    say = progress or (lambda _message: None)
    if computes < 1:
        raise LabServiceError(f"--computes must be at least 1, got {computes}")
    if controllers != 2 and not ha:
        raise LabServiceError("--controllers is for the HA lab: add --ha")
    if not 2 <= controllers <= ha_lab.MAX_CONTROLLERS:
        raise LabServiceError(
            f"--controllers must be 2 or {ha_lab.MAX_CONTROLLERS} (a spare), got {controllers}"
        )
    if ha:
        ha_lab.check_requirements()
    if cinder:
        cinder_lab.check_requirements()
    if running(folder) is not None:
        raise LabServiceError(f"a lab already runs in {folder}: stop it with `haven lab down` first")
    started = time.monotonic()
    tools = (*TOOLS, cinder_lab.TOOL) if cinder else TOOLS
    with ThreadPoolExecutor(len(tools)) as pool:  # the first up installs; later ones find them ready
        venvs = dict(
            zip(tools, pool.map(lambda tool: ensure_tool_env(tool, progress=say), tools), strict=True)
        )
    _fresh(folder)
    hosts = [f"compute-{index}" for index in range(1, computes + 1)]
    state = LabState(folder=str(folder), computes=hosts, urls={})
    processes: list[LabProcess] = []

    saving = threading.Lock()  # services start in parallel threads

    def keep(process: LabProcess) -> LabProcess:
        assert process.pid is not None
        with saving:
            processes.append(process)
            _CHILDREN.append(process)
            state.processes.append(record(process.name, process.pid, process.log))
            state.save()
        return process

    def keep_namespace(name: str, pid1: int, log: Path) -> None:
        with saving:
            state.processes.append(record(name, pid1, log, namespace=True))
            state.save()

    try:
        _start(folder, hosts, venvs, state, keep, say)
        if cinder:
            state.urls["volume"], state.files["cinder.conf"] = cinder_lab.start(
                folder, venvs[cinder_lab.TOOL], keep, say
            )
            state.save()
        if ha:
            _start_ha(folder, venvs, state, keep, keep_namespace, say, processes, controllers - 2)
    except BaseException:
        say("start failed: stopping what was started")
        stop_processes(state.processes, grace_s=5)
        for process in processes:
            process.stop(grace_s=1)  # reaps them (we are their parent)
            _CHILDREN.remove(process)
        ha_lab.reap()
        raise
    state.up_in_s = round(time.monotonic() - started, 1)
    state.save()
    say(f"lab up in {state.up_in_s} s: clouds.yaml at {state.files['clouds.yaml']} (cloud 'lab')")
    return state


def _start(
    folder: Path,
    hosts: list[str],
    venvs: dict[str, Path],
    state: LabState,
    keep: Callable[[LabProcess], LabProcess],
    say: Progress,
) -> None:
    names = ("mariadb", "keystone", "placement", "nova", "glance", "network", "haven")
    ports = {name: free_port() for name in names}
    state.urls["haven"] = f"http://127.0.0.1:{ports['haven']}"  # `haven serve --config LAB/haven.toml`
    passwords = {name: secrets.token_urlsafe(15) for name in ("nova", "placement", "glance", "bmc")}
    labfiles.private(folder / "bmc-password", passwords["bmc"])
    etcd = _etcd(folder)
    with ThreadPoolExecutor(4) as pool:
        say("starting MariaDB, RabbitMQ, Keystone and etcd")
        db_f = pool.submit(
            start_mariadb, folder / "mariadb", ports["mariadb"], [*nova.DATABASES, "placement"]
        )
        mq_f = pool.submit(start_rabbitmq, folder / "rabbitmq", "haven-lab")
        keystone = KeystoneServer(folder / "keystone", ports["keystone"], progress=say)
        ks_f = pool.submit(keystone.start)
        etcd_f = pool.submit(etcd.start)
        _settle([
            (db_f, lambda db: keep(db.process)),
            (mq_f, lambda mq: (keep(mq.epmd), keep(mq.server))),
            (ks_f, lambda server: keep(server.process)),
            (etcd_f, lambda _none: keep(etcd.process) if etcd.process is not None else None),
        ])  # fmt: skip
        db, mq = db_f.result(), mq_f.result()
    state.urls["etcd"] = etcd.url
    auth_url = keystone.url
    state.urls["keystone"] = auth_url
    catalog = {
        "compute": ("nova", f"http://127.0.0.1:{ports['nova']}/v2.1"),
        "placement": ("placement", f"http://127.0.0.1:{ports['placement']}"),
        "image": ("glance", f"http://127.0.0.1:{ports['glance']}"),
        "network": ("neutron", f"http://127.0.0.1:{ports['network']}"),
    }
    network = LabProcess("network-stub", [*labfiles.haven_python("haven.lab.netstub"), str(ports["network"])],
                         folder / "network" / "network-stub.log").start()  # fmt: skip
    keep(network)
    nova_settings = nova.NovaSettings(
        folder=folder / "nova", api_port=ports["nova"], transport_url=mq.url,
        api_database_url=db.url("nova_api"), database_url=db.url("nova"),
        cell0_database_url=db.url("nova_cell0"),
        auth_url=auth_url, password=passwords["nova"], region=REGION,
        glance_url=catalog["image"][1], network_url=catalog["network"][1],
    )  # fmt: skip
    nova.write_config(venvs["nova"], nova_settings)
    pl_settings = placement.PlacementSettings(
        folder / "placement",
        ports["placement"],
        db.url("placement"),
        auth_url,
        passwords["placement"],
        REGION,
    )
    gl_settings = glance.GlanceSettings(
        folder / "glance", ports["glance"], auth_url, passwords["glance"], REGION
    )
    bmcs: list[bmc.BmcInfo] = []

    def provision() -> None:
        # The APIs check tokens only when asked, so they may start while their users are created.
        provisioner = Provisioner(keystone.admin.session(), auth_url, REGION)
        for user in ("nova", "placement", "glance"):
            provisioner.user(user, passwords[user], "service", ("admin", "service"))
        for service_type, (name, url) in catalog.items():
            provisioner.endpoint(service_type, name, url)
            state.urls[service_type] = url

    def start_bmcs() -> None:
        for host in hosts:
            info, process = bmc.start_bmc(
                bmc.bmc_folder(folder, host), host, free_port(), passwords["bmc"], say
            )
            keep(process)
            bmcs.append(info)
            state.bmcs[host] = {
                "host": info.host, "url": info.url, "username": info.username, "system_id": info.system_id,
            }  # fmt: skip

    say("provisioning Keystone; starting Placement, Glance and the BMCs; setting up Nova's databases")
    with ThreadPoolExecutor(5) as pool:
        _settle([
            (pool.submit(provision), _ignore),
            (pool.submit(placement.start_placement, venvs["nova"], pl_settings), keep),
            (pool.submit(glance.start_glance, venvs["glance"], gl_settings), keep),
            (pool.submit(start_bmcs), _ignore),
            (pool.submit(nova.setup_databases, venvs["nova"], nova_settings), _ignore),
        ])  # fmt: skip
    say(f"starting Nova's API, conductor, scheduler and {len(hosts)} compute host(s)")
    with ThreadPoolExecutor(1) as pool:
        api_f = pool.submit(nova.start_api, venvs["nova"], nova_settings)
        keep(nova.start_service(venvs["nova"], nova_settings, "nova-conductor"))
        scheduler = keep(nova.start_service(venvs["nova"], nova_settings, "nova-scheduler"))
        lab_agents = agents.agent_plans(folder, hosts, etcd.http_url, state.urls["haven"])
        plan = labfiles.hardware_plan(folder, venvs["nova"], bmcs, lab_agents)
        keep(LabProcess("hardware", [*labfiles.haven_python("haven.lab.hardware"), str(plan)],
                        folder / "hardware" / "hardware.log").start())  # fmt: skip
        _settle([(api_f, keep)])
    admin = keystone.admin
    # 60 s, not the session's 10 s: Glance's first requests (token validation, its SQLite store) took
    # longer than 10 s on this 2-core machine at load 25-35 and the whole lab up failed there.
    state.image_id = glance.ensure_tiny_image(admin.session(timeout_s=60), gl_settings.url)
    say("waiting for the computes to report to Nova")
    compute = labfiles.NovaAdmin(admin, catalog["compute"][1])
    try:
        compute.wait_computes_up(hosts, timeout_s=180)
    except LabServiceError as exc:
        logs = [folder / "hardware" / "hardware.log", folder / "nova" / "nova-conductor.log",
                *(folder / "nova" / "computes" / host / "nova-compute.log" for host in hosts)]  # fmt: skip
        raise LabServiceError(f"{exc}\n" + "\n".join(_tail(log) for log in logs)) from exc
    nova.discover_hosts(venvs["nova"], nova_settings.folder)
    compute.wait_hypervisors(hosts, timeout_s=60)
    if not scheduler.running:
        # Seen once in a clean CI run: Keystone (SQLite) answered its first token request with a 500
        # ("database is locked") and nova-scheduler exited at its start; every boot then timed out.
        say("nova-scheduler exited at its start; starting it again")
        keep(nova.start_service(venvs["nova"], nova_settings, "nova-scheduler"))
    compute.wait_service_up("nova-scheduler", timeout_s=90)
    state.flavor = compute.ensure_flavor(FLAVOR)
    state.files["clouds.yaml"] = str(labfiles.write_clouds_yaml(folder, admin))
    token = agents.token_file(folder)
    haven_toml = labfiles.write_haven_toml(folder, bmcs, passwords["bmc"], state.urls, token)
    state.files["haven.toml"], state.files["token"] = str(haven_toml), str(token)
    state.files["bmc-password"] = str(folder / "bmc-password")


def _start_ha(
    folder: Path,
    venvs: dict[str, Path],
    state: LabState,
    keep: Callable[[LabProcess], LabProcess],
    keep_namespace: Callable[[str, int, Path], None],
    say: Progress,
    processes: list[LabProcess],
    spares: int = 0,
) -> None:
    ha = ha_lab.start(folder, venvs, keep_namespace, keep, say, spares=spares)
    state.ha = ha_lab.describe(ha)
    state.ha["stateful"] = ha_stateful.start(ha.folder, ha.active, say)  # Galera, RabbitMQ as units
    state.save()
    _retire(state, processes, ha_lab.RETIRED)  # the replicas answer: they serve
    say("HA: pointing the Keystone catalog, clouds.yaml and haven.toml at HAProxy's frontends")
    direct = state.urls["keystone"]
    password = (folder / "keystone" / "admin-password").read_text().strip()
    provisioner = Provisioner(Account(direct, "admin", password, "admin").session(), direct, REGION)
    for api in ha.apis:
        url = ha.frontend_url(api.service) + api.catalog_suffix
        provisioner.endpoint(api.catalog_type, api.service, url)
        state.urls[api.catalog_type if api.catalog_type != "identity" else "keystone"] = url
    state.urls["keystone-direct"] = direct
    admin = Account(state.urls["keystone"], "admin", password, "admin")
    state.files["clouds.yaml"] = str(labfiles.write_clouds_yaml(folder, admin))
    haven_toml = Path(state.files["haven.toml"])
    labfiles.private(haven_toml, haven_toml.read_text().rstrip("\n") + "\n" + ha_lab.controlplane_toml(ha))
    state.files["haproxy.cfg"] = str(ha.folder / "haproxy.cfg")


def _retire(
    state: LabState, processes: list[LabProcess], names: Sequence[str], grace_s: float = 10.0
) -> list[str]:
    """Stop this lab's own processes named ``names`` (the HA lab's replicas replace them) and forget
    them: their records leave the lab state (``haven lab status`` and bench/explain's whole() would
    report them down), this start's ``processes`` and ``_CHILDREN`` (a later down() would signal
    their process group, reaped long ago, maybe someone else's by then). The names stopped."""
    retired = [p for p in processes if p.name in names]
    for process in retired:
        process.stop(grace_s=grace_s)
        processes.remove(process)
        if process in _CHILDREN:
            _CHILDREN.remove(process)
    gone = {(p.name, p.pid) for p in retired}
    state.processes = [e for e in state.processes if (e.name, e.pid) not in gone]
    state.save()
    return [p.name for p in retired]


def _etcd(folder: Path) -> EtcdServer:
    if not Path(ETCD).exists():
        raise LabServiceError(
            f"{ETCD} is missing: install Debian's etcd-server (scripts/install-system-deps.sh)"
        )
    return EtcdServer(Path(ETCD), folder / "etcd")


def _tail(log: Path, lines: int = 12) -> str:
    text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else ["(no log)"]
    return f"--- {log}:\n" + "\n".join(text)


def _ignore(_result: object) -> None:
    return None


def _settle(started: list[tuple[Future[Any], Callable[[Any], object]]]) -> None:
    """Record what each finished start returned; then raise the first failure, if any.

    Every successful start is recorded before anything is raised, so a failure in one
    service of a parallel batch still lets ``up`` stop the others.
    """
    errors: list[BaseException] = []
    for future, keeper in started:
        try:
            keeper(future.result())
        except BaseException as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _fresh(folder: Path) -> None:
    # Only a folder that holds a stopped lab (or nothing) is emptied; anything else is refused.
    if folder.exists() and any(folder.iterdir()):
        if not any((folder / name).exists() for name in ("lab.json", "lab.stopped.json", "lab.tmp")):
            raise LabServiceError(
                f"{folder} is not empty and holds no lab: choose an empty or new folder with --folder"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def status(folder: Path) -> dict[str, Any]:
    """What the lab in ``folder`` runs: each process alive or not, the computes' pids, URLs and files."""
    state = load_state(folder)
    if state is None:
        return {"folder": str(folder), "running": False, "processes": []}
    processes = [{"name": e.name, "pid": e.pid, "alive": alive(e), "log": e.log} for e in state.processes]
    computes, agents, holds = (
        labfiles.compute_pids(folder),
        labfiles.compute_pids(folder, "agents"),
        read_holds(folder),
    )
    return {
        "folder": str(folder),
        "running": any(p["alive"] for p in processes),
        "processes": processes,
        "computes": {
            host: {
                "nova_compute_pid": computes.get(host),
                "agent_pid": agents.get(host),
                "held_down": holds.get(host, []),
                "bmc": state.bmcs.get(host, {}).get("url"),
            }
            for host in state.computes
        },
        "urls": state.urls,
        "files": state.files,
        "image_id": state.image_id,
        "flavor": state.flavor,
        "up_in_s": state.up_in_s,
        "ha": state.ha,
    }


# What the lab's services talk to (their database, message bus, the agents' etcd): stopped after them.
INFRASTRUCTURE = frozenset({"mariadb", "epmd", "rabbitmq-server", "etcd"})


def down(folder: Path) -> list[str]:
    """Stop exactly the processes the lab in ``folder`` started; the names that were running."""
    state = load_state(folder)
    if state is None:
        return []
    # The services first, then what they talk to: a nova-compute signalled together with RabbitMQ
    # spent its graceful stop reconnecting to it (10 s, then the lab wiring's SIGKILL, at the end of
    # every test session); signalled while RabbitMQ still runs, it has no reconnecting to do.
    services = [entry for entry in state.processes if entry.name not in INFRASTRUCTURE]
    stopped = stop_processes(services) + stop_processes(
        [entry for entry in state.processes if entry.name in INFRASTRUCTURE]
    )
    # Every child this process started for the lab is reaped: those still recorded (just signalled),
    # and those a fault drill killed and replaced (haven.drill.faults: the record names the new process),
    # which would stay zombies, and make Popen warn "still running" when collected, at the latest at exit.
    mine = {entry.pid for entry in state.processes}
    for child in [c for c in _CHILDREN if c.pid in mine or c.log.resolve().is_relative_to(folder.resolve())]:
        child.stop(grace_s=1)  # already signalled or dead: this only reaps it
        _CHILDREN.remove(child)
    ha_lab.reap()
    (folder / "lab.json").rename(folder / "lab.stopped.json")
    return stopped


def rss_mib(state: LabState) -> float:
    """The resident memory of every lab process and its children, in MiB."""
    total = 0
    groups = {entry.pid for entry in state.processes if start_time(entry.pid) == entry.started}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # field 5: the process group
            total += int(fields[21]) * 4096  # field 24: resident pages
    return round(total / 2**20, 1)
