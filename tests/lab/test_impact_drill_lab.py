"""`haven drill controlplane-impact --cloud lab --only glance-api` on the session's real lab, through the CLI.

A CI-sized slice of the impact matrix (the whole one is ~25 minutes: docs/drills.md): Glance alone is
stopped, with four operations, two the model says stop (image list, image upload) and two it says keep
working (token issue, server list), so the row can disagree either way. The cells are what the drill's
clients saw (each request's answer or its timeout); the test checks them, then the lab's own state:
the kernel showed Glance's process stopped while the drill ran, the very same Glance runs on, and it
answers an image list afterwards. The operation timeout is 10 s (the drill's default is 20 s): the two
operations that must fail wait it out once. About 30 s on a quiet machine.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from haven.cli.main import main
from haven.lab.state import alive, load_state
from servers.nova import NovaLab

pytestmark = [
    pytest.mark.nova,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
OPERATIONS = ("token-issue", "server-list", "image-list", "image-upload")


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def test_glance_stopped_stops_the_image_operations_and_nothing_else(
    nova_lab: NovaLab, capsys: pytest.CaptureFixture[str]
) -> None:
    state = load_state(nova_lab.folder)
    assert state is not None
    glance = next(p for p in state.processes if p.name == "glance-api" and alive(p))
    seen_stopped = threading.Event()
    done = threading.Event()

    def watch() -> None:  # the kernel's own word that the drill stopped Glance
        while not done.is_set():
            if _stopped(glance.pid):
                seen_stopped.set()
            done.wait(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    capsys.readouterr()
    try:
        code = main([
            "drill", "controlplane-impact", "--cloud", "lab", "--lab-folder", str(nova_lab.folder),
            "--only", "glance-api", "--operations", ",".join(OPERATIONS), "--operation-timeout", "10",
            "--json",
        ])  # fmt: skip
    finally:
        done.set()
        watcher.join(5)
    captured = capsys.readouterr()
    doc: dict[str, Any] = json.loads(captured.out)
    assert "glance-api" in captured.err  # progress lines, on stderr
    assert doc["operations"] == list(OPERATIONS) and doc["services"] == ["glance-api"]
    assert list(doc["matrix"]) == ["baseline", "glance-api", "baseline-after"]
    for baseline in ("baseline", "baseline-after"):
        assert {op: c["seen"] for op, c in doc["matrix"][baseline].items() if c["seen"] == "fails"} == {}
    row = doc["matrix"]["glance-api"]
    seen = {op: "fails" if c["seen"] == "fails" else "works" for op, c in row.items()}
    assert seen == {
        "token-issue": "works", "server-list": "works", "image-list": "fails", "image-upload": "fails",
    }, row  # fmt: skip
    assert {op: c["predicted"] for op, c in row.items()} == {
        "token-issue": "works", "server-list": "works", "image-list": "stops", "image-upload": "stops",
    }  # fmt: skip
    assert all(c["seconds"] >= 9.5 for op, c in row.items() if seen[op] == "fails"), row  # timed out
    assert doc["whole_again"] == {"baseline": True, "glance-api": True, "baseline-after": True}
    assert doc["disagreements"] == [] and doc["verdict"] == "agrees" and code == 0
    assert seen_stopped.is_set(), "the kernel never showed Glance stopped"
    assert alive(glance) and not _stopped(glance.pid), "the same Glance runs on, continued"
    images = [i.id for i in nova_lab.connect().image.images()]
    assert nova_lab.image_id in images
