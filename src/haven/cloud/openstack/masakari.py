"""Reading a running Masakari's segments and hosts through openstacksdk's instance-ha proxy.

Called by `haven import masakari` (haven.cli.masakari_import) once per run. The cloud is a
clouds.yaml entry, as for every haven command that talks to a cloud; Masakari is found as the
catalog's ``instance-ha`` service (or ``instance_ha_endpoint_override`` in clouds.yaml). Every
list is read page by page with an explicit ``limit``: without one, Masakari answers a single page
of ``osapi_max_limit`` (1000) items and openstacksdk stops there, so a large segment would be cut
short without a word. Errors leave as haven CloudErrors (haven.cloud.openstack.errors).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import openstack
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.connection import Connection

from haven.cloud.openstack.connection import CLOUDS_YAML_HINT, clouds_yaml_file
from haven.cloud.openstack.errors import translate
from haven.domain.errors import ConfigError, PermanentError
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import RecoveryMethod, Segment, SegmentHost
from haven.domain.masakari import MasakariSegment

PAGE_SIZE = 500


def open_masakari(name: str | None, clouds_yaml: Path | None = None, **options: Any) -> MasakariReader:
    """A reader on the clouds.yaml entry ``name`` (or on openstack.connect ``options``); no request yet."""
    try:
        with clouds_yaml_file(clouds_yaml):
            conn = openstack.connect(cloud=name, **options)
    except (os_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise ConfigError(f"cannot use OpenStack cloud {name!r}: {exc}", CLOUDS_YAML_HINT) from None
    return MasakariReader(conn)


class MasakariReader:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def close(self) -> None:
        self._conn.close()

    def read(self, page_size: int = PAGE_SIZE) -> list[MasakariSegment]:
        """Every segment with its hosts, as Masakari lists them (newest first)."""
        what = "list Masakari's segments"
        try:
            found = []
            # With a limit, openstacksdk asks for the next page (marker: the last item's integer id,
            # which is what Masakari expects) until one comes back short.
            for raw in self._conn.instance_ha.segments(limit=page_size):
                what = f"list the hosts of Masakari segment {raw.name!r}"
                segment = _segment(raw)
                hosts = self._conn.instance_ha.hosts(raw.uuid, limit=page_size)
                found.append(
                    MasakariSegment(str(raw.uuid), segment, tuple(_host(h, segment.id) for h in hosts))
                )
            return found
        except Exception as exc:
            raise translate(exc, what) from exc


def _segment(raw: Any) -> Segment:
    try:
        method = RecoveryMethod(raw.recovery_method)
    except ValueError:
        raise PermanentError(
            f"Masakari segment {raw.name!r} has recovery method {raw.recovery_method!r}, which haven "
            f"does not know (it knows {', '.join(m.value for m in RecoveryMethod)})"
        ) from None
    return Segment(
        id=SegmentId(_uuid_hex(str(raw.uuid))),
        name=str(raw.name),
        recovery_method=method,
        service_type=str(raw.service_type),
        enabled=True if raw.is_enabled is None else bool(raw.is_enabled),  # no `enabled` before 1.2
        description=str(raw.description or ""),
    )


def _host(raw: Any, segment_id: SegmentId) -> SegmentHost:
    return SegmentHost(
        name=HostName(str(raw.name)),
        segment_id=segment_id,
        type=str(raw.type),
        control_attributes=str(raw.control_attributes),
        reserved=bool(raw.reserved),
        on_maintenance=bool(raw.on_maintenance),
        uuid=str(raw.uuid),
    )


def _uuid_hex(text: str) -> str:
    """haven stores segment ids as uuid hex and shows them dashed, so Masakari's uuid survives."""
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return text
