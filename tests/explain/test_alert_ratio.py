"""bench/alert_ratio.py's counting, without a lab: raw symptom alerts haven posted (distinct by their labels
without ``cause``, first firing post in the window) against the notifications Alertmanager delivered, and
whether each injected root was named; and the configurations it hands Alertmanager and haven serve."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bench_modules import load_bench
from haven.lab.state import LabState
from haven.notify.alertmanager import Alertmanager, AmAlert
from haven.service.config import load_config


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("alert_ratio")


def at(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + ".000Z"


def cause(node: str, sent: float) -> dict[str, Any]:
    labels = {"alertname": "HavenRootCause", "haven_role": "cause", "cause": node, "severity": "critical"}
    return {"labels": labels, "endsAt": at(sent + 180)}


def symptom(record: str, node: str, sent: float, ends: float | None = None) -> dict[str, Any]:
    labels = {"alertname": "HavenSymptom", "haven_role": "symptom", "cause": node,
              "symptom": record.split(":")[0], "subject": "az1", "explanation": record}  # fmt: skip
    return {"labels": labels, "endsAt": at(sent + 180 if ends is None else ends)}


def page(*alerts: dict[str, Any]) -> dict[str, Any]:
    return {"version": "4", "alerts": [{"status": "firing", "labels": a["labels"]} for a in alerts]}


def test_symptoms_per_notification_and_the_roots_named(bench: ModuleType) -> None:
    t = 1_800_000_000.0
    windows = [bench.Window("keystone-killed", "keystone", t + 100, t + 200),
               bench.Window("database-killed", "mariadb", t + 200, t + 300),
               bench.Window("keystone-hung", "keystone", t + 300, t + 400)]  # fmt: skip
    posted = [
        (t + 90, [symptom("canary:w", "", t + 90)]),  # before any window
        (t + 110, [cause("keystone", t + 110), symptom("probe:e1", "keystone", t + 110),
                   symptom("canary:e2", "keystone", t + 110)]),
        (t + 120, [symptom("canary:old", "", t + 120, ends=t + 120)]),  # a resolve: no symptom
        (t + 150, [symptom("probe:e4", "nova-api", t + 150)]),
        (t + 170, [cause("keystone", t + 170), symptom("probe:e1", "keystone", t + 170),
                   symptom("canary:e2", "keystone", t + 170), symptom("canary:e3", "keystone", t + 170)]),
        (t + 175, [symptom("probe:e4", "keystone", t + 175)]),  # ranked again: still one symptom
        (t + 210, [symptom("canary:e5", "", t + 210)]),
        (t + 290, [cause("keystone", t + 290)]),  # still firing at t + 300
    ]  # fmt: skip
    delivered = [(t + 115, page(cause("keystone", 0))), (t + 216, page(symptom("canary:e5", "", 0)))]
    found = bench.count(windows, posted, delivered)
    first, second, third = found["faults"]
    assert (first["symptoms"], first["notifications"], first["ratio"]) == (4, 1, 4.0)
    assert first["root_named"] and first["relabelled"] == 1
    assert first["by_symptom"] == {"probe -> keystone": 1, "canary -> keystone": 2, "probe -> nova-api": 1}
    assert first["notified"] == {"HavenRootCause keystone": 1}
    assert (second["symptoms"], second["notifications"], second["ratio"]) == (1, 1, 1.0)
    assert not second["root_named"] and not second["root_firing_before"]
    assert second["notified"] == {"HavenSymptom -": 1}  # a symptom with no cause is paged as itself
    assert (third["symptoms"], third["notifications"], third["ratio"]) == (0, 0, None)
    assert not third["root_named"] and third["root_firing_before"]
    assert (found["symptoms"], found["notifications"], found["ratio"]) == (5, 2, 2.5)
    assert found["unnotified"] == ["database-killed", "keystone-hung"]
    assert found["unnotified_not_firing_before"] == ["database-killed"]
    assert found["outside_windows"] == 1


def test_alertmanager_gets_the_shipped_route_and_inhibition_with_the_bench_s_waits(bench: ModuleType) -> None:
    config = bench.alertmanager_config("http://127.0.0.1:1/hook", "5s", "30s", "1h")
    assert config["route"]["group_by"] == ["cause", "alertname"]
    assert (config["route"]["group_wait"], config["route"]["group_interval"]) == ("5s", "30s")
    assert config["route"]["repeat_interval"] == "1h"
    rule = {"source_matchers": ['haven_role="cause"'], "target_matchers": ['haven_role="symptom"'],
            "equal": ["cause"]}  # fmt: skip
    assert config["inhibit_rules"] == [rule]
    assert config["receivers"] == [
        {"name": "default", "webhook_configs": [{"url": "http://127.0.0.1:1/hook", "send_resolved": False}]}
    ]


def test_serve_s_configuration_is_haven_s_own_with_its_canary_tag_and_alertmanager(
    bench: ModuleType, tmp_path: Path
) -> None:
    lab_toml = tmp_path / "lab.toml"
    lab_toml.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n')
    state = LabState(str(tmp_path), ["compute-1"], {}, files={"haven.toml": str(lab_toml)}, image_id="img",
                     flavor="m1.tiny")  # fmt: skip
    path = tmp_path / "haven.toml"
    path.write_text(bench.serve_config(state, 30.0, "http://127.0.0.1:9/"))
    config = load_config(tmp_path, path)
    assert config.canary.enabled and config.canary.settings.tag == "haven-serve"
    assert config.canary.settings.interval_s == 30.0 and config.canary.settings.boot_timeout_s == 40.0
    assert config.diagnosis.settings.alerting.url == "http://127.0.0.1:9"
    assert config.diagnosis.settings.alerting.settle_s == 20.0  # haven's defaults otherwise
    lab_toml.write_text(lab_toml.read_text() + "[diagnosis]\n")
    with pytest.raises(SystemExit, match="already has a"):
        bench.serve_config(state, 30.0, "http://127.0.0.1:9")


async def test_the_recorders_see_what_haven_posts_and_what_alertmanager_pages(
    bench: ModuleType, tmp_path: Path
) -> None:
    """Debian's Alertmanager between the bench's pass-through and its webhook: a cause, two symptoms it
    mutes and one without a cause, posted through the pass-through; two pages come out."""
    if not bench.ALERTMANAGER.exists():
        pytest.skip("prometheus-alertmanager is not installed")
    waits = argparse.Namespace(group_wait="1s", group_interval="1s", repeat_interval="1h")
    now = time.time()
    sent = [cause("keystone", now), symptom("canary:a", "keystone", now), symptom("probe:b", "keystone", now),
            symptom("probe:c", "", now)]  # fmt: skip
    with (
        bench.Recorder() as hook,
        bench.alertmanager(tmp_path, hook.url, waits) as url,
        bench.Recorder(forward=url) as wire,
    ):
        alerts = [AmAlert(a["labels"], {}, now, now + 60) for a in sent]
        await Alertmanager(wire.url).post(alerts)
        assert len(await Alertmanager(wire.url).alerts()) == 4  # GET handed on too
        deadline = time.monotonic() + 15
        while len(hook.posts) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.5)  # more group intervals: nothing else comes
    window = bench.Window("keystone-killed", "keystone", now - 1, time.time())
    found = bench.count([window], wire.posts, hook.posts)
    assert (found["symptoms"], found["notifications"], found["unnotified"]) == (3, 2, [])
    assert found["faults"][0]["notified"] == {"HavenRootCause keystone": 1, "HavenSymptom -": 1}
