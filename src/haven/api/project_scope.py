"""Masakari's project-scoped URLs: ``/v1/<project_id>/segments...`` served as ``/v1/segments...``.

Masakari deployments (devstack, kolla, OpenStack-Ansible) register the instance-ha endpoint as
``http://HOST:15868/v1/$(tenant_id)s``, so clients call ``/v1/<project_id>/segments`` and
``/v1/<project_id>/notifications``. Masakari's ``ProjectMapper`` routes every resource both
with and without a ``{project_id}`` prefix, the id matching ``[0-9a-f-]+`` (hex, dashes).
``create_app`` installs ``ProjectScope`` after the auth gate and the microversion check, in
front of the router: it rewrites the path for the router and, as Masakari's
``wsgi.Resource._process_stack`` does, answers 400 "Malformed request URL" when the URL's
project is not the token's. The local token belongs to no project, so nothing is compared
for it (Masakari has no such token). Only Masakari's top-level resources are rewritten;
anything else under ``/v1/<hex>/`` is left alone and ends in 404. The resources behind the
rewrite build no links, so an answer never names the unscoped form.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from starlette.types import ASGIApp, Receive, Scope, Send

from haven.api.auth import current_principal
from haven.api.errors import fault

# Masakari's default osapi_v1.project_id_regex, and its top-level collections.
PROJECT_ID = r"[0-9a-f\-]+"
RESOURCES = ("segments", "notifications")
_SCOPED = re.compile(rf"^/v1/(?P<project>{PROJECT_ID})(?P<rest>/(?:{'|'.join(RESOURCES)})(?:/.*)?)$")


def unscoped(path: str) -> tuple[str, str] | None:
    """(project id, path without it) for a project-scoped Masakari path; None for any other path."""
    match = _SCOPED.match(path)
    if match is None:
        return None
    return match.group("project"), f"/v1{match.group('rest')}"


class ProjectScope:
    """ASGI middleware: strips the URL's project id; 400 when it is not the caller's project."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = unscoped(scope["path"]) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        project, path = found
        principal = current_principal(scope)
        if principal is not None and principal.project_id is not None and principal.project_id != project:
            message = (
                f"Malformed request URL: URL's project_id '{project}' doesn't match "
                f"Context's project_id '{principal.project_id}'"
            )
            await fault(HTTPStatus.BAD_REQUEST, message)(scope, receive, send)
            return
        # A copy: the server's access log keeps the path the client used. The project id is
        # hex and dashes, never percent-encoded, so the raw path loses the same characters.
        raw = scope.get("raw_path")
        rewritten = dict(scope, path=path)
        if isinstance(raw, bytes) and raw.startswith(f"/v1/{project}/".encode()):
            rewritten["raw_path"] = b"/v1" + raw[len(project) + 4 :]
        await self.app(rewritten, receive, send)
