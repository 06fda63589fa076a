"""Fencing: power a host off through its BMC so its VMs can never run twice."""
