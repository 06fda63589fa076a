"""What a step handler returns: done, failed, or "check again in N s" — never a sleep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from haven.domain.incidents import StepState


@dataclass(frozen=True, slots=True)
class NewStep:
    kind: str
    subject: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    state: StepState  # DONE, FAILED, or RUNNING to be checked again
    detail: Mapping[str, Any]
    requeue_after: float = 0.0
    new_steps: tuple[NewStep, ...] = ()
    stop_recovery: bool = False  # a failure that makes every later step pointless (or unsafe)


def done(detail: Mapping[str, Any], new_steps: tuple[NewStep, ...] = ()) -> Outcome:
    return Outcome(StepState.DONE, detail, new_steps=new_steps)


def requeue(after: float, detail: Mapping[str, Any]) -> Outcome:
    return Outcome(StepState.RUNNING, detail, requeue_after=after)


def failed(reason: str, detail: Mapping[str, Any], stop_recovery: bool = False) -> Outcome:
    return Outcome(StepState.FAILED, {**detail, "error": reason}, stop_recovery=stop_recovery)
