"""`haven agent`: a config mistake is one clear message (exit 2, in-process); SIGTERM stops it cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haven.cli.main import main

HAVEN = str(Path(sys.executable).with_name("haven"))


def test_a_missing_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml does not exist" in capsys.readouterr().err


def test_config_mistakes_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    head = '[agent]\nhost = "c1"\nengine_url = "http://e:1"\n'
    channel = '[[agent.channels]]\nname = "m"\netcd = "http://e:2379"\n'
    cases = {
        '[agent]\nhost = "c1"\n': "agent.engine_url is required",
        head: "no [[agent.channels]]",
        '[agent]\nhost = "c1"\nengine_url = "e:1"\n': "agent.engine_url = 'e:1' is not an http(s)",
        head + "bogus = 1\n": "unknown key agent.bogus",
        head + "process_interval_s = 0\n" + channel: "agent.process_interval_s must be positive",
        head + '[[agent.channels]]\nname = "m"\n': 'needs etcd = "http',
        head + channel + channel: "two [[agent.channels]] have the same name",
        head
        + 'processes = ["nova-compute"]\nprocess_cmdline = { libvirtd = "x" }\n'
        + channel: "agent.process_cmdline.libvirtd must name one of agent.processes",
    }
    for text, message in cases.items():
        config = tmp_path / "agent.toml"
        config.write_text(text)
        assert main(["agent", "--config", str(config)]) == 2, text
        err = capsys.readouterr().err
        assert message in err, (text, err)


def test_sigterm_stops_the_agent_cleanly(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\nhost = "compute-00001"\nengine_url = "http://127.0.0.1:9"\n'
        f'state_dir = "{tmp_path / "state"}"\nlibvirt_uri = ""\nprocesses = []\n'
        '[[agent.channels]]\nname = "management"\netcd = "http://127.0.0.1:9"\n'
    )
    # The global --config (before the subcommand) works too.
    proc = subprocess.Popen([HAVEN, "--config", str(config), "agent"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "state" / "spool.sqlite").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "haven agent stopped cleanly" in err and "Traceback" not in err


def test_the_light_entry_point_names_a_config_mistake(tmp_path: Path) -> None:
    # python -m haven.cli.agent: the agent without the rest of haven's CLI (what `haven lab` runs).
    done = subprocess.run([sys.executable, "-m", "haven.cli.agent", "--config", str(tmp_path / "nope.toml")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "nope.toml does not exist" in done.stderr
