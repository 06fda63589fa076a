"""Fixtures of the control plane's tests: real systemd in a PID namespace and real HAProxy (see servers)."""

from .servers import haproxy_factory, systemd_hosts, systemd_ns

__all__ = ["haproxy_factory", "systemd_hosts", "systemd_ns"]
