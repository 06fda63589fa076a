"""The commands that read only haven's state or token (`haven token`, `status`, `hosts`, `release`,
`notifications`) check the config file as `haven serve` does, without importing the modules of the
sections parsed elsewhere unless the file has one of them (haven.service.config.load_core_config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from haven.service.config import SECTIONS_ELSEWHERE, load_config, load_core_config

ELSEWHERE = ("haven.explain", "haven.backups", "haven.canary", "haven.controlplane", "haven.stateful")
LAB_LIKE = """[database]
url = "sqlite:///{home}/lab.db"
[api]
bind = "127.0.0.1:15999"
token_file = "{home}/lab-token"
[coordination]
url = "etcd://127.0.0.1:2379"
[detection]
grace_s = 4.0
[fencing]
default_driver = "none"
"""


def _token_run(home: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    code = "import sys\nfrom haven.cli.main import main\n"
    code += "try:\n    code = main(['--home', sys.argv[1], 'token'])\n"
    code += "finally:\n    print(*sys.modules)\nsys.exit(code)"
    done = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=60)
    return done, done.stdout.splitlines()[-1].split()


@pytest.mark.parametrize("config", ["", LAB_LIKE])
def test_token_imports_no_section_parsed_elsewhere(tmp_path: Path, config: str) -> None:
    if config:
        (tmp_path / "haven.toml").write_text(config.format(home=tmp_path))
    token_file = tmp_path / ("lab-token" if config else "token")
    token_file.touch(mode=0o600)
    token_file.write_text("the-token\n")
    done, loaded = _token_run(tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == "the-token", done.stderr
    assert [m for m in loaded if m.startswith(ELSEWHERE) or m.startswith("sqlalchemy")] == []


def test_a_mistake_in_a_section_parsed_elsewhere_still_stops_token(tmp_path: Path) -> None:
    (tmp_path / "haven.toml").write_text("[diagnosis]\nno_such_key = 1\n")
    (tmp_path / "token").touch(mode=0o600)
    done, _ = _token_run(tmp_path)
    assert done.returncode == 2 and "[diagnosis]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "config",
    ["", LAB_LIKE, '[cloud]\ndriver = "openstack"\nname = "x"\n', "[canary]\ninterval_s = 60.0\n"],
)
def test_the_core_is_what_the_whole_config_says(tmp_path: Path, config: str) -> None:
    (tmp_path / "haven.toml").write_text(config.format(home=tmp_path))
    whole, core = load_config(tmp_path), load_core_config(tmp_path)
    assert (core.database_url, core.api) == (whole.database_url, whole.api)


def test_every_section_parsed_elsewhere_is_a_field_of_the_config() -> None:
    from haven.service.config import HavenConfig

    assert set(SECTIONS_ELSEWHERE) <= set(HavenConfig.__dataclass_fields__)
