"""``[diagnosis]`` in haven.toml, and ``haven explain`` reading the explanations haven stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.diagnosis import EvidenceKind, NodeEvent, Symptom
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.domain.errors import ConfigError
from haven.explain.explainer import Explainer, MetricQuery
from haven.service.config import load_config
from haven.store import Store
from haven.topology import SERVER_BOOT

from .test_explainer import NOW, SETTINGS, TOPOLOGY, recorded

FULL = """
[diagnosis]
transport_url = "rabbit://nova:secret@10.0.0.5:5672/"
prometheus_url = "http://10.0.0.6:9090/"
step_s = 30.0
window_s = 300.0
z_threshold = 4.0
[[diagnosis.metrics]]
node = "glance-api"
metric = "p95 latency"
unit = "s"
query = 'histogram_quantile(0.95, sum by (le) (rate(glance_seconds_bucket[1m])))'
"""


def test_the_diagnosis_section_is_read(tmp_path: Path) -> None:
    (tmp_path / "haven.toml").write_text(FULL)
    diagnosis = load_config(tmp_path).diagnosis
    assert diagnosis.transport_url.startswith("rabbit://") and "secret" not in repr(diagnosis)
    assert diagnosis.prometheus_url == "http://10.0.0.6:9090"
    assert diagnosis.topic == "versioned_notifications" and diagnosis.pool == "haven"
    s = diagnosis.settings
    assert (s.step_s, s.rank.window_s, s.rank.baseline_s, s.rank.z_threshold) == (30.0, 300.0, 3600.0, 4.0)
    assert s.metrics == (
        MetricQuery(
            "glance-api",
            "p95 latency",
            "histogram_quantile(0.95, sum by (le) (rate(glance_seconds_bucket[1m])))",
            "s",
        ),
    )
    assert load_config(tmp_path / "none").diagnosis.transport_url == ""  # absent: nothing


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[diagnosis]\nwindow = 5\n", "window"),
        ("[diagnosis]\nstep_s = -1\n", "step_s"),
        ('[diagnosis]\nprometheus_url = "prometheus:9090"\n', "prometheus_url"),
        ('[diagnosis]\nz_threshold = "high"\n', "z_threshold"),
        ('[[diagnosis.metrics]]\nnode = "glance-api"\nmetric = "p95"\n', "metrics.0.query"),
    ],
)
def test_a_bad_diagnosis_key_is_named(tmp_path: Path, text: str, named: str) -> None:
    (tmp_path / "haven.toml").write_text(text)
    with pytest.raises(ConfigError, match=rf"\[diagnosis\]: {named}"):
        load_config(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
async def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path))
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW + 2), recorded(), SETTINGS)
        store.keep_evidence({"m": NodeEvent("rabbitmq", EvidenceKind.RESTART, NOW - 60)}, NOW)
        failure = ExplanationRecord(
            "instance.create.error:m1",
            "instance.create.error",
            "uuid-1",
            Symptom(SERVER_BOOT, NOW, "boot of vm-1 failed (NoValidHost)", "scheduling"),
            NOW + 1,
        )
        await explainer.open_and_explain(failure)
        pending = ExplanationRecord("alert:a9", "alert:recovery_failed", "c9", Symptom(SERVER_BOOT, NOW), NOW)
        store.open_explanation(pending)
    return tmp_path


async def test_haven_explain_lists_and_shows(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run(capsys, "explain")
    assert code == 0
    assert "instance.create.error:m1" in out and "Placement" in out and "alert:a9" in out and "pending" in out
    code, out, _ = run(capsys, "explain", "instance.create.error:m1")
    assert code == 0
    assert "because Placement p95 latency rose to 0.4" in out
    assert "RabbitMQ restarted at" in out and "ranked causes" in out
    code, out, _ = run(capsys, "explain", "instance.create.error:m1", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["state"] == "done" and doc["symptom"]["phase"] == "scheduling"
    assert [e["node"] for e in doc["explanations"]][:1] == ["placement-api"]
    assert {"rabbitmq", "glance-api"} <= {e["node"] for e in doc["explanations"]}
    code, out, _ = run(capsys, "explain", "--state", "pending", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == ["alert:a9"]


async def test_haven_explain_names_what_is_wrong(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, err = run(capsys, "explain", "nothing-such")
    assert code == 2 and out == "" and "no explanation 'nothing-such'" in err and "haven explain" in err
    code, _, err = run(capsys, "explain", "listen")
    assert code == 2 and "nothing to listen to" in err and "transport_url" in err
