"""nova-api's time spent on each run's rebuild phase, from a `bench/lab.py` output and the lab's request log.

For every haven and oracle run the bench printed, the rebuild phase is taken from the last evacuate
POST Nova logged in the run to the moment the run saw every VM ACTIVE elsewhere; the request times
nova-api logged in it are summed, the watchers' own lists of every server (``servers/detail?all_tenants
=True`` with no host) apart from everything else (haven's verification and detection reads).

Run: .venv/bin/python bench/nova_api_time.py BENCH_OUTPUT LAB/nova/api/nova-api.log
(docs/speed.md, "What stands in the way", has one run's figures.)
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path

REQUEST = re.compile(r'(\d\d:\d\d:\d\d\.\d+) \d+ INFO .*"(GET|POST|PUT|DELETE) (\S+) .*time: ([0-9.]+)')
RUN_END = re.compile(
    r"(\d\d:\d\d:\d\d) (haven|oracle): .*(?:recovered on another host \(Nova\), |all ACTIVE elsewhere )"
    r"([0-9.]+) s"
)


def _time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%H:%M:%S.%f" if "." in text else "%H:%M:%S")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench_output", type=Path)
    parser.add_argument("nova_api_log", type=Path)
    args = parser.parse_args()
    requests = []
    for line in args.nova_api_log.read_text(errors="replace").splitlines():
        if "requestlog" in line and (m := REQUEST.search(line)):
            requests.append((_time(m.group(1)), m.group(2), m.group(3), float(m.group(4))))
    for line in args.bench_output.read_text().splitlines():
        if not (m := RUN_END.match(line)):
            continue
        who, end, total = m.group(2), _time(m.group(1)), float(m.group(3))
        start = end - dt.timedelta(seconds=total + 1.0)
        posts = [r[0] for r in requests if start <= r[0] <= end and r[1] == "POST" and "/action" in r[2]]
        if not posts:
            continue
        last = max(posts)
        phase = [r for r in requests if last < r[0] <= end]
        watcher = sum(r[3] for r in phase if r[2].endswith('all_tenants=True"'))
        other = sum(r[3] for r in phase if not r[2].endswith('all_tenants=True"'))
        span = (end - last).total_seconds()
        print(
            f"{who:7s} total {total:5.1f} s, calls done ~{total - span:5.1f} s, rebuild phase {span:5.1f} s: "
            f"nova-api time of the watcher {watcher:5.1f} s, of everything else {other:5.1f} s "
            f"({other / span if span else 0:.2f} per s)"
        )


if __name__ == "__main__":
    main()
