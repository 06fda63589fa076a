"""`haven audit` imports what its input needs: a layout file, neither the store nor openstacksdk; haven's
own sources on the simulated cloud, no openstacksdk (haven.cli.clouds imports it for a real cloud only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from haven.store import Store


def _loaded(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    code = "import sys\nfrom haven.cli.main import main\ntry:\n    code = main(sys.argv[1:])\n"
    code += "finally:\n    print(*sys.modules)\nsys.exit(code)"
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    return done, set(done.stdout.splitlines()[-1].split())


def test_a_layout_file_is_audited_without_the_store_or_openstacksdk(tmp_path: Path) -> None:
    layout = {"domains": {"ctl-1": "rack-a", "ctl-2": "rack-b"}, "services": {"keystone": ["ctl-1", "ctl-2"]}}
    (tmp_path / "layout.json").write_text(json.dumps(layout))
    done, loaded = _loaded(["audit", "--layout", str(tmp_path / "layout.json"), "--json"])
    assert done.returncode == 0 and '"findings": []' in done.stdout, done.stderr
    assert {"haven.store", "sqlalchemy", "openstack"} & loaded == set()


def test_the_simulated_clouds_audit_imports_no_openstacksdk(tmp_path: Path) -> None:
    Store.open(f"sqlite:///{tmp_path / 'haven.db'}").close()
    done, loaded = _loaded(["--home", str(tmp_path), "audit", "--json"])
    assert done.returncode in (0, 1) and '"findings"' in done.stdout, done.stderr
    assert "haven.store" in loaded and "openstack" not in loaded
