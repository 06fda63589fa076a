"""The simulated cloud: a digital twin with zones, racks, hosts, VMs, BMCs and injectable faults.

It is the embedded default (demo, drills, tests, scale runs) and runs on any
Clock, so a drill in virtual time takes milliseconds. It keeps ground truth
(what really runs where) apart from what it reports, so drills can check
haven against reality rather than against haven's own bookkeeping.
"""

from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.cloud.sim.cloud import SimCloud
from haven.cloud.sim.fencer import SimFencer
from haven.cloud.sim.timings import SimTimings

__all__ = ["CloudSpec", "SimCloud", "SimFencer", "SimTimings", "build_cloud"]
