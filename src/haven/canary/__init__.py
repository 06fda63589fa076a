"""Synthetic checks: scheduled canary boots per availability zone and cheap API probes."""
