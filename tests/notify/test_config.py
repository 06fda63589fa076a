"""The [publish] section: what it accepts, and every mistake named with its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.domain.errors import ConfigError
from haven.service.config import load_config
from haven.service.publishing import build_sinks


def test_nothing_configured_publishes_nothing(tmp_path: Path) -> None:
    publish = load_config(tmp_path).publish
    assert not publish.enabled
    assert build_sinks(publish, {}) == []


def test_a_full_section(tmp_path: Path) -> None:
    publish = load_config(tmp_path, _write(tmp_path, """
[publish]
webhooks = ["https://ops.example.com/haven", "http://127.0.0.1:9000/hook"]
webhook_secret_env = "HOOK_SECRET"
transport_url = "rabbit://haven:pw@rabbit.example.com:5672/"
topic = "versioned_notifications"
publisher_host = "ha-1"
first_retry_s = 2
give_up_after_s = 3600
""")).publish  # fmt: skip
    assert publish.enabled and publish.topic == "versioned_notifications"
    assert (publish.settings.first_retry_s, publish.settings.give_up_after_s) == (2.0, 3600.0)
    assert "pw" not in repr(publish)
    sinks = build_sinks(publish, {"HOOK_SECRET": "abc"})
    assert [s.name for s in sinks] == [
        "webhook:https://ops.example.com/haven",
        "webhook:http://127.0.0.1:9000/hook",
        "rabbitmq:versioned_notifications",
    ]
    assert publish.secret({"HOOK_SECRET": "abc"}) == b"abc"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ('webhooks = "https://x/h"\nwebhook_secret = "s"', "webhooks must be an array"),
        ('webhooks = ["ftp://x/h"]\nwebhook_secret = "s"', "'ftp://x/h' is not an http(s) URL"),
        ('webhooks = ["https://x/h"]', "webhooks need a secret"),
        ('webhooks = ["https://x/h"]\nwebhook_secret = "s"\nwebhook_secret_env = "E"', "not both"),
        ('webhook_secret = ""', "webhook_secret must be a non-empty string"),
        ('transport_url = "amqp://h/"', "transport_url must be a rabbit:// URL"),
        ("topic = 3", "topic must be a non-empty string"),
        ("first_retry_s = -1", "first_retry_s must not be negative"),
        ("batch = 0", "batch must be positive"),
        ('max_retry_s = "soon"', "max_retry_s must be a float"),
        ("webhook = []", "unknown key(s) webhook"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, section: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, _write(tmp_path, f"[publish]\n{section}\n"))
    assert named in str(caught.value)
    assert "[publish]" in str(caught.value)


def test_a_missing_secret_variable_is_named_with_the_fix(tmp_path: Path) -> None:
    publish = load_config(tmp_path, _write(tmp_path, """
[publish]
webhooks = ["https://x/h?token=abc"]
webhook_secret_env = "HAVEN_HOOK_SECRET"
""")).publish  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        build_sinks(publish, {})
    assert "HAVEN_HOOK_SECRET" in str(caught.value) and "export HAVEN_HOOK_SECRET=" in str(caught.value)


def test_a_transport_url_oslo_cannot_use_is_named(tmp_path: Path) -> None:
    publish = load_config(
        tmp_path, _write(tmp_path, '[publish]\ntransport_url = "rabbit://u:pw@h:notaport/"\n')
    ).publish
    with pytest.raises(ConfigError) as caught:
        build_sinks(publish, {})
    assert "transport_url" in str(caught.value) and "pw" not in str(caught.value)
