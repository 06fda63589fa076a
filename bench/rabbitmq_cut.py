"""What the partition cut's string match costs a long connection, with and without connbytes.

    nice -n 19 .venv/bin/python bench/rabbitmq_cut.py [--mb 512] [--runs 5] [--chunk-kib 64]   # root

A loopback listener stands for a node's distribution port; one connection sends ``--mb`` MB to it
(``--chunk-kib`` writes, TCP_NODELAY, read and dropped by a thread) while the cut
(haven.stateful.rabbitmq_cut.Cut, this port as a cut peer's) is in place: the string match in every
packet (``handshake_bytes=None``), in the first HANDSHAKE_BYTES of each connection (connbytes, the
default), and no cut. Modes alternate in each run; prints MB/s and this process's CPU seconds per GB
(both ends are this process) per run, their medians, and the load average. Each cut is healed after
its run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time

from haven.stateful.rabbitmq_cut import Cut, Peer


def _drain(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            while conn.recv(1 << 20):
                pass


def _send(port: int, mb: int, chunk_kib: int) -> tuple[float, float]:
    """MB/s and this process's CPU seconds per GB (both ends are this process: loopback's netfilter
    work is done in the sender's and the reader's system time)."""
    chunk = b"x" * (chunk_kib * 1024)
    started, cpu = time.perf_counter(), time.process_time()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(mb * 1024 // chunk_kib):
            client.sendall(chunk)
    return mb / (time.perf_counter() - started), (time.process_time() - cpu) * 1024 / mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-kib", type=int, default=64, help="each write's size (TCP_NODELAY)")
    args = parser.parse_args()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    threading.Thread(target=_drain, args=(server,), daemon=True).start()
    port = server.getsockname()[1]
    pairs = [(Peer("rabbit-a@localhost", port), Peer("rabbit-b@localhost", 1))]
    modes: dict[str, Cut | None] = {
        "no cut": None, "every packet": Cut(pairs, handshake_bytes=None), "connbytes": Cut(pairs)
    }  # fmt: skip
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    cpus: dict[str, list[float]] = {mode: [] for mode in modes}
    for run in range(args.runs):
        for mode, cut in modes.items():
            if cut is not None:
                cut.make()
            try:
                rate, cpu = _send(port, args.mb, args.chunk_kib)
            finally:
                if cut is not None:
                    cut.heal()
            rates[mode].append(rate)
            cpus[mode].append(cpu)
            method = cut.method if cut is not None else "-"
            print(f"run {run + 1} {mode:>12}: {rate:8.1f} MB/s {cpu:6.2f} CPU s/GB ({method})", flush=True)
    for mode, values in rates.items():
        rate, cpu = statistics.median(values), statistics.median(cpus[mode])
        print(f"median {mode:>12}: {rate:8.1f} MB/s {cpu:6.2f} CPU s/GB")
    print(f"load average: {os.getloadavg()}")
    server.close()


if __name__ == "__main__":
    main()
