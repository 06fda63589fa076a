"""A real Keystone 30 for the tests: one per session, built on haven.lab.keystone.

The fixture installs Keystone's pinned tool venv the first time (about half a minute,
then reused from the tools cache), bootstraps it in a temporary folder, serves it on a
free loopback port and provisions what the auth tests need: haven's service user (role
``service``, as keystonemiddleware's users have) and one user per role of interest in a
``demo`` project. Progress is printed past pytest's capture, so a slow first install is
visible in the log. A Keystone that cannot be installed (no package index) skips
locally and fails under CI, like a missing binary.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from haven.lab.keystone import Account, KeystoneServer, Provisioner
from haven.lab.toolenv import ToolInstallError, ensure_tool_env

from .process import free_port


@dataclass(frozen=True)
class KeystoneLab:
    server: KeystoneServer
    provisioner: Provisioner
    service: Account  # haven's own service user
    admin: Account  # admin role on the demo project
    member: Account
    reader: Account

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def keystone(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeystoneLab]:
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[keystone fixture] {message}", flush=True)

    started = time.monotonic()
    try:
        ensure_tool_env("keystone", progress=say)
    except ToolInstallError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so Keystone must install: {exc}", pytrace=False)
        pytest.skip(f"Keystone could not be installed: {exc}")
    server = KeystoneServer(tmp_path_factory.mktemp("keystone"), free_port(), progress=say)
    server.start()
    try:
        provisioner = Provisioner(server.admin.session(), server.url, server.region)
        lab = KeystoneLab(
            server=server,
            provisioner=provisioner,
            service=provisioner.account("haven", "service", ("service",)),
            admin=provisioner.account("demo-admin", "demo", ("admin",)),
            member=provisioner.account("demo-member", "demo", ("member",)),
            reader=provisioner.account("demo-reader", "demo", ("reader",)),
        )
        say(f"ready at {server.url} after {time.monotonic() - started:.1f} s")
        yield lab
    finally:
        server.stop()
