"""The metrics port: a range query in, labelled time series out; and a source that answers from recordings.

Called by haven.explain to read each node's metrics around a symptom. Implemented by
haven.evidence.prometheus (a real Prometheus) and RecordedMetrics (recorded answers, for tests and replays).
Errors: TemporaryError (the source cannot be reached now: a retry may help), PermanentError (the query is
refused: it will be refused again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from haven.domain.errors import PermanentError


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """One series of a range query's answer: its labels and (time, value) points, oldest first."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...]


class MetricsSource(Protocol):
    async def query_range(self, query: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
        """Every series ``query`` yields between ``start`` and ``end`` (epoch seconds), one point per step."""
        ...


@dataclass
class RecordedMetrics:
    """A MetricsSource answering from recorded series per query, clipped to the asked range."""

    answers: Mapping[str, Sequence[RangeSeries]]
    asked: list[tuple[str, float, float, float]] = field(default_factory=list)

    async def query_range(self, query: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
        self.asked.append((query, start, end, step_s))
        if query not in self.answers:
            raise PermanentError(f"no recorded answer for {query!r}")
        return [
            RangeSeries(one.labels, tuple((t, v) for t, v in one.points if start <= t <= end))
            for one in self.answers[query]
        ]
