"""haven.lab.ha_openstack.on_clusters: the one test of "OpenStack was moved onto the clusters"
(`haven lab status`, the stateful drills' check of Nova after a heal, and the refusal of a second move)."""

from __future__ import annotations

from pathlib import Path

from haven.lab import ha_openstack


def test_a_lab_counts_as_moved_once_the_rewrite_has_kept_the_plain_configs(tmp_path: Path) -> None:
    for folder, name in (("nova", "nova.conf"), ("placement", "placement.conf"),
                         ("keystone", "keystone.conf"), ("glance", "glance-api.conf")):  # fmt: skip
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text("[DEFAULT]\n")
    assert not ha_openstack.on_clusters(tmp_path)
    ha_openstack._rewrite_configs(tmp_path, ha_openstack.Backends(4000, "pw", (1, 2, 3)))
    assert ha_openstack.on_clusters(tmp_path)
