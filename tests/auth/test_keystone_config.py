"""The [keystone] section: what selects Keystone auth, and every mistake named without the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.domain.errors import ConfigError
from haven.service.config import load_config

GOOD = """
[keystone]
auth_url = "http://127.0.0.1:5000/v3"
username = "haven"
project_name = "service"
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "haven.toml"
    path.write_text(text)
    return load_config(tmp_path, path)


def test_no_section_means_the_local_token(tmp_path: Path) -> None:
    assert load(tmp_path, "").keystone is None


def test_the_password_comes_from_the_named_variable_and_is_never_shown(tmp_path: Path) -> None:
    config = load(tmp_path, GOOD + 'password_env = "HAVEN_TEST_KS_PASSWORD"\n').keystone
    assert config is not None and config.username == "haven" and config.cache_ttl_s == 60.0
    assert config.resolve_password({"HAVEN_TEST_KS_PASSWORD": "s3cret-value"}) == "s3cret-value"
    with pytest.raises(ConfigError, match="HAVEN_TEST_KS_PASSWORD, which is not set"):
        config.resolve_password({})
    inline = load(tmp_path, GOOD + 'password = "s3cret-value"\n').keystone
    assert inline is not None and "s3cret-value" not in repr(inline)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "exactly one of password and password_env"),
        ('password = "a"\npassword_env = "B"\n', "exactly one of password and password_env"),
        ('password = "a"\ncache_ttl_s = 0\n', "must be positive"),
        ('password = "a"\nregion = "x"\n', "unknown key"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, GOOD + extra)


def test_auth_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="auth_url must be an http"):
        load(tmp_path, GOOD.replace("http://127.0.0.1:5000/v3", "keystone:5000") + 'password = "a"\n')
