"""`[recovery] return_to_service`: who ends the maintenance of a host haven took out of service.

haven serve's default follows Masakari (masakari/engine/manager.py sets on_maintenance and nothing
in Masakari clears it: its operators do); "automatic" is haven's return to service. A drill runs
with automatic return whatever the file says: it judges the host's return too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.cli.main import main
from haven.service.config import for_drills, load_config


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(text)
    return path


def test_haven_serve_follows_masakari_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_config(tmp_path).engine.recovery.return_to_service == "masakari"
    assert load_config(tmp_path, cloud_name="mycloud").engine.recovery.return_to_service == "masakari"
    automatic = _config(tmp_path, '[recovery]\nreturn_to_service = "automatic"\n')
    assert load_config(tmp_path, automatic).engine.recovery.return_to_service == "automatic"


def test_drills_return_hosts_themselves(tmp_path: Path) -> None:
    engine = load_config(tmp_path).engine
    assert for_drills(engine).recovery.return_to_service == "automatic"
    assert for_drills(engine).detection == engine.detection


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("true", 'true was "automatic"'),  # the key's former form is named with its new value
        ("false", 'false is closest to "masakari"'),
        ('"auto"', "an operator clears on_maintenance"),
        ('"Masakari"', "an operator clears on_maintenance"),
    ],
)
def test_a_bad_value_names_the_key_the_choices_and_what_they_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str, hint: str
) -> None:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    path = _config(tmp_path, f"[recovery]\nreturn_to_service = {value}\n")
    assert main(["--config", str(path), "serve"]) == 2
    err = capsys.readouterr().err
    assert "[recovery]: return_to_service must be one of 'masakari', 'automatic'" in err
    assert hint in err and "Traceback" not in err
    assert not (tmp_path / "home" / "haven.db").exists()
