"""The host agent (``haven agent``): runs on every compute host and tells the engine what it sees.

- ``config``: the agent's TOML settings.
- ``runner``: the ``Agent`` that owns every part below under one TaskGroup.
- heartbeats: one etcd lease per configured channel (``haven.coordination.leases.HostHeartbeat``).
- ``libvirt_watch``: libvirt domain events (libvirt-python, the optional ``agent`` extra).
- ``processes``: nova-compute, libvirtd, ovs-vswitchd... running or not (read from /proc).
- ``reports``: events -> Masakari notification bodies (VM, PROCESS), as masakari-monitors sends them.
- ``spool`` and ``reporter``: every notification is written to disk, then delivered with retries.

Layer: next to haven.service (it may use coordination and domain; the CLI starts it).
"""
