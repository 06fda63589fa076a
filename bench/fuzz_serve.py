"""The real-engine API fuzzing of tests/api/test_schemathesis_serve.py, run longer.

Runs that test module (a real `haven serve`: engine, simulated cloud, SQLite store) under pytest
with HAVEN_FUZZ_SCALE=N: N times the examples per operation (15 each in CI) and N times the
stateful runs (4 of 10 chains in CI). Any 5xx fails it, naming the request. Prints pytest's
summary and the wall time.

Run: .venv/bin/python bench/fuzz_serve.py [--scale 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=int, default=20, help="multiple of the CI run's examples (default 20)"
    )
    args = parser.parse_args()
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    env = {**os.environ, "HAVEN_FUZZ_SCALE": str(args.scale)}
    started = time.monotonic()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/api/test_schemathesis_serve.py",
    ]
    code = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    print(f"scale {args.scale}: exit {code} after {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
