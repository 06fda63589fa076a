"""The lab tests share the session's real Nova (tests/servers/nova.py)."""

from servers.nova import nova_lab  # noqa: F401 (the session's lab)
