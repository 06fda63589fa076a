"""The openstack CLI with python-masakariclient's plugin (`openstack segment ...`,
`openstack notification ...`) against a real `haven serve`.

Pointed at haven without Keystone: ``--os-auth-type admin_token --os-endpoint URL/v1
--os-token=TOKEN``. The plugin builds its instance-ha proxy from that session, so the
admin_token endpoint serves as the endpoint and no ``--os-endpoint-override`` is needed;
it asks for microversion 1.3 (``--os-ha-api-version``'s default). The ``=`` form of
``--os-token`` is what scripts should use: an argument that starts with "-" would be
taken for an option (haven's tokens never do, other tokens may).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

from .conftest import OPENSTACK, HavenServer


def openstack(server: HavenServer, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    auth = ["--os-auth-type", "admin_token", "--os-endpoint", server.endpoint, f"--os-token={server.token}"]
    result = subprocess.run(
        [OPENSTACK, *auth, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, f"openstack {' '.join(argv)}:\n{result.stderr}"
    return result


def as_json(server: HavenServer, *argv: str) -> Any:
    return json.loads(openstack(server, *argv, "-f", "json").stdout)


def test_segments_are_created_listed_shown_updated_and_deleted(
    haven_server: HavenServer, unique: Callable[[str], str]
) -> None:
    name = unique("cli-segment")
    created = as_json(haven_server, "segment", "create", name, "auto", "COMPUTE", "--description", "via osc")
    assert (created["name"], created["recovery_method"], created["description"]) == (name, "auto", "via osc")
    assert created["is_enabled"] is True

    listed = as_json(haven_server, "segment", "list")
    assert {"segment-az1", "segment-az2", "segment-az3", name} <= {s["name"] for s in listed}

    for ref in (created["uuid"], name):  # the plugin finds a segment by uuid or by name
        assert as_json(haven_server, "segment", "show", ref)["uuid"] == created["uuid"]

    updated = as_json(
        haven_server, "segment", "update", name, "--recovery_method", "reserved_host", "--is_enabled", "False"
    )
    assert (updated["recovery_method"], updated["is_enabled"]) == ("reserved_host", False)

    openstack(haven_server, "segment", "delete", name)
    gone = openstack(haven_server, "segment", "show", created["uuid"], check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr.lower()


def test_segment_hosts_are_created_listed_shown_updated_and_deleted(
    haven_server: HavenServer, unique: Callable[[str], str]
) -> None:
    """A bootstrap host leaves segment-az2 (a host is in one segment at a time), joins a new
    segment, is shown and updated there, and goes back."""
    members = as_json(haven_server, "segment", "host", "list", "segment-az2")
    host = sorted(members, key=lambda h: h["name"])[0]["name"]
    taken = openstack(
        haven_server, "segment", "host", "create", host, "COMPUTE", "SSH", "segment-az2", check=False
    )
    assert taken.returncode != 0 and "already exists" in taken.stderr

    segment = unique("cli-hosts")
    as_json(haven_server, "segment", "create", segment, "auto", "COMPUTE")
    openstack(haven_server, "segment", "host", "delete", "segment-az2", host)
    try:
        created = as_json(haven_server, "segment", "host", "create", host, "COMPUTE", "SSH", segment)
        assert (created["name"], created["type"], created["control_attributes"]) == (host, "COMPUTE", "SSH")
        assert [h["name"] for h in as_json(haven_server, "segment", "host", "list", segment)] == [host]

        shown = as_json(haven_server, "segment", "host", "show", segment, host)
        assert shown["uuid"] == created["uuid"] and shown["on_maintenance"] is False

        updated = as_json(
            haven_server,
            "segment",
            "host",
            "update",
            segment,
            host,
            "--on_maintenance",
            "True",
            "--reserved",
            "True",
        )
        assert (updated["on_maintenance"], updated["reserved"]) == (True, True)

        openstack(haven_server, "segment", "host", "delete", segment, created["uuid"])
        assert as_json(haven_server, "segment", "host", "list", segment) == []
    finally:
        openstack(haven_server, "segment", "delete", segment, check=False)
        as_json(haven_server, "segment", "host", "create", host, "COMPUTE", "SSH", "segment-az2")


def test_notifications_are_created_listed_and_shown_with_their_workflow(haven_server: HavenServer) -> None:
    """A report about a host that still heartbeats: accepted, then failed before any fencing."""
    host = "compute-00004"
    generated = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    payload = json.dumps({"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"})
    created = as_json(haven_server, "notification", "create", "COMPUTE_HOST", host, generated, payload)
    assert created["type"] == "COMPUTE_HOST"  # the plugin shows no hostname column
    # The CLI prints what it read back; under load haven may have failed it already.
    assert created["status"] in ("new", "running", "failed")
    ref = created["notification_uuid"]

    listed = as_json(haven_server, "notification", "list")
    assert ref in [n["notification_uuid"] for n in listed]
    assert next(n for n in listed if n["notification_uuid"] == ref)["type"] == "COMPUTE_HOST"

    deadline = time.monotonic() + 60
    while (shown := as_json(haven_server, "notification", "show", ref))["status"] in ("new", "running"):
        assert time.monotonic() < deadline, shown
        time.sleep(0.5)
    assert shown["status"] == "failed"
    assert shown["payload"]["event"] == "STOPPED"
    assert "still heartbeats" in json.dumps(shown["recovery_workflow_details"])


def test_a_wrong_token_is_refused(haven_server: HavenServer) -> None:
    server = dataclasses.replace(haven_server, token="wrong-token")
    refused = openstack(server, "segment", "list", "-f", "json", check=False)
    # As against Masakari (whose /v1 document sits behind keystonemiddleware), the 401 comes
    # first from the version discovery, which keystoneauth reports in its own words.
    assert refused.returncode != 0 and refused.stdout == ""
    assert "Unable to find a version discovery document" in refused.stderr
