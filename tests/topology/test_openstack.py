"""haven.topology: the OpenStack graph is the control-plane catalogue's dependencies plus the compute side."""

from __future__ import annotations

import dataclasses

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.domain.controlplane import ServiceName
from haven.topology import SERVER_BOOT, SERVER_EVACUATE, node_of_binary, openstack_topology, phase_of_fault

TOPOLOGY = openstack_topology(CATALOGUE.values())


def test_the_control_plane_dependencies_come_from_the_catalogue() -> None:
    for name, spec in CATALOGUE.items():
        assert TOPOLOGY.depends_on[name] == spec.depends_on
    assert "rabbitmq" in TOPOLOGY.depends_on["nova-api"]
    assert "placement-api" in TOPOLOGY.depends_on["nova-scheduler"]


def test_an_override_of_the_catalogue_changes_the_graph() -> None:
    specs = [
        dataclasses.replace(spec, depends_on=(*spec.depends_on, ServiceName("memcached")))
        if name == "glance-api"
        else spec
        for name, spec in CATALOGUE.items()
    ]
    assert "memcached" in openstack_topology(specs).depends_on["glance-api"]


def test_the_compute_side_and_the_boot_are_added() -> None:
    compute = TOPOLOGY.depends_on["nova-compute"]
    assert {"glance-api", "neutron-server", "rabbitmq"} <= set(compute)
    boot = set(TOPOLOGY.depends_on[SERVER_BOOT])
    assert {"nova-api", "nova-scheduler", "nova-conductor", "nova-compute", "glance-api"} <= boot
    assert {SERVER_BOOT, SERVER_EVACUATE} <= TOPOLOGY.operations
    assert TOPOLOGY.depends_on[SERVER_EVACUATE] == TOPOLOGY.depends_on[SERVER_BOOT]


def test_every_node_named_anywhere_is_in_the_graph() -> None:
    named = {n for needs in TOPOLOGY.depends_on.values() for n in needs}
    named |= {n for nodes in TOPOLOGY.phases.values() for n in nodes}
    assert named <= set(TOPOLOGY.depends_on)


def test_impact_what_a_failed_service_breaks() -> None:
    assert {"nova-compute", SERVER_BOOT, SERVER_EVACUATE, "glance-api", "keystone"} <= TOPOLOGY.needed_by(
        "mariadb"
    )
    # nova-compute needs it, so does every operation through a compute (needed_by ignores which edges
    # an operation uses: that is haven.topology.impact's finer answer)
    assert TOPOLOGY.needed_by("glance-api") == {
        "nova-compute", SERVER_BOOT, SERVER_EVACUATE, "image-list", "image-upload", "server-delete",
        "server-resize", "server-console",
    }  # fmt: skip
    assert TOPOLOGY.needed_by(SERVER_BOOT) == frozenset()


@pytest.mark.parametrize(
    ("exception", "message", "phase"),
    [
        ("NoValidHost", "No valid host was found. There are not enough hosts available.", "scheduling"),
        ("MaxRetriesExceeded", "Exceeded maximum number of retries. No valid host was found.", "scheduling"),
        ("ImageNotFound", "Image 1 could not be found.", "image download"),
        (
            "BuildAbortException",
            "Build of instance x aborted: Failed to allocate the network(s)",
            "port binding",
        ),
        ("PortBindingFailed", "Binding failed for port p", "port binding"),
        ("RescheduledException", "Build of instance x was re-scheduled: boom", "spawn"),
        ("FlavorDiskTooSmall", "The created instance's disk would be too small.", None),
    ],
)
def test_a_fault_names_its_phase(exception: str, message: str, phase: str | None) -> None:
    assert phase_of_fault(exception, message) == phase


def test_binaries_map_onto_nodes() -> None:
    assert node_of_binary("nova-compute") == "nova-compute"
    assert node_of_binary("nova-osapi_compute") == "nova-api"
    assert node_of_binary("neutron-openvswitch-agent") == "neutron-agent"
