"""The documentation site (issue 16): docs/reference/ is what the code says today, and MkDocs builds the
whole site with warnings as errors.

- The generated references are current: scripts/gen_docs.py writes them again into a temporary folder and
  each must equal the committed one (the failure says which command regenerates them).
- The configuration reference covers what the loaders accept: every top-level table of haven.toml, every
  key of the tables the loader checks by name, and its documented defaults load to the loader's own.
- ``mkdocs build --strict`` passes (broken links or anchors, pages missing from the nav fail it), and the
  same settings do fail on a broken link, a broken anchor and a page left out of the nav.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from haven.agent.config import parse_agent_config
from haven.domain.errors import ConfigError
from haven.service.config import load_config

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/python scripts/gen_docs.py (or make docs)"


def _gen_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_docs"] = module  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


gen_docs = _gen_docs()


@pytest.fixture(scope="module")
def references() -> tuple[list[Any], list[Any]]:
    """haven.toml's tables and the agent's file's, as the reference documents them (built once)."""
    tables, agent_tables = gen_docs.config_tables()
    return tables, agent_tables


def _known_keys(error: ConfigError) -> set[str]:
    hint = error.hint or ""
    assert hint.startswith("known keys: "), f"not an unknown-key refusal: {error.message} / {hint}"
    return set(hint.removeprefix("known keys: ").split(", "))


def _refusal(tmp_path: Path, text: str) -> ConfigError:
    (tmp_path / "haven.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    return caught.value


def _documented(tables: list[Any], section: str) -> set[str]:
    """The keys of ``[section]`` and the names of its sub-tables, as the reference lists them."""
    names: set[str] = set()
    for table in tables:
        if table.header == f"[{section}]":
            names |= {key.name for key in table.keys}
        elif m := re.match(rf"^\[\[?{re.escape(section)}\.([A-Za-z_]+)", table.header):
            names.add(m.group(1))
    return names


def test_the_generated_references_are_current(tmp_path: Path) -> None:
    written = gen_docs.generate(tmp_path)
    assert {p.name for p in written} == {"configuration.md", "api.md"}
    stale = []
    for fresh in written:
        committed = ROOT / "docs" / "reference" / fresh.name
        old = committed.read_text(encoding="utf-8") if committed.exists() else ""
        new = fresh.read_text(encoding="utf-8")
        if old != new:
            diff = difflib.unified_diff(
                old.splitlines(),
                new.splitlines(),
                f"committed {fresh.name}",
                "from the code",
                lineterm="",
                n=0,
            )
            stale.append(f"docs/reference/{fresh.name}:\n" + "\n".join(list(diff)[:20]))
    assert not stale, f"the generated references are out of date: run {REGENERATE}\n" + "\n".join(stale)


def test_the_api_reference_lists_every_served_operation() -> None:
    document = gen_docs.openapi_document()
    page = (ROOT / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
    operations = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    ]
    assert len(operations) > 30
    missing = [f"{m} {p}" for m, p in operations if f"### {m} `{p}`" not in page]
    assert not missing, f"operations missing from docs/reference/api.md: {missing}; run {REGENERATE}"
    assert "### POST `/v1/notifications`" in page and "| 422 |" in page


def test_every_table_of_haven_toml_is_documented(
    tmp_path: Path, references: tuple[list[Any], list[Any]]
) -> None:
    tables, _ = references
    accepted = _known_keys(_refusal(tmp_path, "[no_such_table]\n"))
    assert gen_docs.top_level_sections(tables) == accepted


@pytest.mark.parametrize(
    "section",
    ["database", "detection", "recovery", "keystone", "coordination", "liveness", "api", "publish", "fencing",
     "segments", "controlplane"],
)  # fmt: skip
def test_the_keys_the_loader_checks_by_name_are_the_documented_ones(
    tmp_path: Path, section: str, references: tuple[list[Any], list[Any]]
) -> None:
    tables, _ = references
    refusal = _refusal(tmp_path, f"[{section}]\nno_such_key = 1\n")
    assert _known_keys(refusal) == _documented(tables, section)


def test_the_cloud_table_documents_both_drivers_keys(
    tmp_path: Path, references: tuple[list[Any], list[Any]]
) -> None:
    tables, _ = references
    simulated = _known_keys(_refusal(tmp_path, '[cloud]\ndriver = "simulated"\nno_such_key = 1\n'))
    openstack = _known_keys(_refusal(tmp_path, '[cloud]\ndriver = "openstack"\nno_such_key = 1\n'))
    assert _documented(tables, "cloud") == {"driver"} | simulated | openstack


def test_the_documented_defaults_are_the_loaders_defaults(
    tmp_path: Path, references: tuple[list[Any], list[Any]]
) -> None:
    """A file that sets every plain key of these tables to its documented default loads as no file does."""
    tables, _ = references
    lines = []
    for section in ("detection", "recovery", "cloud", "coordination", "liveness", "api", "database"):
        (table,) = [t for t in tables if t.header == f"[{section}]"]
        lines.append(table.header)
        for key in table.keys:
            if key.name in ("name", "max_workers"):  # the openstack driver's keys; this file is simulated
                continue
            value = gen_docs.toml_value(key.default)
            if value not in ("none", "required") and not isinstance(key.default, gen_docs.Prose):
                lines.append(f"{key.name} = {value}")
    text = "\n".join(lines).replace("$HAVEN_HOME", str(tmp_path)) + "\n"
    tomllib.loads(text)  # the documented values are TOML
    (tmp_path / "haven.toml").write_text(text)
    from_file = load_config(tmp_path)
    (tmp_path / "haven.toml").unlink()
    assert from_file.engine == load_config(tmp_path).engine
    assert from_file.database_url == f"sqlite:///{tmp_path}/haven.db"
    assert (from_file.simulated, from_file.liveness, from_file.api, from_file.coordination) == (
        load_config(tmp_path).simulated,
        load_config(tmp_path).liveness,
        load_config(tmp_path).api,
        load_config(tmp_path).coordination,
    )


def test_the_agent_reference_has_every_key_the_agent_accepts(references: tuple[list[Any], list[Any]]) -> None:
    _, agent_tables = references
    with pytest.raises(ConfigError) as caught:
        parse_agent_config({"agent": {"no_such_key": 1}})
    assert _known_keys(caught.value) == _documented(agent_tables, "agent")


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
    )


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    built = _mkdocs(ROOT / "mkdocs.yml", tmp_path / "site")
    output = built.stdout + built.stderr
    assert built.returncode == 0, f"mkdocs build --strict failed (run make docs to see it):\n{output}"
    assert "WARNING" not in output, output
    for page in ("index.html", "reference/configuration/index.html", "reference/api/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # A repository file a page links outside docs/ is in the site, and the page's link leads to it.
    assert (tmp_path / "site" / "repo" / "deploy" / "alertmanager" / "haven.yml").is_file()
    assert (
        'href="../repo/deploy/alertmanager/haven.yml"'
        in (tmp_path / "site" / "api" / "index.html").read_text()
    )


def test_the_same_settings_fail_on_broken_links_and_pages_left_out(tmp_path: Path) -> None:
    """Our mkdocs.yml with a two-page nav, over pages with a broken link, a broken anchor and an orphan."""
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config = re.sub(r"\nnav:\n(  .*\n)+", "\nnav:\n  - README.md\n  - other.md\n", config)
    config = config.replace("scripts/mkdocs_hooks.py", str(ROOT / "scripts" / "mkdocs_hooks.py"))
    assert "  - other.md" in config
    (tmp_path / "mkdocs.yml").write_text(config)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "README.md").write_text("# Home\n\n[fine](other.md#a-heading) [gone](missing.md)\n")
    (docs / "other.md").write_text("# Other\n\n## A heading\n\n[no anchor](README.md#nowhere)\n")
    (docs / "orphan.md").write_text("# Not in the nav\n")
    built = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    output = built.stdout + built.stderr
    assert built.returncode != 0, output
    assert "missing.md" in output and "#nowhere" in output and "orphan.md" in output, output
    assert "other.md#a-heading" not in output, output
