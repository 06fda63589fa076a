"""The lab's hold control (haven.lab.hardware): what drills call to crash a compute's part and keep it down.

Only the control file here; the watcher acting on it runs on the real lab (test_lab_liveness.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.lab.hardware import hold_agent_down, hold_compute_down, read_holds
from haven.lab.process import LabServiceError


def lab_folder(tmp_path: Path) -> Path:
    (tmp_path / "hardware").mkdir()
    computes = [{"bmc": {"host": h, "url": "", "username": "", "system_id": ""}, "argv": [], "log": ""}
                for h in ("compute-1", "compute-2")]  # fmt: skip
    (tmp_path / "hardware" / "plan.json").write_text(json.dumps({"computes": computes}))
    return tmp_path


def test_holds_are_set_per_host_and_part_and_released(tmp_path: Path) -> None:
    folder = lab_folder(tmp_path)
    assert read_holds(folder) == {}
    hold_compute_down(folder, "compute-1", True)
    hold_agent_down(folder, "compute-1", True)
    hold_agent_down(folder, "compute-2", True)
    assert read_holds(folder) == {"compute-1": ["agent", "nova-compute"], "compute-2": ["agent"]}
    hold_compute_down(folder, "compute-1", False)
    hold_agent_down(folder, "compute-2", False)
    hold_agent_down(folder, "compute-2", False)  # releasing twice is harmless
    assert read_holds(folder) == {"compute-1": ["agent"]}


def test_an_unknown_host_or_a_folder_without_a_lab_is_named(tmp_path: Path) -> None:
    with pytest.raises(LabServiceError, match="no lab hardware"):
        hold_compute_down(tmp_path, "compute-1", True)
    folder = lab_folder(tmp_path)
    with pytest.raises(LabServiceError, match=r"compute-9.*compute-1, compute-2"):
        hold_compute_down(folder, "compute-9", True)
