"""The policy table: Masakari's defaults, applied to every route the app declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from haven.api.app import create_app
from haven.api.errors import ApiError
from haven.api.policy import POLICIES, Rule, authorize, policy_for
from haven.domain.clock import VirtualClock
from haven.store import Store


def test_every_masakari_action_in_the_table_is_a_route_of_the_app(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        app = create_app(store, intake=None, token="t", clock=VirtualClock())  # type: ignore[arg-type]
    paths = app.openapi()["paths"]
    declared = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    # The document drops a route's converter ("{id:path}" is "{id}"); the table keys the route as declared.
    table = {(method, re.sub(r":\w+}", "}", path)) for method, path in POLICIES}
    assert table - {("GET", "/v1/")} <= declared  # /v1/ is left out of the document


@pytest.mark.parametrize("roles", [frozenset(), frozenset({"reader"}), frozenset({"member", "reader"})])
@pytest.mark.parametrize(("method", "path"), [key for key, p in POLICIES.items() if p.rule is Rule.ADMIN_API])
def test_every_segment_host_notification_and_vmove_action_needs_admin(
    method: str, path: str, roles: frozenset[str]
) -> None:
    with pytest.raises(ApiError) as refused:
        authorize(method, path, roles)
    assert refused.value.status == 403
    assert refused.value.message == f"Policy doesn't allow {POLICIES[method, path].action} to be performed."
    assert authorize(method, path, frozenset({"admin"})) is POLICIES[method, path]


def test_the_v1_document_needs_only_a_valid_token_and_unknown_routes_need_admin() -> None:
    assert authorize("GET", "/v1", frozenset()).rule is Rule.ANY
    assert authorize("HEAD", "/v1/", frozenset()).rule is Rule.ANY
    haven_own = policy_for("POST", "/v1/notifications/{notification_id}/claim")
    assert haven_own.rule is Rule.ADMIN_API and haven_own.action.startswith("haven:")


def test_havens_status_is_for_readers_too_but_not_members() -> None:
    assert authorize("GET", "/v1/haven/status", frozenset({"reader"})).action == "haven:status:show"
    assert authorize("GET", "/v1/haven/status", frozenset({"admin"})).rule is Rule.READER
    with pytest.raises(ApiError, match=r"Policy doesn't allow haven:status:show to be performed\."):
        authorize("GET", "/v1/haven/status", frozenset({"member"}))
