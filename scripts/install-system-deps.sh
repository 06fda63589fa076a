#!/usr/bin/env bash
# Install the system (Debian) packages that haven's build and tests need.
#
# The tests start their own throw-away servers on free loopback ports (PostgreSQL,
# RabbitMQ, etcd, libvirtd, MariaDB) from these packages' binaries, so no system-wide
# service is needed or wanted. libvirt-dev, pkg-config and gcc build libvirt-python
# (for virtualbmc's IPMI emulator and the host agent); ipmitool is the reference IPMI
# client.
#
# Idempotent: installs only the packages whose probe file is missing, in one apt call.
# Must run as root to install anything (apt-get); as another user it only checks, and
# fails with a clear message if something is missing.
#
# Used by `make system-deps` (and therefore `make test` / .ci/run).
set -euo pipefail

# package -> a file the package provides (glob allowed); present means installed.
declare -A PROBES=(
    [postgresql]='/usr/lib/postgresql/*/bin/initdb'
    [rabbitmq-server]='/usr/lib/rabbitmq/bin/rabbitmq-server'
    [etcd-server]='/usr/bin/etcd'
    [libvirt-daemon]='/usr/sbin/libvirtd'
    [libvirt-clients]='/usr/bin/virsh'
    [libvirt-dev]='/usr/lib/x86_64-linux-gnu/pkgconfig/libvirt.pc'
    [pkg-config]='/usr/bin/pkg-config'
    [gcc]='/usr/bin/gcc'
    [ipmitool]='/usr/bin/ipmitool'
    [prometheus]='/usr/bin/prometheus'
    # Explanations sent to a real Alertmanager (tests/notify/test_alertmanager*.py start their own).
    [prometheus-alertmanager]='/usr/bin/prometheus-alertmanager'
    [mariadb-server]='/usr/sbin/mariadbd'
    # Galera clusters (haven.stateful's tests start 3 nodes on loopback): the wsrep provider, and rsync
    # for the state transfer (SST) of a node that joins empty.
    [galera-4]='/usr/lib/galera/libgalera_smm.so'
    [rsync]='/usr/bin/rsync'
    # The control-plane drivers' tests: systemd as PID 1 in a PID namespace, its D-Bus, and HAProxy.
    [systemd]='/lib/systemd/systemd'
    [dbus-daemon]='/usr/bin/dbus-daemon'
    [haproxy]='/usr/sbin/haproxy'
    # The container driver's test: a rootful Podman engine, and an image built from a static busybox.
    [podman]='/usr/bin/podman'
    [busybox-static]='/usr/share/doc/busybox-static'
    # The dashboard's browser tests: Playwright (requirements.lock) drives Debian's Chromium, never a
    # browser of its own download.
    [chromium]='/usr/bin/chromium'
    # The fault drills' network faults (haven.drill.faults_network): an iptables REDIRECT or DROP rule on
    # one lab port (tests/explain/test_fault_network.py makes one in its own network namespace), and ss
    # to close a service's pooled connections. Podman only suggests iptables.
    [iptables]='/usr/sbin/iptables'
    [iproute2]='/usr/bin/ss'
    # The HA lab's token caches (haven.lab.ha: one memcached per controller behind keystonemiddleware);
    # the lab starts its own on loopback ports, never the package's service on 11211.
    [memcached]='/usr/bin/memcached'
)

log() { printf 'system-deps: %s\n' "$*"; }
die() { printf 'system-deps: ERROR: %s\n' "$*" >&2; exit 1; }

present() { compgen -G "$1" >/dev/null; }

missing=()
for package in $(printf '%s\n' "${!PROBES[@]}" | sort); do
    present "${PROBES[$package]}" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    log "all system packages present (nothing to do)"
    exit 0
fi
log "missing: ${missing[*]}"

if [[ "$(id -u)" -ne 0 ]]; then
    die "installing Debian packages (${missing[*]}) needs root. Run as root:
    sudo $0
or: sudo apt-get install --no-install-recommends ${missing[*]}"
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian/Ubuntu only; install ${missing[*]} by other means"

export DEBIAN_FRONTEND=noninteractive

# Remember which PostgreSQL clusters were already running, so that we only stop the one
# (if any) that the package's postinst creates and starts.
clusters_before=""
if command -v pg_lsclusters >/dev/null 2>&1; then
    clusters_before="$(pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1 "/" $2}' || true)"
fi

log "running: apt-get update"
apt-get update -q

log "running: apt-get install -y --no-install-recommends ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"

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

# Debian's memcached postinst starts its service on 127.0.0.1:11211 wherever services may start. The
# lab and the tests start their own on free ports: stop one this install started (by its unit, or by
# the init script's pidfile) and keep it from starting at boot; one that ran before is left alone.
if [[ " ${missing[*]} " == *" memcached "* ]]; then
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        if systemctl is-active --quiet memcached.service; then
            log "stopping memcached.service started by the package install; the lab runs its own"
            systemctl stop memcached.service || log "warning: could not stop memcached.service"
        fi
        systemctl disable --quiet memcached.service || log "warning: could not disable memcached.service"
    else
        pidfile=/run/memcached.pid  # /etc/init.d/memcached's
        pid="$(cat "$pidfile" 2>/dev/null || true)"
        if [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == memcached ]]; then
            log "stopping memcached (pid $pid) started by the package install; the lab runs its own"
            kill "$pid" || log "warning: could not stop memcached (pid $pid)"
        fi
        update-rc.d memcached disable >/dev/null 2>&1 || true
        deb-systemd-helper disable memcached.service >/dev/null 2>&1 || true  # a later systemd boot
    fi
fi

for package in "${missing[@]}"; do
    present "${PROBES[$package]}" || die "installed $package but ${PROBES[$package]} is still missing"
done
log "installed: ${missing[*]}"
