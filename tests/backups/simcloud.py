"""What the CLI's open_cloud gives the backup tests: the simulated cloud's backup port, not OpenStack's."""

from __future__ import annotations

from haven.cloud.sim.backups import SimBackups


class SimCloud:
    def __init__(self, port: SimBackups) -> None:
        self.port = port

    def backups(self) -> SimBackups:
        return self.port

    def close(self) -> None:
        pass
