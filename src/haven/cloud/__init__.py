"""Ports to a cloud: the Cloud protocol and its drivers (simulated; OpenStack later)."""
