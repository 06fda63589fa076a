"""Takeover time after SIGKILL of the leading engine, on a real etcd; prints figures, asserts nothing.

Starts its own etcd (/usr/bin/etcd, Debian's etcd-server) on free loopback ports in a temporary
folder. Each run: a leader process (this script with --lead) wins through haven's EtcdElector, a
follower in this process watches; the leader is SIGKILLed and the clock runs until the follower
leads. The goal (issue 4) is at most the lease TTL + 1 s.

Run: .venv/bin/python bench/takeover.py [--runs 5] [--ttl 3]      (about 5 s per run)
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from haven.coordination import elector_from_url
from haven.coordination.election_etcd import EtcdElector
from haven.coordination.etcd import EtcdClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_etcd(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    client, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    argv = ["/usr/bin/etcd", "--name", "bench", "--data-dir", str(folder / "data"),
            "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"bench={peer_url}",
            "--log-level", "warn"]  # fmt: skip
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=0.5).json().get("health") == "true":
                return process, client
        except (httpx.HTTPError, ValueError):
            time.sleep(0.05)
    process.kill()
    raise SystemExit("etcd did not become healthy in 20 s")


async def lead(url: str, cluster: str, ttl_s: int) -> None:
    elector = elector_from_url(url, "doomed", cluster=cluster, ttl_s=ttl_s)
    task = asyncio.create_task(elector.run())
    print(f"LEADER {await elector.wait_leading()}", flush=True)
    await task


async def one_run(port: int, run: int, ttl_s: int) -> float:
    url, cluster = f"etcd://127.0.0.1:{port}", f"bench{run}"
    argv = [sys.executable, __file__, "--lead", url, cluster, str(ttl_s)]
    leader = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert leader.stdout is not None
    client = EtcdClient(f"http://127.0.0.1:{port}", display_url=url)
    follower = EtcdElector(client, "follower", cluster=cluster, ttl_s=ttl_s)
    task: asyncio.Task[None] | None = None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(leader.stdout.readline), 30)
        assert line.startswith("LEADER"), line
        task = asyncio.create_task(follower.run())  # only now: the leader process must win first
        while follower.status().leader != "doomed":
            await follower.changed(0.1)
        await asyncio.sleep(0.5 + run * 0.37 % 1.0)  # kill at varied points of the keep-alive cycle
        killed = time.monotonic()
        leader.send_signal(signal.SIGKILL)
        await asyncio.wait_for(follower.wait_leading(), ttl_s + 30)
        return time.monotonic() - killed
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
        leader.kill()
        leader.wait()
        leader.stdout.close()


async def main(runs: int, ttl_s: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="haven-bench-etcd-"))
    etcd, port = start_etcd(folder)
    try:
        times = [await one_run(port, run, ttl_s) for run in range(runs)]
    finally:
        etcd.send_signal(signal.SIGTERM)
        etcd.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"takeover after SIGKILL of the leader, lease TTL {ttl_s} s, {runs} runs (etcd 3.4, loopback):")
    print(f"  median {statistics.median(times):.2f} s   max {max(times):.2f} s   min {min(times):.2f} s")
    print(f"  goal: <= TTL + 1 s = {ttl_s + 1} s   runs: {' '.join(f'{t:.2f}' for t in times)}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--lead":
        asyncio.run(lead(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--runs", type=int, default=5)
        parser.add_argument("--ttl", type=int, default=3)
        options = parser.parse_args()
        asyncio.run(main(options.runs, options.ttl))
