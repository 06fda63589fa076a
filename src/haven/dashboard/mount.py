"""``mount_dashboard``: how ``haven serve`` adds the dashboard to its API application (one call)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from starlette.applications import Starlette

from haven.api.auth import Authenticator, LocalTokenAuthenticator
from haven.dashboard.app import ROOT, create_dashboard
from haven.dashboard.board import BackupsView
from haven.dashboard.domains import FailureDomains, HostsReader
from haven.dashboard.hub import EventHub
from haven.dashboard.keystone_login import KeystonePasswordLogin
from haven.domain.clock import Clock
from haven.domain.cloud import Host
from haven.service.config import KeystoneConfig
from haven.service.status import Leadership
from haven.store import Store


def mount_dashboard(
    app: object,
    store: Store,
    hub: EventHub,
    clock: Clock,
    *,
    token: str,
    authenticator: Authenticator | None = None,
    keystone: KeystoneConfig | None = None,
    hosts: Iterable[Host] = (),
    read_hosts: HostsReader | None = None,
    declared: Mapping[str, int] | None = None,
    backups: BackupsView | None = None,
    leadership: Leadership | None = None,
) -> None:
    """The dashboard at /dashboard, logging in with the API's authenticator (the local token unless
    ``authenticator`` is Keystone's; then ``keystone`` also offers a user's password login).

    ``hosts``: the cloud's hosts at start-up, for the zones and racks (aggregates) of the map;
    ``read_hosts``: the cloud's ``list_hosts``, to read them again (haven.dashboard.domains).
    ``declared``: each control-plane service's min_replicas (its "healthy / declared").
    ``backups``: how to read the backup runner's latest plan (None: this server runs no backups).
    ``leadership``: the elector with several engines (a follower's page says it is one, and where the
    leader is); None: the only engine.
    ``app`` is the API application (``uvicorn.Config.app``, typed loosely there).
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"the dashboard mounts on the API's Starlette application, not {type(app).__name__}")
    login = None
    if keystone is not None and authenticator is not None:
        login = KeystonePasswordLogin(
            keystone.auth_url,
            user_domain_name=keystone.user_domain_name,
            project_domain_name=keystone.project_domain_name,
            timeout_s=keystone.timeout_s,
        )
    gate = authenticator if authenticator is not None else LocalTokenAuthenticator(token)
    domains = FailureDomains.of(hosts, read_hosts)  # the failure-domain map's zones and racks
    app.mount(
        ROOT,
        create_dashboard(
            store,
            gate,
            hub,
            clock,
            password_login=login,
            domains=domains,
            declared=declared,
            backups=backups,
            leadership=leadership,
        ),
    )
