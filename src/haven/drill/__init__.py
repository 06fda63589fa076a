"""Drills: named failures injected into the simulated cloud, judged against ground truth."""
