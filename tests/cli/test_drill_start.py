"""`haven drill`'s lazy start: its help and `fault --list` import no drill; reading [diagnosis] no explainer.

haven.cli.drill_args repeats the drills' names so that listing them imports nothing: held equal here to
the names their own modules define."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from haven.cli import drill_args

# What no drill's --help nor the fault catalogue needs: the lab, the store, the clusters, the clouds.
HEAVY: tuple[str, ...] = ("openstack", "sqlalchemy", "httpx", "haven.store", "haven.lab", "haven.stateful")
HEAVY += (
    "haven.explain",
    "haven.cloud.openstack",
    "haven.backups",
    "haven.service.engine",
    "haven.drill.run",
)
# What the explainer imports and its settings do not need.
EXPLAINER = ("haven.explain.explainer", "haven.explain.alerting", "haven.store", "sqlalchemy", "httpx")


def _run(body: str, *argv: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``body`` run in a new interpreter with ``argv``; what it printed, and every module it imported."""
    code = "import sys\ntry:\n" + "".join(f"    {line}\n" for line in body.splitlines())
    code += "finally:\n    print(*sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    return done, done.stdout.splitlines()[-1].split()


def _heavy(loaded: list[str], heavy: tuple[str, ...] = HEAVY) -> list[str]:
    return [m for m in loaded if m in heavy or m.startswith(tuple(f"{h}." for h in heavy))]


@pytest.mark.parametrize(
    "argv", [["drill", "--help"], ["drill", "host-power-loss", "--help"], ["drill", "fault", "--help"]]
)
def test_drill_help_imports_no_drill(argv: list[str]) -> None:
    done, loaded = _run("from haven.cli.main import main\nmain(sys.argv[1:])", *argv)
    assert done.returncode == 0 and "usage: haven drill" in done.stdout, done.stderr
    assert "controlplane-impact" in done.stdout and "--rabbitmq-split-all" in done.stdout
    assert _heavy(loaded) == []


def test_the_fault_catalogue_is_listed_without_the_lab() -> None:
    code = "from haven.cli.main import main\nsys.exit(main(sys.argv[1:]))"
    done, loaded = _run(code, "drill", "fault", "--list", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads("\n".join(done.stdout.splitlines()[:-1]))
    assert len(rows) > 30 and {"keystone-hung", "glance-hung"} <= {r["name"] for r in rows}
    assert _heavy(loaded) == []


def test_the_names_are_the_drills_own() -> None:
    from haven.cli import backups, fault_drill, galera, impact_drill, rabbitmq
    from haven.drill.leader_loss import NAME
    from haven.drill.scenarios import SCENARIOS

    assert tuple(SCENARIOS) == drill_args.SIMULATED and drill_args.LEADER_LOSS == NAME
    assert (drill_args.GALERA, drill_args.RABBITMQ) == (galera.SCENARIOS, rabbitmq.SCENARIOS)
    assert drill_args.BACKUP_DRILLS == backups.DRILLS
    assert (drill_args.FAULT, drill_args.IMPACT) == (fault_drill.SCENARIO, impact_drill.SCENARIO)


DIAGNOSIS = """[diagnosis]
prometheus_url = "http://prometheus.example.com:9090"
alertmanager_url = "http://127.0.0.1:9093/"
haven_url = "http://haven.example.com:15868"
window_s = 300.0
"""


def test_reading_the_diagnosis_section_imports_no_explainer(tmp_path: Path) -> None:
    (tmp_path / "haven.toml").write_text(DIAGNOSIS)
    code = "from pathlib import Path\nfrom haven.service.config import load_config\n"
    code += "print(load_config(Path(sys.argv[1])).diagnosis.prometheus_url)"
    done, loaded = _run(code, str(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("http://prometheus.example.com:9090\n"), (
        done.stderr
    )
    assert _heavy(loaded, EXPLAINER) == []


def test_the_explainers_settings_are_what_the_section_says(tmp_path: Path) -> None:
    from haven.explain.alerting import AlertingSettings
    from haven.explain.config import DEFAULT_METRICS, DiagnosisConfig
    from haven.explain.explainer import ExplainSettings, rank_settings
    from haven.explain.incidents import IncidentSettings
    from haven.service.config import load_config

    (tmp_path / "haven.toml").write_text(DIAGNOSIS)
    assert load_config(tmp_path).diagnosis.settings == ExplainSettings(
        rank=rank_settings(window_s=300.0),
        metrics=DEFAULT_METRICS,
        alerting=AlertingSettings(
            "http://127.0.0.1:9093",
            60.0,
            IncidentSettings(900.0, 180.0, "http://haven.example.com:15868"),
            5.0,
            20.0,
        ),
    )
    assert DiagnosisConfig().settings == ExplainSettings()  # no section: the explainer's own defaults
