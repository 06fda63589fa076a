"""Who is calling: the authentication seam and the gate in front of every protected route.

``create_app`` installs ``AuthGate`` as the outermost middleware, so an unauthenticated
request learns nothing (not even whether a path exists) before it is refused with 401.
Open paths: the versions document ``/``, ``/healthz``, ``/metrics`` and ``/openapi.json``; Masakari
keeps ``/v1`` behind keystone, so haven does too. ``/dashboard`` passes the gate to the dashboard, which
admits only its own sessions (logged in through this same authenticator).

The gate asks an ``Authenticator`` for a ``Principal``. ``LocalTokenAuthenticator``
(the embedded default) knows one shared token and grants the admin role;
``haven.api.keystone_auth.KeystoneAuthenticator`` validates Keystone tokens and returns
their user, project and roles. An authenticator that does network I/O says so
(``blocking``) and the gate runs it in a worker thread, so the event loop that also runs
the engine never waits on Keystone. An authenticator that cannot decide (Keystone
unreachable) raises ``AuthUnavailable``: 503, not 401, since the caller did nothing wrong.

Routes declare the ``require_policy`` dependency (or ``require_admin``, the same function
under the name it had before the policy table); it applies haven.api.policy's rule for
the matched route (Masakari's defaults) and answers 403 in Masakari's words when the
principal's roles do not satisfy it. The token is never logged or echoed. On ``BEARER_PATHS`` (Alertmanager's
webhook, whose receiver sends ``Authorization: Bearer``) the token may come in that header instead.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from haven.api.errors import ApiError, fault
from haven.api.policy import ADMIN_ROLE, authorize
from haven.domain.errors import HavenError

TOKEN_HEADER = "X-Auth-Token"
# Alertmanager's webhook receiver can send a bearer token (http_config.authorization), not X-Auth-Token:
# on these paths only, "Authorization: Bearer <token>" is read as the token when X-Auth-Token is absent.
BEARER_PATHS = frozenset({"/v1/haven/alertmanager"})
OPEN_PATHS = frozenset({"/", "/healthz", "/openapi.json", "/metrics"})  # /metrics: see haven_status
# The dashboard (haven.dashboard, mounted there by haven serve) checks its own session cookie, logged in
# with this same authenticator; an X-Auth-Token is never asked of a browser.
DASHBOARD_PREFIX = "/dashboard"
ADMIN = ADMIN_ROLE
UNAUTHENTICATED = "The request you have made requires authentication."
_STATE_KEY = "principal"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    project_id: str | None
    roles: frozenset[str]


class AuthUnavailable(HavenError):
    """The authenticator could not decide (its identity service did not answer): 503."""


class Authenticator(Protocol):
    # An authenticator that does network I/O also sets a class attribute ``blocking = True``;
    # the gate then calls it in a worker thread (absent means False: it is called inline).

    def authenticate(self, token: str | None) -> Principal | None:
        """The caller behind ``token`` (the X-Auth-Token header, None when absent); None if unknown.

        Raises AuthUnavailable when it cannot tell.
        """
        ...


class LocalTokenAuthenticator:
    """One shared secret, compared in constant time; its holder is the admin."""

    blocking = False

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the API token must not be empty")
        self._token = token.encode()

    def __repr__(self) -> str:
        return "LocalTokenAuthenticator(<token hidden>)"

    def authenticate(self, token: str | None) -> Principal | None:
        if token is None or not hmac.compare_digest(token.encode(), self._token):
            return None
        return Principal(user_id="haven-local", project_id=None, roles=frozenset({ADMIN}))


class AuthGate:
    """ASGI middleware: 401 for every protected path without a principal."""

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or _dashboard(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = _token(scope)
        try:
            if getattr(self.authenticator, "blocking", False):
                principal = await run_in_threadpool(self.authenticator.authenticate, token)
            else:
                principal = self.authenticator.authenticate(token)
        except AuthUnavailable as exc:
            await fault(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))(scope, receive, send)
            return
        if principal is None:
            refusal = fault(
                HTTPStatus.UNAUTHORIZED, UNAUTHENTICATED, {"WWW-Authenticate": 'Keystone uri="local"'}
            )
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = principal
        await self.app(scope, receive, send)


def _token(scope: Scope) -> str | None:
    headers = Headers(scope=scope)
    token = headers.get(TOKEN_HEADER)
    if token is None and scope["path"] in BEARER_PATHS:
        scheme, _, credentials = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return token


def _dashboard(path: str) -> bool:
    return path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")


def require_policy(request: Request) -> Principal:
    """FastAPI dependency: the caller, allowed by the matched route's policy (Masakari's defaults).

    Every route Masakari has needs the admin role except ``/v1``; see haven.api.policy.
    """
    principal = request.scope.get("state", {}).get(_STATE_KEY)
    if not isinstance(principal, Principal):
        raise ApiError(HTTPStatus.UNAUTHORIZED, UNAUTHENTICATED)
    route = request.scope.get("route")
    path = getattr(route, "path", None) or request.url.path  # the declared path, with {placeholders}
    authorize(request.method, path, principal.roles)
    return principal


# The name routes have used since before the policy table; it applies the table too.
require_admin = require_policy


def current_principal(scope: Scope) -> Principal | None:
    """The caller the gate admitted for this request (for middleware after the gate), or None."""
    principal = scope.get("state", {}).get(_STATE_KEY)
    return principal if isinstance(principal, Principal) else None
