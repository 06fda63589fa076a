"""Debian's real Alertmanager (0.25) delivers a Prometheus-style alert to a real ``haven serve`` through
POST /v1/haven/alertmanager, configured with the receiver snippet shipped in deploy/alertmanager/haven.yml
(a bearer token read from haven's token file). ``haven.toml`` sets only ``[diagnosis] alertmanager_url``,
which must be enough to start the explainer. Judged from what haven then holds (its explanations, read
over its API) and what Alertmanager then holds (haven's HavenRootCause active, the HavenSymptom that names
the alert's explanation muted under it), and from haven's alerts coming back through the same receiver
without being explained again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]

from haven.api.routes.haven_alertmanager import ALERTMANAGER_PATH
from haven.diagnosis import EvidenceKind, NodeEvent
from haven.service.token import ensure_token
from haven.store import Store
from servers.process import ServerProcess, free_port, require

BINARY = Path("/usr/bin/prometheus-alertmanager")
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "haven.yml"
HAVEN = str(Path(sys.executable).with_name("haven"))


def shipped_snippet() -> dict[str, Any]:
    """The commented receiver snippet between the markers of deploy/alertmanager/haven.yml, uncommented."""
    lines = SHIPPED.read_text().splitlines()
    start, end = lines.index("# >>> haven receiver"), lines.index("# <<< haven receiver")
    snippet: dict[str, Any] = yaml.safe_load("\n".join(line[2:] for line in lines[start + 1 : end]))
    return snippet


def alertmanager_config(hook: str, token_file: Path) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SHIPPED.read_text())
    snippet = shipped_snippet()
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")  # test-sized waits
    config["route"]["routes"] = snippet["route"]["routes"]
    (webhook,) = snippet["receivers"][0]["webhook_configs"]
    webhook["url"] = hook
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    config["receivers"] += snippet["receivers"]
    return config


def until(check: Callable[[], Any], limit_s: float, what: str) -> Any:
    deadline = time.monotonic() + limit_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {limit_s} s"
        time.sleep(0.2)
    return found


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def test_alertmanager_delivers_to_haven_serve_which_explains_and_sends_back(tmp_path: Path) -> None:
    require(BINARY, "prometheus-alertmanager")
    home = tmp_path / "home"
    am_port, haven_port = free_port(), free_port()
    am_url, haven_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{haven_port}"
    (home / "haven.toml").parent.mkdir()
    (home / "haven.toml").write_text(
        f'[diagnosis]\nalertmanager_url = "{am_url}"\nalertmanager_resend_s = 1.0\n'
        "alertmanager_settle_s = 2.0\n"  # an explanation is sent once it held 2 s (20 by default)
    )
    token = ensure_token(home)  # what haven serve reads (and Alertmanager, from the file)
    now = time.time()
    with Store.open(f"sqlite:///{home / 'haven.db'}") as store:  # the evidence haven holds: MariaDB failed
        store.keep_evidence(
            {"cp:1": NodeEvent("mariadb", EvidenceKind.ERROR, now - 40, "its sql probe failed", "cp:sql:c1")},
            now,
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(haven_url + ALERTMANAGER_PATH, home / "token")))
    args = [str(BINARY), f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="]  # fmt: skip
    am = ServerProcess("alertmanager", args, tmp_path / "alertmanager.log").start()
    err_path = tmp_path / "serve.err"
    with err_path.open("w") as err:
        serve = subprocess.Popen(
            [HAVEN, "serve", "--bind", f"127.0.0.1:{haven_port}"],
            env={**os.environ, "HAVEN_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    haven = httpx.Client(base_url=haven_url, headers={"X-Auth-Token": token}, timeout=5)
    try:
        am.wait_until(lambda: _ok(f"{am_url}/-/ready"), 20, "readiness")
        until(lambda: _ok(f"{haven_url}/healthz"), 30, "haven serve answering")
        rule = {
            "alertname": "HavenCanaryFailing",
            "haven_role": "symptom",
            "zone": "az1",
            "severity": "warning",
        }
        summary = "The latest canary boot in zone az1 failed or was slow"
        fired = {"labels": rule, "annotations": {"summary": summary}, "startsAt": rfc3339(now - 20),
                 "endsAt": rfc3339(now + 120)}  # fmt: skip
        assert httpx.post(f"{am_url}/api/v2/alerts", json=[fired], timeout=5).status_code == 200

        def explained() -> list[dict[str, Any]]:
            records = haven.get("/v1/haven/explanations").json()["explanations"]
            return [r for r in records if r["source"].startswith("alertmanager:") and r["state"] == "done"]

        (record,) = until(explained, 20, "haven explaining the alert Alertmanager delivered")
        assert record["source"] == "alertmanager:HavenCanaryFailing" and record["subject"] == "az1"
        assert record["symptom"]["what"] == summary
        assert record["explanations"][0]["node"] == "mariadb"

        def held() -> dict[tuple[str, str, str], str]:
            alerts = httpx.get(f"{am_url}/api/v2/alerts", timeout=5).json()
            return {
                (
                    a["labels"]["alertname"],
                    a["labels"].get("cause", ""),
                    a["labels"].get("explanation", ""),
                ): a["status"]["state"]
                for a in alerts
            }

        symptom = ("HavenSymptom", "mariadb", record["id"])
        state = until(lambda: (s := held()).get(symptom) and s, 20, "haven's incident in Alertmanager")
        assert state[("HavenRootCause", "mariadb", "")] == "active"
        assert state[symptom] == "suppressed"
        # Alertmanager delivers haven's own alerts to haven too (the same receiver): none is explained again.
        time.sleep(3.0)
        assert [r["id"] for r in explained()] == [record["id"]]
    finally:
        haven.close()
        serve.send_signal(signal.SIGINT)
        serve.wait(timeout=30)
        am.stop()
    said = err_path.read_text()
    assert serve.returncode == 0, said
    assert (
        f"explaining failures (no notifications, no metrics, incidents to Alertmanager at {am_url})" in said
    )


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
