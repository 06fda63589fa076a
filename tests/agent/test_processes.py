"""Process checks read from /proc: a real dummy process stops and starts, the agent says so once each time."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.agent.processes import ProcessWatch, running_names


@pytest.fixture
def dummy_name() -> str:
    return f"haven-dummy-{uuid.uuid4().hex[:8]}"


def start_dummy(name: str) -> subprocess.Popen[bytes]:
    # exec -a: argv[0] is the name (comm stays "sleep"), as a service started under its own name.
    return subprocess.Popen(["bash", "-c", f"exec -a {name} sleep 300"])


@pytest.fixture
def dummy(dummy_name: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_dummy(dummy_name)
    yield proc
    proc.kill()
    proc.wait()


def wait_running(name: str, up: bool) -> None:
    for _ in range(200):
        if (name in running_names([name])) == up:
            return
        subprocess.run(["sleep", "0.01"], check=True)
    raise AssertionError(f"{name} running={not up} still")


def test_a_process_that_dies_and_comes_back(dummy_name: str, dummy: subprocess.Popen[bytes]) -> None:
    changes: list[tuple[str, bool]] = []
    watch = ProcessWatch([dummy_name], lambda n, up: changes.append((n, up)))
    wait_running(dummy_name, True)
    watch.check()
    assert changes == []  # running: nothing to say
    dummy.kill()
    dummy.wait()  # reaped: a zombie would not count as running anyway
    watch.check()
    watch.check()
    assert changes == [(dummy_name, False)]  # reported once, not at every check
    again = start_dummy(dummy_name)
    try:
        wait_running(dummy_name, True)
        watch.check()
        assert changes == [(dummy_name, False), (dummy_name, True)]
    finally:
        again.kill()
        again.wait()


def test_a_process_missing_at_start_is_reported(dummy_name: str) -> None:
    changes: list[tuple[str, bool]] = []
    ProcessWatch([dummy_name], lambda n, up: changes.append((n, up))).check()
    assert changes == [(dummy_name, False)]


def test_an_interpreters_script_counts_by_its_name(dummy_name: str, tmp_path: Path) -> None:
    # python3 /usr/bin/nova-compute: comm and argv[0] are the interpreter's, argv[1] the service's.
    script = tmp_path / dummy_name
    script.write_text("import time\ntime.sleep(300)\n")
    proc = subprocess.Popen(["python3", str(script)])
    try:
        wait_running(dummy_name, True)
    finally:
        proc.kill()
        proc.wait()
    assert dummy_name not in running_names([dummy_name])


def test_a_cmdline_pattern_tells_two_processes_of_one_name_apart(dummy_name: str, tmp_path: Path) -> None:
    # haven's lab: several nova-computes on one machine, each with its own --config-file.
    script = tmp_path / dummy_name
    script.write_text("sleep 300\n")

    def start(conf: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sh", str(script), "--config-file", conf], start_new_session=True)

    def stop(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the shell and its sleep
        proc.wait()

    mine, other = start("host-1.conf"), start("host-2.conf")
    try:
        wait_running(dummy_name, True)
        assert running_names([dummy_name], cmdline={dummy_name: "host-1.conf"}) == {dummy_name}
        stop(mine)
        assert running_names([dummy_name]) == {dummy_name}  # the other one still answers to the name
        changes: list[tuple[str, bool]] = []
        ProcessWatch([dummy_name], lambda n, up: changes.append((n, up)),
                     cmdline={dummy_name: "host-1.conf"}).check()  # fmt: skip
        assert changes == [(dummy_name, False)]
    finally:
        stop(mine)
        stop(other)
