"""Nova's clock as the driver reads it from a real nova-api's answers (the lab, tests/servers/nova.py).

The recorded-answer tests (test_openstack_driver.py) prove the parsing; this one proves that a real
nova-api (behind the lab's WSGI server) sends a ``Date`` on its os-services answer, so ``nova_now``
is filled on a real cloud. The lab runs on this machine: Nova's clock is haven's.
"""

from __future__ import annotations

import time

import pytest

from haven.cloud.openstack import open_cloud
from servers.nova import NovaLab

pytestmark = [
    pytest.mark.nova,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


async def test_a_real_nova_api_dates_its_service_list(nova_lab: NovaLab) -> None:
    cloud = open_cloud("lab", max_workers=2, clouds_yaml=nova_lab.clouds_yaml)
    try:
        before = time.time()
        states = await cloud.compute_service_states()
        after = time.time()
    finally:
        cloud.close()
    assert states and {s.nova_now for s in states} != {None}
    (nova_now,) = {s.nova_now for s in states}  # one answer, one Date
    assert nova_now is not None and before - 1 <= nova_now <= after  # whole seconds, rounded down
    assert cloud.nova_clock.offset == pytest.approx(0.0, abs=1.5)
    for state in states:
        assert state.updated_at is not None and 0 <= nova_now - state.updated_at + 1 < 120, state
