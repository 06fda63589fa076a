#!/usr/bin/env bash
# Install the system (Debian) packages that haven's build and tests need.
#
# Today that is only the PostgreSQL server binaries (initdb, pg_ctl, postgres):
# the test-suite starts its own throw-away server on a free port, so no
# system-wide cluster is needed or wanted.
#
# Idempotent: does nothing when /usr/lib/postgresql/*/bin/initdb exists.
# Must run as root to install anything (apt-get); as another user it only
# checks, and fails with a clear message if something is missing.
#
# Used by `make system-deps` (and therefore `make test` / .ci/run).
set -euo pipefail

PG_PACKAGES=(postgresql)

log() { printf 'system-deps: %s\n' "$*"; }
die() { printf 'system-deps: ERROR: %s\n' "$*" >&2; exit 1; }

find_initdb() {
    # Newest major version first; prints nothing if PostgreSQL is absent.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1 || true
}

initdb_path="$(find_initdb)"
if [[ -n "$initdb_path" ]]; then
    log "PostgreSQL server already installed: ${initdb_path} (nothing to do)"
    exit 0
fi

log "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb)"

if [[ "$(id -u)" -ne 0 ]]; then
    die "installing Debian packages (${PG_PACKAGES[*]}) needs root. Run as root:
    sudo $0
or: sudo apt-get install ${PG_PACKAGES[*]}"
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian/Ubuntu only; install the PostgreSQL server (initdb, pg_ctl, postgres) by other means"

export DEBIAN_FRONTEND=noninteractive

# Remember which clusters were already running, so that we only stop the one
# (if any) that the package's postinst creates and starts.
clusters_before=""
if command -v pg_lsclusters >/dev/null 2>&1; then
    clusters_before="$(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1 "/" $2}' || true)"
fi

log "running: apt-get update"
apt-get update -q

log "running: apt-get install -y --no-install-recommends ${PG_PACKAGES[*]}"
apt-get install -y -q --no-install-recommends "${PG_PACKAGES[@]}"

# Debian's postinst creates a 'main' cluster on port 5432 and may start it
# (it does wherever invoke-rc.d is allowed to start services).  The tests start
# their own server on a free port, so stop a cluster we just caused to run.
if command -v pg_lsclusters >/dev/null 2>&1; then
    while read -r ver name port status _; do
        [[ "$status" == "online" ]] || continue
        if grep -qxF "${ver}/${name}" <<<"$clusters_before"; then
            continue
        fi
        log "stopping cluster ${ver}/${name} (port ${port}) started by the package install; tests run their own server"
        pg_ctlcluster "$ver" "$name" stop || log "warning: could not stop cluster ${ver}/${name}"
    done < <(pg_lsclusters --no-header 2>/dev/null || true)
fi

initdb_path="$(find_initdb)"
[[ -n "$initdb_path" ]] || die "installed ${PG_PACKAGES[*]} but /usr/lib/postgresql/*/bin/initdb is still missing"
log "PostgreSQL server installed: ${initdb_path}"
log "note: Debian does not put initdb/pg_ctl on PATH; use $(dirname "$initdb_path")/"
