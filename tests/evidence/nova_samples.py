"""Nova's versioned notification payloads, shaped as in Nova's doc/notification_samples."""

from __future__ import annotations

from typing import Any


def _object(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": "1.0",
        "nova_object.data": data,
    }


def create_error(exception: str, message: str) -> dict[str, Any]:
    fault = {
        "exception": exception,
        "exception_message": message,
        "function_name": "_build_and_run_instance",
        "module_name": "nova.compute.manager",
    }
    return _object(
        "InstanceActionPayload",
        {
            "uuid": "178b0921-8f85-4257-88b6-2e743b5a975c",
            "display_name": "some-server",
            "host": "compute",
            "node": "fake-mini",
            "state": "building",
            "fault": _object("ExceptionPayload", fault),
        },
    )


def service_update(forced_down: bool) -> dict[str, Any]:
    data = {
        "host": "host1",
        "binary": "nova-compute",
        "topic": "compute",
        "disabled": forced_down,
        "disabled_reason": None,
        "forced_down": forced_down,
        "last_seen_up": "2026-12-05T10:02:05Z",
        "report_count": 1,
        "version": 66,
    }
    return _object("ServiceStatusPayload", data)


COMPUTE_EXCEPTION = _object(
    "ExceptionPayload",
    {
        "exception": "AggregateNameExists",
        "exception_message": "Aggregate versioned_exc_aggregate already exists.",
        "function_name": "aggregate_create",
        "module_name": "nova.db.sqlalchemy.api",
    },
)
