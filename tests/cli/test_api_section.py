"""``[api]`` in haven.toml: where `haven serve` listens and keeps its token (`haven lab` writes both)."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.cli.main import main
from haven.domain.errors import ConfigError
from haven.service.config import load_config
from haven.service.token import ensure_token


def test_the_token_file_named_in_api_is_the_one_haven_token_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "lab" / "token"
    config = tmp_path / "haven.toml"
    config.write_text(f'[api]\nbind = "127.0.0.1:1234"\ntoken_file = "{token_file}"\n')
    loaded = load_config(tmp_path / "home", config)
    assert loaded.api.bind == "127.0.0.1:1234" and loaded.api.token_path == token_file
    token = ensure_token(tmp_path / "home", token_file)  # what `haven serve` does at start
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "home" / "token").exists()
    assert main(["--home", str(tmp_path / "home"), "--config", str(config), "token"]) == 0
    assert capsys.readouterr().out.strip() == token


def test_an_unknown_api_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "haven.toml"
    config.write_text("[api]\nport = 1\n")
    with pytest.raises(ConfigError, match="port"):
        load_config(tmp_path, config)
