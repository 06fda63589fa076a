"""What starts haven serve's explainer (haven.service.explaining.build_explaining): ``[diagnosis]
alertmanager_url`` alone is enough (haven's incidents go there, and its webhook brings alerts to explain);
an empty ``[diagnosis]`` still starts nothing. haven serve doing so for real, with a real Alertmanager:
tests/api/test_alertmanager_webhook_real.py."""

from __future__ import annotations

from pathlib import Path

from haven.service.config import load_config
from haven.service.explaining import build_explaining


def test_alertmanager_url_alone_starts_the_explainer(tmp_path: Path) -> None:
    (tmp_path / "haven.toml").write_text('[diagnosis]\nalertmanager_url = "http://127.0.0.1:9093/"\n')
    explaining = build_explaining(load_config(tmp_path))
    assert explaining is not None
    assert explaining.describe() == (
        "explaining failures (no notifications, no metrics, incidents to Alertmanager at http://127.0.0.1:9093)"
    )


def test_nothing_to_read_or_send_starts_nothing(tmp_path: Path) -> None:
    (tmp_path / "haven.toml").write_text("[diagnosis]\nincident_s = 600.0\n")
    assert build_explaining(load_config(tmp_path)) is None
