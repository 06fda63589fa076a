"""The HA lab's HAProxy configuration (haven.lab.ha.haproxy_config): a queue timeout on haven's backends
for a per-server ``maxconn`` (set at runtime by bench/ha_lab.py --maxconn; not written by default while
the kill -9 lab test fails with it), and Debian's HAProxy accepts the file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from haven.lab import ha


def _lab(folder: Path) -> ha.HaLab:
    controllers = [ha.Controller(f"ctl-{n}", f"127.0.1.{n}", folder / f"ctl-{n}", 0) for n in (1, 2)]
    ports = {api.service: 20000 + n for n, api in enumerate(ha.APIS)}
    frontends = {api.service: 21000 + n for n, api in enumerate(ha.APIS)}
    kolla = {"nova-api": 22000}
    return ha.HaLab(folder, controllers, ha.APIS, ports, frontends, kolla)


def _backends(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith(" "):
            current = line.split()[1] if line.startswith("backend ") else ""
            if current:
                out[current] = []
        elif current:
            out[current].append(line.strip())
    return out


def test_maxconn_is_half_the_replicas_gunicorn_threads() -> None:
    workers = int(re.search(r"^workers = (\d+)$", ha._GUNICORN, re.M).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"^threads = (\d+)$", ha._GUNICORN, re.M).group(1))  # type: ignore[union-attr]
    assert workers * threads // 2 == ha.SERVER_MAXCONN  # the other half free for checks and probes


def test_every_haven_backend_has_a_queue_timeout_and_no_server_cap_by_default(tmp_path: Path) -> None:
    backends = _backends(ha.haproxy_config(_lab(tmp_path)))
    for api in ha.APIS:
        lines = backends[api.backend]
        servers = [line for line in lines if line.startswith("server ")]
        assert len(servers) == 2
        assert not any("maxconn" in line for line in servers), servers
        assert f"timeout queue {ha.TIMEOUT_QUEUE}" in lines
    # The Kolla anchor stays as Kolla renders it: no per-server cap.
    assert not any("maxconn" in line for line in backends["nova_api_kolla"])


@pytest.mark.skipif(not Path(ha.HAPROXY).exists(), reason="Debian's haproxy is not installed")
def test_debians_haproxy_accepts_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(ha.haproxy_config(_lab(tmp_path)))
    checked = subprocess.run(
        [ha.HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_spares_members_are_checked_as_the_others(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    spare = ha.Controller("ctl-3", "127.0.1.3", tmp_path / "ctl-3", 0, spare=True)
    added = dict(ha._spare_servers(lab, spare))
    assert all(added[api.backend].endswith(ha._CHECK) for api in ha.APIS)
