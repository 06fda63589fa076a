#!/usr/bin/env bash
# Debian's python3 ships without venv/ensurepip until python3-venv is installed.
# Called by `make venv` only when `python3 -m venv` has just failed.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
  echo "python3 -m venv failed: install Debian's python3-venv (as root: apt-get install python3-venv)" >&2
  exit 1
fi
echo "+ installing python3-venv (python3 -m venv failed without it)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
