"""Masakari's default policy, in one table: which role each API action needs.

Called by ``haven.api.auth.require_policy`` (the dependency every protected route
declares, also named ``require_admin``) with the route that matched, so adding a route
needs no change here unless Masakari names its action or the route is for readers too:
an unlisted route gets the strictest rule.

The table copies Masakari's shipped defaults (masakari/policies/*.py): every
segment, host, notification and VM-move action, reads included, is
``rule:admin_api`` (``is_admin:True``, which Masakari's ``context_is_admin``
grants to a token holding the ``admin`` role); Masakari has no reader or member
rule for them. The ``/v1`` version document carries no policy check in Masakari
(any authenticated caller). A refusal is 403 with Masakari's wording,
"Policy doesn't allow <action> to be performed.".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus

from haven.api.errors import ApiError

ADMIN_ROLE = "admin"
READER_ROLE = "reader"


class Rule(Enum):
    ANY = "@"  # any authenticated caller
    ADMIN_API = "rule:admin_api"  # is_admin:True, i.e. the admin role
    READER = "role:reader or rule:admin_api"  # haven's own read-outs only; Masakari has no such rule


@dataclass(frozen=True, slots=True)
class Policy:
    action: str  # Masakari's policy name, e.g. os_masakari_api:segments:create
    rule: Rule


def _rules(prefix: str, routes: Mapping[tuple[str, str], str]) -> dict[tuple[str, str], Policy]:
    return {
        route: Policy(f"os_masakari_api:{prefix}:{name}", Rule.ADMIN_API) for route, name in routes.items()
    }


_SEGMENT = "/v1/segments/{segment_id}"
_HOST = "/v1/segments/{segment_id}/hosts/{host_id}"
_NOTIFICATION = "/v1/notifications/{notification_id}"

# (method, route path as declared in haven.api.routes) -> Masakari's action and its default rule.
POLICIES: Mapping[tuple[str, str], Policy] = {
    ("GET", "/v1"): Policy("os_masakari_api:versions:index", Rule.ANY),
    ("GET", "/v1/"): Policy("os_masakari_api:versions:index", Rule.ANY),
    **_rules(
        "segments",
        {
            ("GET", "/v1/segments"): "index",
            ("GET", _SEGMENT): "detail",
            ("POST", "/v1/segments"): "create",
            ("PUT", _SEGMENT): "update",
            ("DELETE", _SEGMENT): "delete",
        },
    ),
    **_rules(
        "os-hosts",
        {
            ("GET", "/v1/segments/{segment_id}/hosts"): "index",
            ("GET", _HOST): "detail",
            ("POST", "/v1/segments/{segment_id}/hosts"): "create",
            ("PUT", _HOST): "update",
            ("DELETE", _HOST): "delete",
        },
    ),
    **_rules(
        "notifications",
        {
            ("GET", "/v1/notifications"): "index",
            ("GET", _NOTIFICATION): "detail",
            ("POST", "/v1/notifications"): "create",
        },
    ),
    # haven's own resources (not Masakari's): the engine's status is for readers too.
    ("GET", "/v1/haven/status"): Policy("haven:status:show", Rule.READER),
    ("GET", "/v1/haven/explanations"): Policy("haven:explanations:index", Rule.READER),
    ("GET", "/v1/haven/explanations/{explanation_id:path}"): Policy("haven:explanations:detail", Rule.READER),
    ("GET", "/v1/haven/canaries"): Policy("haven:canaries:index", Rule.READER),
    ("GET", "/v1/haven/backups"): Policy("haven:backups:index", Rule.READER),
    ("POST", "/v1/haven/backups"): Policy("haven:backups:create", Rule.ADMIN_API),
    ("GET", "/v1/haven/backups/restores"): Policy("haven:backups:restores:index", Rule.READER),
    ("POST", "/v1/haven/backups/restores"): Policy("haven:backups:restores:create", Rule.ADMIN_API),
    ("GET", "/v1/haven/recovery-points"): Policy("haven:recovery-points:index", Rule.READER),
    ("GET", "/v1/haven/impact"): Policy("haven:impact:show", Rule.READER),
    ("GET", "/v1/haven/audit"): Policy("haven:audit:show", Rule.READER),
    **_rules(
        "vmoves",
        {
            ("GET", f"{_NOTIFICATION}/vmoves"): "index",
            ("GET", f"{_NOTIFICATION}/vmoves/{{vmove_id}}"): "detail",
        },
    ),
}


def policy_for(method: str, path: str) -> Policy:
    """The policy of a route; routes Masakari does not have (haven's own) need the admin role."""
    method = "GET" if method == "HEAD" else method
    found = POLICIES.get((method, path))
    return found if found is not None else Policy(f"haven:{method} {path}", Rule.ADMIN_API)


def allowed(policy: Policy, roles: frozenset[str]) -> bool:
    if policy.rule is Rule.ANY or ADMIN_ROLE in roles:
        return True
    return policy.rule is Rule.READER and READER_ROLE in roles


def authorize(method: str, path: str, roles: frozenset[str]) -> Policy:
    """The route's policy if ``roles`` satisfy it; else 403 in Masakari's words."""
    policy = policy_for(method, path)
    if not allowed(policy, roles):
        raise ApiError(HTTPStatus.FORBIDDEN, f"Policy doesn't allow {policy.action} to be performed.")
    return policy
