"""Take the dashboard screenshots in docs/img/ (from the repository: .venv/bin/python docs/screenshots.py).

Starts its own `haven serve` (simulated cloud, a host power loss injected after 6 s, canary boots
and scheduled backups on) in a temporary HAVEN_HOME on a free loopback port, logs in with its token
in Debian's Chromium through Playwright, waits until the recovery is over, saves the login page,
the dashboard and its panels, and stops the server it started (SIGINT, then waits for it). Then a
follower's page: its own etcd (Debian's etcd-server) in a temporary folder, a stand-in engine that
leads (haven's elector in a process of its own), and a second `haven serve` with [coordination] that
follows it; everything it started is stopped the same way.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

OUT = Path(__file__).parent / "img"
HAVEN = str(Path(sys.executable).with_name("haven"))
CONFIG = """
[canary]
interval_s = 20.0
[backups]
max_concurrent = 4
jitter_s = 0.0
[backups.default]
schedule = "hourly"
keep = 2
"""
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], home: str, url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env={**os.environ, "HAVEN_HOME": home}, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("haven serve did not start")
        time.sleep(0.2)


STAND_IN = """
import asyncio, sys
from haven.coordination import elector_from_url
async def main():
    elector = elector_from_url(sys.argv[1], sys.argv[2], cluster="docs", ttl_s=3)
    task = asyncio.create_task(elector.run())
    await elector.wait_leading()
    print("LEADER", flush=True)
    await task
asyncio.run(main())
"""


def follower() -> None:
    """dashboard-follower.png: the page of a `haven serve` that another engine leads."""
    from haven.lab.etcd import ETCD, EtcdServer

    with tempfile.TemporaryDirectory(prefix="haven-shots-") as home:
        etcd = EtcdServer(Path(ETCD), Path(home))
        etcd.start()
        procs: list[subprocess.Popen[bytes]] = []
        try:
            identity = "ctl-1:812@10.0.0.5:15868"  # as haven serve names itself: host:pid@address:port
            leader = subprocess.Popen(
                [sys.executable, "-c", STAND_IN, etcd.url, identity], stdout=subprocess.PIPE
            )
            procs.append(leader)
            assert leader.stdout is not None and leader.stdout.readline().startswith(b"LEADER")
            Path(home, "haven.toml").write_text(f'[coordination]\nurl = "{etcd.url}"\ncluster = "docs"\n')
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            procs.append(start([HAVEN, "serve", "--bind", f"127.0.0.1:{port}"], home, url))
            token = Path(home, "token").read_text().strip()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                page = browser.new_page(viewport={"width": 1100, "height": 420})
                page.goto(f"{url}/dashboard/")
                page.get_by_label("Token").fill(token)
                page.get_by_role("button", name="Log in").click()
                expect(page.locator("#leadership")).to_contain_text(
                    f"The leader is {identity}", timeout=20_000
                )
                expect(page.locator("#live")).to_contain_text("not live")
                page.screenshot(path=OUT / "dashboard-follower.png")
                browser.close()
        finally:
            for proc in reversed(procs):  # haven serve stops cleanly on SIGINT; the stand-in just ends
                proc.send_signal(signal.SIGINT if proc is not procs[0] else signal.SIGKILL)
                proc.wait(timeout=30)
                if proc.stdout is not None:
                    proc.stdout.close()
            etcd.stop()


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="haven-shots-") as home:
        Path(home, "haven.toml").write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [
            HAVEN,
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--inject",
            "host-power-loss",
            "--inject-after",
            "6",
        ]
        proc = subprocess.Popen(argv, env={**os.environ, "HAVEN_HOME": home}, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("haven serve did not start")
                time.sleep(0.2)
            token = Path(home, "token").read_text().strip()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                page = browser.new_page(viewport={"width": 1100, "height": 900})
                page.goto(f"{url}/dashboard/")
                page.screenshot(path=OUT / "dashboard-login.png")
                page.get_by_label("Token").fill(token)
                page.get_by_role("button", name="Log in").click()
                card = page.locator("article.notification").first
                expect(card).to_contain_text("finished", timeout=60_000)
                page.screenshot(path=OUT / "dashboard.png", full_page=True)
                card.screenshot(path=OUT / "dashboard-timeline.png")
                page.locator("#plot").screenshot(path=OUT / "dashboard-plot.png")
                page.locator("section[aria-labelledby=controlplane-title]").screenshot(
                    path=OUT / "dashboard-controlplane.png"
                )
                expect(page.locator("#canaries table")).to_be_visible(timeout=30_000)  # live, no reload
                page.locator("section[aria-labelledby=explanations-title]").screenshot(
                    path=OUT / "dashboard-explanations.png"
                )
                page.locator("section[aria-labelledby=backups-title]").screenshot(
                    path=OUT / "dashboard-backups.png"
                )
                browser.close()
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    follower()
    print(f"wrote {', '.join(sorted(f.name for f in OUT.glob('dashboard*.png')))} in {OUT}")


if __name__ == "__main__":
    main()
