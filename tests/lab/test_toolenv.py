"""Tool venvs: built once from the shipped lock, reused while the lock is unchanged, never half-built."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.domain.errors import ConfigError
from haven.lab import toolenv
from haven.lab.toolenv import ToolInstallError, ensure_tool_env, known_tools, venv_path


def test_every_shipped_lock_pins_with_hashes() -> None:
    assert "sushy-tools" in known_tools()
    for tool in known_tools():
        text = toolenv.lock_text(tool)
        assert "--hash=sha256:" in text, f"{tool}.lock has no hashes: run make lock-tools TOOL={tool}"


def test_unknown_tool_is_named_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown tool 'nope'.*sushy-tools"):
        ensure_tool_env("nope", tmp_path)


def test_venv_folder_follows_the_lock_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = venv_path("sushy-tools", tmp_path)
    monkeypatch.setattr(toolenv, "lock_text", lambda tool: "changed\n")
    assert venv_path("sushy-tools", tmp_path) != before


def test_a_failed_install_leaves_nothing_that_looks_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lock naming a package that cannot exist: pip fails, the venv is removed, the error says why.
    monkeypatch.setattr(toolenv, "lock_text", lambda tool: "haven-no-such-package==0.0.0 --hash=sha256:00\n")
    with pytest.raises(ToolInstallError, match="installing sushy-tools failed"):
        ensure_tool_env("sushy-tools", tmp_path)
    assert not venv_path("sushy-tools", tmp_path).exists()


def test_a_built_venv_is_reused() -> None:
    # The shared tools folder, so the emulator fixtures and this test pay for one build.
    first = ensure_tool_env("sushy-tools")
    assert (first / "bin" / "sushy-emulator").exists()
    messages: list[str] = []
    assert ensure_tool_env("sushy-tools", progress=messages.append) == first
    assert messages == []
