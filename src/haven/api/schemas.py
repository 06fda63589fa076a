"""Request bodies of the Masakari v1 resources, as pydantic models mirroring Masakari's JSON schemas.

Used by the routes as body parameters, so FastAPI validates them and publishes them in
/openapi.json. A violation is a RequestValidationError, which haven.api.errors turns
into Masakari's 400 naming the field (``segment.recovery_method``). Strings that reach
the database are checked to be printable (Masakari's rule), which also keeps lone
surrogates and NULs out of it.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from haven.domain.incidents import NotificationType, RecoveryMethod, SegmentMode

_TRUE = ("True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes")
_FALSE = ("False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no")


def parse_bool(value: object) -> bool:
    """Masakari's booleans: true/false, or one of its spellings as a string; nothing else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _TRUE:
        return True
    if isinstance(value, str) and value in _FALSE:
        return False
    raise ValueError(f"must be a boolean or one of {', '.join(_TRUE + _FALSE)}")


def _printable(text: str, *, name: bool) -> str:
    for char in text:
        category = unicodedata.category(char)
        if category.startswith("C") or category in {"Zl", "Zp"}:
            raise ValueError(f"contains a character that is not printable ({char!r})")
    if name and text != text.strip():
        raise ValueError("must not start or end with whitespace")
    return text


def _name(text: str) -> str:
    return _printable(text, name=True)


def _text(text: str) -> str:
    return _printable(text, name=False)


def _date_time(text: str) -> str:
    try:
        datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("must be an ISO 8601 date-time") from exc
    return text


MasakariBool = Annotated[
    bool,
    BeforeValidator(parse_bool),
    WithJsonSchema({"type": ["boolean", "string"], "enum": [True, False, *_TRUE, *_FALSE]}),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_name)]
Description = Annotated[str, StringConstraints(max_length=65535), AfterValidator(_text)]
# Masakari's pattern is alphanumerics only; "_" is allowed too, as Masakari's own samples use COMPUTE_HOST.
HostType = Annotated[str, StringConstraints(max_length=255, pattern=r"^[a-zA-Z0-9_]*$")]
Hostname = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[a-zA-Z0-9._-]*$")]
GeneratedTime = Annotated[
    str, AfterValidator(_date_time), WithJsonSchema({"type": "string", "format": "date-time"})
]
PayloadKey = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_:. -]{1,255}$")]
PayloadValue = Annotated[str, StringConstraints(max_length=255)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value: object) -> object:
    if value is None:
        raise ValueError("may not be null")
    return value


class SegmentFields(_Body):
    name: Name
    description: Description | None = None
    recovery_method: RecoveryMethod
    service_type: Name
    enabled: MasakariBool | None = None  # microversion 1.2 and later
    # haven's extension (any microversion): automatic, notify (custom recovery) or dry_run.
    haven_mode: SegmentMode | None = None


class SegmentCreate(_Body):
    segment: SegmentFields


class SegmentChanges(_Body):
    name: Name | None = None
    description: Description | None = None
    recovery_method: RecoveryMethod | None = None
    service_type: Name | None = None
    enabled: MasakariBool | None = None  # microversion 1.2 and later
    haven_mode: SegmentMode | None = None  # haven's extension

    _present = field_validator(
        "name", "recovery_method", "service_type", "enabled", "haven_mode", mode="before"
    )(_not_null)

    @model_validator(mode="after")
    def _something(self) -> SegmentChanges:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one of name, description, recovery_method, service_type, enabled, haven_mode"
            )
        return self


class SegmentUpdate(_Body):
    segment: SegmentChanges


class HostFields(_Body):
    name: Name
    type: HostType
    control_attributes: Description
    reserved: MasakariBool = False
    on_maintenance: MasakariBool = False


class HostCreate(_Body):
    host: HostFields


class HostChanges(_Body):
    name: Name | None = None
    type: HostType | None = None
    control_attributes: Description | None = None
    reserved: MasakariBool | None = None
    on_maintenance: MasakariBool | None = None

    _present = field_validator(
        "name", "type", "control_attributes", "reserved", "on_maintenance", mode="before"
    )(_not_null)

    @model_validator(mode="after")
    def _something(self) -> HostChanges:
        if not self.model_fields_set:
            raise ValueError("give at least one of name, type, control_attributes, reserved, on_maintenance")
        return self


class HostUpdate(_Body):
    host: HostChanges


_EVENTS = ("STARTED", "STOPPED")
_PAYLOAD_RULES: Mapping[NotificationType, Mapping[str, tuple[bool, tuple[str, ...] | None]]] = {
    # key: (required, allowed values or None for any)
    NotificationType.COMPUTE_HOST: {
        "event": (True, _EVENTS),
        "host_status": (False, ("NORMAL", "UNKNOWN")),
        "cluster_status": (False, ("ONLINE", "OFFLINE")),
    },
    NotificationType.PROCESS: {"process_name": (True, None), "event": (True, _EVENTS)},
    NotificationType.VM: {
        "instance_uuid": (True, None),
        "vir_domain_event": (True, None),
        "event": (True, None),
    },
}


def check_payload(type_: NotificationType, payload: Mapping[str, str]) -> None:
    """Masakari's per-type payload schema; ValueError naming the payload key otherwise."""
    rules = _PAYLOAD_RULES[type_]
    for key in payload:
        if key not in rules:
            raise ValueError(f"payload.{key} is not allowed in a {type_.value} notification")
    for key, (required, allowed) in rules.items():
        value = payload.get(key)
        if value is None:
            if required:
                raise ValueError(f"payload.{key} is required in a {type_.value} notification")
            continue
        if allowed is not None and value not in allowed:
            raise ValueError(f"payload.{key} must be one of {', '.join(allowed)}")
        if not value:
            raise ValueError(f"payload.{key} must not be empty")
    if type_ is NotificationType.VM:
        try:
            uuid.UUID(payload["instance_uuid"])
        except ValueError as exc:
            raise ValueError("payload.instance_uuid must be a uuid") from exc


class NotificationFields(_Body):
    type: NotificationType
    hostname: Hostname
    generated_time: GeneratedTime
    payload: dict[PayloadKey, PayloadValue]

    @model_validator(mode="after")
    def _payload_fits_type(self) -> NotificationFields:
        check_payload(self.type, self.payload)
        return self


class NotificationCreate(_Body):
    notification: NotificationFields


# ---- custom recovery (haven's extension): an external system claims a notify-mode notification ----

Message = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_text)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_text)]
Percentage = Annotated[float, Field(ge=0, le=100, strict=True, allow_inf_nan=False)]


class ClaimFields(_Body):
    owner: Name  # who works on it from now on: the same name must come with progress, finish and fail
    message: Message = ""


class ClaimBody(_Body):
    claim: ClaimFields


class ProgressFields(_Body):
    owner: Name
    message: Reason
    percentage: Percentage | None = None


class ProgressBody(_Body):
    progress: ProgressFields


class FinishFields(_Body):
    owner: Name
    message: Message = ""


class FinishBody(_Body):
    finish: FinishFields


class FailFields(_Body):
    owner: Name
    reason: Reason


class FailBody(_Body):
    fail: FailFields


def changes_of(model: BaseModel) -> dict[str, Any]:
    """The fields a client actually sent, by name."""
    return {name: getattr(model, name) for name in model.model_fields_set}
