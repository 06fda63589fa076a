"""The real etcd for the liveness source's end-to-end test (tests/servers/etcd.py)."""

from servers.etcd import etcd, etcd_server  # noqa: F401
