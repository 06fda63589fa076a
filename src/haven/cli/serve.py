"""`haven serve`: the engine and its REST API as one long-lived service, stopped cleanly by Ctrl-C.

The embedded default watches a built-in simulated cloud; its state (a SQLite
file) lives in haven's home folder, so a restart resumes unfinished recoveries.
Note: the simulated cloud itself lives in this process and starts afresh with
it; against a real cloud, the world a resumed recovery re-reads is the same.

The API (Masakari's v1 resources) runs in the same event loop and TaskGroup as
the engine, with the engine as its notification intake. Its listening socket
is bound before the store is opened, so a port already in use stops haven
with a plain message and nothing touched. haven's own signal handlers stop
both; uvicorn is kept from installing its own.

With ``--coordination etcd://HOST:PORT`` (or ``[coordination] url``) several
``haven serve`` processes share one PostgreSQL store and elect one leader
through etcd (haven.coordination). The elector runs in the same TaskGroup and
is the Leadership the status page and metrics show. Only the leader acts: the
engine's tick (detection, recovery steps, return to service), the
publisher's deliveries and the explainer (``[diagnosis]``, haven.service.explaining) run while it
leads; a follower keeps serving the API.
A notification POSTed to a follower is stored, and the leader adopts it from
the store within a detection interval (about a second): the store is shared,
and the leader's executor picks up every unfinished notification it finds
there. etcd unreachable at start stops serve with a message naming the URL,
before anything is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import random
import signal
import socket
from collections.abc import Callable, Collection, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from rich.console import Console

from haven.api.app import create_app
from haven.api.auth import Authenticator
from haven.api.keystone_auth import KeystoneAuthenticator, KeystoneCredentials
from haven.api.routes.haven_alertmanager import attach_alertmanager
from haven.api.routes.haven_audit import attach_audit
from haven.api.routes.haven_backups import attach_backups
from haven.audit.sources import AuditSources
from haven.backups.serving import BackupService, build_service
from haven.cli.clouds import choose_cloud, open_liveness
from haven.cloud.sim import CloudSpec, SimCloud, SimFencer
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import SimTopology
from haven.controlplane.metrics import ControlPlaneMetrics
from haven.controlplane.running import ControlPlane
from haven.coordination import Elector, EtcdElector, elector_from_url
from haven.dashboard.board import BackupStatus, BackupsView
from haven.dashboard.hub import EventHub
from haven.dashboard.mount import mount_dashboard
from haven.domain.clock import RealClock
from haven.domain.cloud import Host
from haven.domain.errors import ConfigError, CoordinationUnavailable, UserError
from haven.domain.events import EngineEvent, EventSink, fan_out
from haven.domain.ids import HostName
from haven.domain.incidents import RecoveryMethod
from haven.domain.masking import mask_url
from haven.domain.waiting import within
from haven.drill.scenarios import Scenario, scenario_named
from haven.fencing.registry import build_fencer
from haven.notify.publisher import Publisher
from haven.service.bootstrap import segments_per_zone
from haven.service.config import HavenConfig
from haven.service.engine import Engine
from haven.service.explaining import build_explaining
from haven.service.metrics import HavenMetrics
from haven.service.publishing import build_publisher, build_sinks
from haven.service.runner import serve_forever
from haven.service.sim_agents import with_sim_agents
from haven.service.status import Leadership, SingleNodeLeadership
from haven.service.token import ensure_token
from haven.stateful.serving import GaleraService, RabbitService, refuse_local_nodes_with_coordination
from haven.store import Store

DEFAULT_BIND = ("127.0.0.1", 15868)  # Masakari API's port
_GRACEFUL_SHUTDOWN_S = 5


async def serve(
    config: HavenConfig,
    console: Console,
    inject: str | None,
    inject_after_s: float,
    bind: tuple[str, int] = DEFAULT_BIND,
    environ: Mapping[str, str] | None = None,
) -> int:
    environ = environ or {}  # given by main: [fencing] password_env, [publish] webhook_secret_env
    clock = RealClock()
    spec = CloudSpec(hosts=config.simulated.hosts, vms=config.simulated.vms, seed=config.simulated.seed)
    scenario = scenario_named(inject) if inject else None
    if scenario is not None:
        spec = scenario.shape(spec)
    chosen = choose_cloud(config, spec, clock, environ)  # a bad size or cloud name: nothing touched yet
    cloud, topology = chosen.sim, chosen.topology
    if scenario is not None and (cloud is None or topology is None):
        raise UserError("--inject works only on the simulated cloud", "drop --inject, or --cloud/[cloud]")
    sim_fencer = SimFencer(cloud) if cloud is not None else None
    fencer = build_fencer(config.fencing, environ, sim=sim_fencer)  # a missing password: stop here
    authenticator = _keystone_authenticator(config, environ)  # likewise for Keystone's password
    hosts = await chosen.cloud.list_hosts()
    if not _store_exists(config):  # before anything is created
        _check_segment_names(config, _bootstrapped_names(config, hosts))
    where = f"{config.source or 'defaults'} [publish]"
    sinks = build_sinks(config.publish, environ, where)  # no I/O: a bad [publish] touches nothing
    explaining = build_explaining(config, chosen.sim, serving=True)  # likewise for [diagnosis], [canary]
    controlplane = None  # [controlplane], or the simulated one on the simulated cloud; no I/O yet
    if ControlPlane.wanted(config.controlplane, cloud is not None):
        controlplane = ControlPlane(
            config.controlplane, simulated_cloud=cloud is not None, clock=clock, environ=environ
        )
    refuse_local_nodes_with_coordination(config.stateful, config.coordination.url)  # nothing opened yet
    galera = None  # [stateful.galera]: Galera's recovery loop; a missing my.cnf stops here, nothing opened
    if config.stateful.galera is not None:
        galera = GaleraService(config.stateful.galera, clock)
    rabbitmq = None  # [stateful.rabbitmq]: RabbitMQ's recovery loop; a missing config stops here, likewise
    if config.stateful.rabbitmq is not None:
        rabbitmq = RabbitService(config.stateful.rabbitmq, clock)
    elector = await _elector(config, bind)  # etcd unreachable: stop here, nothing opened
    try:
        async with contextlib.AsyncExitStack() as resources:
            listener = resources.enter_context(_listen(*bind))  # a busy port stops haven with nothing touched
            resources.callback(chosen.close)
            token = ensure_token(config.home, config.api.token_path)  # creates the home folder too
            store = resources.enter_context(Store.open(config.database_url))
            hub = EventHub()  # the dashboard's live pages: the engine's, control plane's, explainer's events
            explain: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None
            if explaining is not None:
                resources.push_async_callback(explaining.aclose)
                explain = functools.partial(explaining.run, store, clock, on_event=hub)
            method = scenario.recovery_method if scenario is not None else RecoveryMethod.AUTO
            _prepare_segments(store, config, hosts, method, chosen.reserved)
            leadership: Leadership = elector if elector is not None else SingleNodeLeadership()
            metrics = HavenMetrics(store, leadership)
            if galera is not None:  # leader-only; its journal and galera_hold alerts in the store
                galera_epoch = elector.epoch if elector is not None else None
                run_galera = functools.partial(galera.run, store, galera_epoch)
                explain = run_galera if explain is None else _both(explain, run_galera)
            if rabbitmq is not None:  # leader-only; its journal and rabbitmq_hold alerts in the store
                run_rabbitmq = functools.partial(rabbitmq.run, store, elector.epoch if elector else None)
                explain = run_rabbitmq if explain is None else _both(explain, run_rabbitmq)
            if controlplane is not None:
                resources.push_async_callback(controlplane.aclose)
                on_action = ControlPlaneMetrics(metrics.registry, store).on_action
                epoch = elector.epoch if elector is not None else None
                reconcile = functools.partial(controlplane.run, store, epoch, on_action, on_event=hub)
                explain = reconcile if explain is None else _both(explain, reconcile)
            backups = None  # [backups]: the runner and the restore drills, leader-only
            sim_port = SimBackups(cloud) if cloud is not None else None
            backup_port = chosen.openstack.backups() if chosen.openstack is not None else sim_port
            if config.backups.enabled and backup_port is not None:
                epoch = elector.epoch if elector is not None else None
                backups = build_service(config.backups, backup_port, store, clock, epoch, metrics.registry)
                backups.on_event = hub  # the dashboard's backups panel, live (backups_changed per round)
                explain = backups.run if explain is None else _both(explain, backups.run)
            publisher = build_publisher(config.publish, sinks, store, clock)
            liveness = await resources.enter_async_context(
                open_liveness(chosen, config, fencer, metrics.registry)
            )
            sink = fan_out(_logger(console), metrics.observe, publisher.on_event, hub)
            engine = Engine(chosen.cloud, liveness, fencer, store, clock, config.engine, on_event=sink,
                            leadership=elector)  # fmt: skip
            # A coordinated engine resumes when it wins the election (its first tick as leader).
            resumed = engine.start() if elector is None else 0
            api = _api_server(store, engine, token, clock, bind, leadership, metrics, authenticator)
            mount_dashboard(api.config.app, store, hub, clock, token=token, authenticator=authenticator,
                            keystone=config.keystone, hosts=hosts, read_hosts=chosen.cloud.list_hosts,
                            declared=_declared(controlplane),
                            backups=_backups_view(backups), leadership=leadership)  # fmt: skip
            attach_backups(api.config.app, backups)  # POST /v1/haven/backups[/restores] use its runner
            attach_alertmanager(api.config.app, explaining)  # POST /v1/haven/alertmanager: its explainer
            attach_audit(api.config.app, AuditSources(chosen.cloud, config.controlplane, config.stateful,
                                                      config.engine.recovery, cloud is not None))  # fmt: skip
            host, port = listener.getsockname()[:2]
            role = (
                f"resumed {resumed} unfinished recoveries"
                if elector is None
                else f"one of several engines through {config.coordination.url} as {elector.identity}, "
                "acting only while elected leader"
            )
            console.print(
                f"haven serving: {chosen.description}; state {mask_url(config.database_url)}; {role}; "
                f"API on http://{_url_host(host)}:{port}/ ({_auth_note(config)}); "
                f"dashboard on http://{_url_host(host)}:{port}/dashboard/. Ctrl-C stops.",
                highlight=False,
            )
            if galera is not None:
                console.print(galera.describe(), highlight=False)
            if rabbitmq is not None:
                console.print(rabbitmq.describe(), highlight=False)
            if explaining is not None:
                console.print(f"{explaining.describe()}: `haven explain` shows them", highlight=False)
            if controlplane is not None:
                console.print(controlplane.describe(), highlight=False)
            if backups is not None:
                console.print(backups.describe(), highlight=False)
            if not store.list_segments():
                console.print(
                    'no failover segment yet ([segments] bootstrap = "none"): haven protects the hosts '
                    "of segments created through the API (`openstack segment create`, `segment host create`)",
                    highlight=False,
                )
            injector = None
            if scenario is not None and cloud is not None and topology is not None:
                injecting = functools.partial(
                    _inject_later, scenario, cloud, topology, spec.seed, inject_after_s, console=console
                )
                injector = with_sim_agents(injecting, cloud, engine)  # their agents report guest faults
            await _run_until_stopped(
                engine, clock, api, listener, injector, publisher, elector, explain, on_stop=hub.close
            )
    finally:
        if elector is not None:
            await elector.aclose()
    console.print("haven stopped cleanly; unfinished recoveries resume at the next start.")
    return 0


def _declared(controlplane: ControlPlane | None) -> dict[str, int] | None:
    """Each control-plane service's min_replicas, for the dashboard's "healthy / declared"."""
    return None if controlplane is None else {s.name: s.min_replicas for s in controlplane.config.services}


def _backups_view(backups: BackupService | None) -> BackupsView | None:
    """How the dashboard reads the backup runner's latest plan (read when a page opens)."""
    if backups is None:
        return None
    return lambda: BackupStatus(backups.last_plan, backups.config.scheduler, backups.drill_now)


async def _elector(config: HavenConfig, bind: tuple[str, int]) -> Elector | None:
    """The etcd elector when coordination is configured (checked reachable now); None: one engine."""
    coordination = config.coordination
    if coordination.url is None:
        return None
    identity = f"{socket.gethostname()}:{os.getpid()}@{_url_host(bind[0])}:{bind[1]}"
    elector = elector_from_url(
        coordination.url, identity, cluster=coordination.cluster, ttl_s=coordination.ttl_s
    )
    if isinstance(elector, EtcdElector):
        try:
            await elector.check()
        except CoordinationUnavailable:
            await elector.aclose()
            raise
    return elector


def _prepare_segments(
    store: Store,
    config: HavenConfig,
    hosts: Sequence[Host],
    method: RecoveryMethod,
    reserved: Collection[HostName],
) -> None:
    """First start: a segment per zone if so configured ([segments] bootstrap); every start: the
    config's recovery methods and modes applied."""
    existing = store.list_segments()
    if existing:
        _check_segment_names(config, {s.name for s in existing})
    elif config.segment_bootstrap == "per-zone":
        segments_per_zone(store, hosts, method, reserved=reserved)
    else:
        _check_segment_names(config, set())
    for segment in store.list_segments():
        wanted = config.segment_methods.get(segment.name)
        if wanted is not None and wanted is not segment.recovery_method:
            store.update_segment(segment.id, recovery_method=wanted)
        mode = config.segment_modes.get(segment.name)
        if mode is not None and mode is not segment.mode:
            store.update_segment(segment.id, mode=mode)


async def _run_until_stopped(
    engine: Engine,
    clock: RealClock,
    api: uvicorn.Server,
    listener: socket.socket,
    injector: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None,
    publisher: Publisher,
    elector: Elector | None,
    explain: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
    on_stop: Callable[[], None] = lambda: None,
) -> None:
    """The engine loop, the API, the publisher, the explainer, the elector and the injector in one TaskGroup.

    Until SIGINT or SIGTERM; then ``on_stop`` (the dashboard's streams end), and the elector resigns
    (hands leadership over at once).
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve_forever(engine, clock, stop))
            tasks.create_task(api.serve(sockets=[listener]))
            tasks.create_task(_stop_when(stop, api, on_stop))
            leader_only = [publisher.run] if explain is None else [publisher.run, explain]
            if elector is None:
                for run in leader_only:
                    tasks.create_task(run(stop))
            else:
                campaign = tasks.create_task(elector.run())
                tasks.create_task(_cancel_when(stop, campaign))
                for run in leader_only:
                    tasks.create_task(_while_leading(run, elector, stop))
            if injector is not None:
                tasks.create_task(injector(stop))
    except* CoordinationUnavailable as group:
        raise group.exceptions[0] from None  # etcd went away between the check and the campaign
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class _ApiServer(uvicorn.Server):
    """uvicorn, minus its signal handling: haven's handlers set the stop event, which stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _api_server(
    store: Store,
    engine: Engine,
    token: str,
    clock: RealClock,
    bind: tuple[str, int],
    leadership: Leadership,
    metrics: HavenMetrics,
    authenticator: Authenticator | None = None,
) -> _ApiServer:
    config = uvicorn.Config(
        create_app(
            store, engine, token, clock, leadership=leadership, metrics=metrics, authenticator=authenticator
        ),
        host=bind[0],
        port=bind[1],
        log_level="warning",
        access_log=False,  # request lines are not wanted in haven's log
        lifespan="off",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    return _ApiServer(config)


def _keystone_authenticator(config: HavenConfig, environ: Mapping[str, str]) -> Authenticator | None:
    """Keystone token validation when the config has a [keystone] section; else the local token."""
    ks = config.keystone
    if ks is None:
        return None
    credentials = KeystoneCredentials(
        auth_url=ks.auth_url,
        username=ks.username,
        password=ks.resolve_password(environ),
        project_name=ks.project_name,
        user_domain_name=ks.user_domain_name,
        project_domain_name=ks.project_domain_name,
        timeout_s=ks.timeout_s,
    )
    return KeystoneAuthenticator(credentials, ttl_s=ks.cache_ttl_s)


def _auth_note(config: HavenConfig) -> str:
    if config.keystone is None:
        return "`haven token` prints its token"
    return f"Keystone tokens, checked at {config.keystone.auth_url}"


@contextlib.contextmanager
def _listen(host: str, port: int) -> Iterator[socket.socket]:
    """The API's listening socket, bound now so that a busy port stops haven before anything starts."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family)
    except OSError as exc:
        where = f"{_url_host(host)}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"cannot serve the API on {where}: the port is already in use",
                "stop the other process (another `haven serve`?), or choose another with --bind HOST:PORT",
            ) from None
        raise UserError(
            f"cannot serve the API on {where}: {exc.strerror or exc}",
            "choose an address of this machine with --bind HOST:PORT",
        ) from None
    with listener:
        yield listener


async def _cancel_when(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    await stop.wait()
    task.cancel()


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Wait until the first of ``waits`` finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _while_leading(
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]], elector: Elector, stop: asyncio.Event
) -> None:
    """``run`` (the outbox's deliveries, the explainer) only during this engine's terms as leader."""
    while not stop.is_set():
        await _first(elector.wait_leading(), stop.wait())
        if stop.is_set():
            return
        term_over = asyncio.Event()
        async with asyncio.TaskGroup() as term:
            term.create_task(run(term_over))
            await _first(elector.wait_not_leading(), stop.wait())
            term_over.set()


def _both(
    *runs: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    """Leader-only runnables as one (the explainer and the control plane's reconciler)."""

    async def run(stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            for each in runs:
                tasks.create_task(each(stop))

    return run


async def _stop_when(stop: asyncio.Event, server: uvicorn.Server, on_stop: Callable[[], None]) -> None:
    await stop.wait()
    on_stop()  # the dashboard's open event streams end, so that they do not hold up the API's stop
    server.should_exit = True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _store_exists(config: HavenConfig) -> bool:
    prefix = "sqlite:///"
    url = config.database_url
    return not url.startswith(prefix) or Path(url[len(prefix) :]).exists()


def _bootstrapped_names(config: HavenConfig, hosts: Sequence[Host]) -> set[str]:
    """The segments a first start creates: one per zone, or none ([segments] bootstrap)."""
    return {f"segment-{h.zone}" for h in hosts} if config.segment_bootstrap == "per-zone" else set()


def _check_segment_names(config: HavenConfig, known: set[str]) -> None:
    unknown = sorted(config.segment_names - known)
    if unknown:
        hint = f"known segments: {', '.join(sorted(known))}"
        if not known:
            hint = (
                "no segment exists yet: create it through the API first (`openstack segment create`), "
                'or set [segments] bootstrap = "per-zone"'
            )
        raise ConfigError(
            f"{config.source}: [[segments]] name(s) {', '.join(unknown)} match no segment", hint
        )


def _logger(console: Console) -> EventSink:
    def log(event: EngineEvent) -> None:
        what = event.host or event.segment_id or ""
        extra = event.detail.get("reason") or event.detail.get("kind") or event.detail.get("status") or ""
        console.print(f"{event.kind.value:<24} {what} {extra}", highlight=False)

    return log


async def _inject_later(
    scenario: Scenario,
    cloud: SimCloud,
    topology: SimTopology,
    seed: int,
    after_s: float,
    stop: asyncio.Event,
    *,
    console: Console,
) -> None:
    """Inject the scenario's failure after ``after_s``, and its follow-up (a process coming back) when due."""
    if await _stopped_within(stop, after_s):
        return
    injection = scenario.inject(cloud, topology, random.Random(seed))
    console.print(f"[bold]injected:[/] {injection.description}")
    if injection.follow_up is None or injection.follow_up_after_s is None:
        return
    if not await _stopped_within(stop, injection.follow_up_after_s):
        injection.follow_up()
        console.print("[bold]follow-up:[/] the failed part is back")


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await within(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


__all__ = ["serve"]
