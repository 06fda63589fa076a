"""The control plane's drivers: systemd over D-Bus, HAProxy's runtime API, probes, and simulated ones."""
