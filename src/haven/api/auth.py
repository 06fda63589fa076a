"""Who is calling: the authentication seam and the gate in front of every protected route.

``create_app`` installs ``AuthGate`` as the outermost middleware, so an unauthenticated
request learns nothing (not even whether a path exists) before it is refused with 401.
Open paths: the versions document ``/``, ``/healthz``, ``/metrics`` and ``/openapi.json``; Masakari
keeps ``/v1`` behind keystone, so haven does too.

The gate asks an ``Authenticator`` for a ``Principal``. ``LocalTokenAuthenticator``
(the embedded default) knows one shared token and grants the admin role; a Keystone
authenticator can later satisfy the same protocol and return real roles and projects.
Routes state the role they need with the ``require_admin`` dependency, which answers
403 when the principal lacks it. The token is never logged or echoed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from haven.api.errors import ApiError, fault

TOKEN_HEADER = "X-Auth-Token"
OPEN_PATHS = frozenset({"/", "/healthz", "/openapi.json", "/metrics"})  # /metrics: see haven_status
ADMIN = "admin"
_STATE_KEY = "principal"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    project_id: str | None
    roles: frozenset[str]


class Authenticator(Protocol):
    def authenticate(self, token: str | None) -> Principal | None:
        """The caller behind ``token`` (the X-Auth-Token header, None when absent); None if unknown."""
        ...


class LocalTokenAuthenticator:
    """One shared secret, compared in constant time; its holder is the admin."""

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
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        principal = self.authenticator.authenticate(Headers(scope=scope).get(TOKEN_HEADER))
        if principal is None:
            refusal = fault(
                HTTPStatus.UNAUTHORIZED,
                "The request you have made requires authentication.",
                {"WWW-Authenticate": 'Keystone uri="local"'},
            )
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = principal
        await self.app(scope, receive, send)


def require_admin(request: Request) -> Principal:
    """FastAPI dependency: the caller, who must hold the admin role (Masakari's default policy)."""
    principal = request.scope.get("state", {}).get(_STATE_KEY)
    if not isinstance(principal, Principal):
        raise ApiError(HTTPStatus.UNAUTHORIZED, "The request you have made requires authentication.")
    if ADMIN not in principal.roles:
        raise ApiError(HTTPStatus.FORBIDDEN, "Policy doesn't allow this operation to be performed.")
    return principal
