"""The control plane that heals itself (issue 11): declared services kept running through the engines
operators already run.

catalogue, config   the declared specs: built-in OpenStack services, overridden by haven.toml (pure)
planner             observations -> actions and holds (pure; registered as such in the import contracts)
ports, drivers/     systemd over D-Bus, HAProxy's runtime API, HTTP/TCP probes, and simulated ones
reconciler          observe -> plan -> persisted idempotent actions through the drivers -> alerts
"""
