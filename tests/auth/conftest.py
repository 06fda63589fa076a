"""A real Keystone and a `haven serve` that takes its tokens, shared by tests/auth.

haven serve runs with a ``[keystone]`` section naming haven's service user, and its API
is registered in Keystone's catalog as ``instance-ha`` (public and internal), so clients
that know only Keystone (openstacksdk, masakari-monitors) find haven there.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clients.conftest import HavenServer, start_haven
from haven.lab.keystone import INSTANCE_HA
from servers.keystone import KeystoneLab

pytestmark = pytest.mark.keystone


def keystone_config(lab: KeystoneLab, cache_ttl_s: float = 60.0) -> str:
    return (
        "[keystone]\n"
        f'auth_url = "{lab.url}"\n'
        f'username = "{lab.service.username}"\n'
        f'password = "{lab.service.password}"\n'
        f'project_name = "{lab.service.project_name}"\n'
        f"cache_ttl_s = {cache_ttl_s}\n"
    )


@pytest.fixture(scope="package")
def haven_keystone(keystone: KeystoneLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    """`haven serve` (simulated cloud) checking Keystone tokens, listed in the catalog."""
    home = tmp_path_factory.mktemp("haven-keystone") / "home"
    for server in start_haven(home, config=keystone_config(keystone)):
        keystone.provisioner.endpoint(INSTANCE_HA, "haven", server.endpoint)
        yield server
