"""``POST /v1/haven/alertmanager``: Alertmanager's webhook receiver (payload version 4) in ``haven serve``.

Not Masakari's: under ``/v1/haven/``, for admins (haven.api.policy's rule for an unlisted route). An
Alertmanager ``webhook_configs`` receiver authenticates with haven's token as a bearer token
(``http_config.authorization``, Alertmanager 0.25; haven.api.auth accepts ``Authorization: Bearer`` on this
path only) or, from anything else, ``X-Auth-Token`` as every route. Each firing alert haven did not raise
becomes a symptom the running explainer explains once (haven.explain.explainer's ``take_alertmanager``,
reached through what ``haven serve`` attached: ``attach_alertmanager``); the answer lists the explanations
(``haven explain --json``'s records), and the explainer's next send to Alertmanager carries them back as
``HavenSymptom`` alerts naming their cause.

Answers: 200 with the explanations (haven's own alerts and resolved ones are skipped: an empty list); 400
naming the field when the body is not Alertmanager's payload version 4; 409 when ``haven serve`` explains
nothing (no ``[diagnosis]``); 503 on a follower (only the leader explains, as only it takes backups) and
while the leader's explainer is not yet running. Alertmanager retries a 5xx, so a follower's 503 is retried.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal, Protocol

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.applications import Starlette

from haven.api.auth import require_policy
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.diagnosis.records import ExplanationRecord, record_json

ALERTMANAGER_PATH = "/v1/haven/alertmanager"
STATE_KEY = "haven_alertmanager"
MAX_ALERTS = 1000  # Alertmanager's max_alerts is 0 (all) by default; a group this large is not a webhook's


class AlertmanagerReceiver(Protocol):
    def take_alertmanager(self, payload: object) -> Awaitable[list[ExplanationRecord] | None]:
        """The payload's alerts explained; None while no explainer runs here (not leading yet)."""
        ...


class WebhookAlert(BaseModel):
    """One alert of the payload, as Alertmanager 0.25 sends it (extra keys are kept and ignored)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: str = Field(min_length=1, max_length=64, description="RFC 3339")
    endsAt: str | None = Field(None, max_length=64)
    generatorURL: str | None = Field(None, max_length=4096)
    fingerprint: str | None = Field(None, max_length=255)

    @field_validator("startsAt")
    @classmethod
    def _a_time(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an RFC 3339 time") from None
        return value


class WebhookPayload(BaseModel):
    """Alertmanager's webhook body, version 4 (https://prometheus.io/docs/alerting/latest/configuration/)."""

    model_config = ConfigDict(extra="allow")
    version: Literal["4"]
    status: Literal["firing", "resolved"] | None = None
    receiver: str | None = Field(None, max_length=255)
    groupKey: str | None = Field(None, max_length=4096)
    truncatedAlerts: int = Field(0, ge=0)
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = Field(None, max_length=4096)
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)


def attach_alertmanager(app: object, receiver: AlertmanagerReceiver | None) -> None:
    """Give the route haven serve's explainer (None: ``[diagnosis]`` explains nothing).

    ``app`` is the API application (``uvicorn.Config.app``, typed loosely there).
    """
    if not isinstance(app, Starlette):
        raise TypeError(
            f"the explainer attaches to the API's Starlette application, not {type(app).__name__}"
        )
    setattr(app.state, STATE_KEY, receiver)


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"], dependencies=[Depends(require_policy)])

    @routes.post(
        ALERTMANAGER_PATH,
        summary="Alertmanager's webhook (payload version 4): alerts haven did not raise, explained (admin)",
        responses={
            409: {"description": "haven serve explains nothing: no [diagnosis] in haven.toml"},
            503: {"description": "this engine is not the leader, or its explainer is not running yet"},
        },
    )
    async def alertmanager(body: WebhookPayload, request: Request) -> dict[str, Any]:
        receiver = getattr(request.app.state, STATE_KEY, None)
        if receiver is None:
            raise ApiError(
                HTTPStatus.CONFLICT,
                "haven serve explains nothing here: set [diagnosis] alertmanager_url (or prometheus_url, "
                "transport_url, [canary]) in haven.toml and restart haven serve.",
            )
        if not ctx.leadership.is_leader():
            raise ApiError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"This engine ({ctx.leadership.identity}) is not the leader: only the leader explains "
                "alerts. List every engine's API in the Alertmanager receiver (or send to the leader's: GET "
                "/v1/haven/status shows is_leader); Alertmanager retries.",
            )
        try:
            done = await receiver.take_alertmanager(body.model_dump(mode="json", exclude_none=True))
        except ValueError as exc:  # what the model does not check (a startsAt that is not a time)
            raise ApiError(HTTPStatus.BAD_REQUEST, f"Invalid input for field/attribute {exc}") from None
        if done is None:
            raise ApiError(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"This engine ({ctx.leadership.identity}) leads but its explainer is not running yet; "
                "Alertmanager retries.",
            )
        return {"explanations": [record_json(r) for r in done]}

    return routes
