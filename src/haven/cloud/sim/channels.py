"""One liveness channel of a simulated host: beats fall on a fixed phase while it flows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SimChannel:
    stopped_at: float | None = None  # None while the channel flows
    resumed_at: float = float("-inf")  # a beat is sent at once when a channel resumes

    def set_flowing(self, flowing: bool, now: float) -> None:
        if flowing and self.stopped_at is not None:
            self.stopped_at = None
            self.resumed_at = now
        elif not flowing and self.stopped_at is None:
            self.stopped_at = now

    @property
    def flowing(self) -> bool:
        return self.stopped_at is None

    def last_beat(self, now: float, phase: float, interval: float) -> float:
        """The time of the last beat sent at or before ``now``."""
        until = now if self.stopped_at is None else self.stopped_at
        aligned = until - ((until - phase) % interval)
        return max(aligned, self.resumed_at) if self.resumed_at <= until else aligned
