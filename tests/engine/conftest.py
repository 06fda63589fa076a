"""The VM recovery tests' rigs: ``make_rig(**recovery settings)`` builds a VmRig, closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from vm_rig import MakeRig, VmRig

from haven.domain.settings import RecoverySettings


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    rigs: list[VmRig] = []

    async def make(**recovery: object) -> VmRig:
        url = f"sqlite:///{tmp_path}/haven-{len(rigs)}.db"
        rig = await VmRig.build(url, RecoverySettings(**recovery))  # type: ignore[arg-type]
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        rig.close()
