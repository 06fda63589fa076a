"""`haven`'s lazy start: a command imports only what it runs; the listing says what the modules say."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from haven.cli.main import COMMANDS, _parser

HEAVY = ("openstack", "sqlalchemy", "fastapi", "uvicorn", "haven.store", "haven.stateful", "haven.lab")


def _listed_help(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {choice.dest: choice.help for choice in sub._choices_actions}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_registers_the_help_listed_for_it(command: str) -> None:
    # The module that builds a command (haven.cli.lab, ...) gives its own help; COMMANDS must repeat it.
    assert _listed_help(_parser(command)) == COMMANDS


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"], ["token", "--help"]])
def test_help_imports_no_driver_store_or_lab(argv: list[str]) -> None:
    code = f"import sys\nfrom haven.cli.main import main\ntry:\n    main({argv!r})\n"
    code += "finally:\n    print(*sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "usage: haven" in done.stdout, done.stderr
    loaded = done.stdout.splitlines()[-1].split()
    assert [m for m in loaded if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY))] == []
