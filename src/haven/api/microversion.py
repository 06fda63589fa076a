"""Masakari microversions: which 1.x a request asked for, and the echo on every /v1 answer.

Clients ask with ``OpenStack-API-Version: instance-ha 1.2`` (python-masakariclient sends
1.3 by default, openstacksdk caps each resource at its own maximum). Masakari reads only
that header (no legacy ``X-OpenStack-...`` one); no header means the minimum, ``latest``
the maximum. A malformed version is a 400, one outside the range a 406. The
``MicroversionMiddleware`` (installed by create_app) decides this for every /v1 path
after the auth gate, and routes read the outcome through the ``api_version`` dependency.

What changed per version (Masakari's history):
  1.0  the initial API
  1.1  notification show carries ``recovery_workflow_details``
  1.2  segments carry ``enabled`` (create, update, show)
  1.3  vmoves: ``/v1/notifications/{id}/vmoves``
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from fastapi import Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from haven.api.errors import fault

HEADER = "OpenStack-API-Version"
SERVICE_TYPE = "instance-ha"
_STATE_KEY = "api_version"
_FORMAT = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@dataclass(frozen=True, order=True, slots=True)
class APIVersion:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


MIN_VERSION = APIVersion(1, 0)
MAX_VERSION = APIVersion(1, 3)
WORKFLOW_DETAILS = APIVersion(1, 1)
SEGMENT_ENABLED = APIVersion(1, 2)
VMOVES = APIVersion(1, 3)


class VersionRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def requested_version(header_values: list[str]) -> APIVersion:
    """The version asked for in the (possibly repeated, comma-separated) header values."""
    asked: str | None = None
    for value in header_values:
        for entry in value.split(","):
            service, _, version = entry.strip().partition(" ")
            if service.lower() == SERVICE_TYPE:
                asked = version.strip()
    if asked is None:
        return MIN_VERSION
    if asked.lower() == "latest":
        return MAX_VERSION
    match = _FORMAT.match(asked)
    if match is None:  # also what Masakari says for an empty version
        raise VersionRefused(
            HTTPStatus.BAD_REQUEST,
            f"API Version String {asked} is of invalid format. Must be of format MajorNum.MinorNum.",
        )
    chosen = APIVersion(int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= chosen <= MAX_VERSION:
        raise VersionRefused(
            HTTPStatus.NOT_ACCEPTABLE,
            f"Version {chosen} is not supported by the API. "
            f"Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}.",
        )
    return chosen


def is_versioned(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class MicroversionMiddleware:
    """Refuses bad versions before routing; echoes the chosen one (and ``Vary``) on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_versioned(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            version = requested_version(Headers(scope=scope).getlist(HEADER))
        except VersionRefused as refused:
            await fault(refused.status, refused.message)(scope, receive, send)
            return
        scope.setdefault("state", {})[_STATE_KEY] = version

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[HEADER] = f"{SERVICE_TYPE} {version}"
                headers.add_vary_header(HEADER)
            await send(message)

        await self.app(scope, receive, send_with_version)


def api_version(request: Request) -> APIVersion:
    """FastAPI dependency: the version the middleware settled on (the minimum outside /v1)."""
    version = request.scope.get("state", {}).get(_STATE_KEY)
    return version if isinstance(version, APIVersion) else MIN_VERSION
