"""Typed identifiers, so a host name is never passed where a server id is expected."""

import hashlib
import uuid
from typing import NewType

HostName = NewType("HostName", str)
ServerId = NewType("ServerId", str)
SegmentId = NewType("SegmentId", str)
NotificationId = NewType("NotificationId", str)
ServerGroupId = NewType("ServerGroupId", str)


def public_uuid(stored_id: str) -> str:
    """The dashed form of a stored uuid (how Masakari shows one); an id that is no uuid stays as it is."""
    try:
        return str(uuid.UUID(stored_id))
    except ValueError:
        return stored_id


def public_number(uuid_text: str) -> int:
    """Masakari's integer ``id`` for the object shown with ``uuid_text`` (see haven.api.identity).

    The first 52 bits of the SHA-256 of the uuid: stable, the same on every engine, exact in JSON
    parsers that hold numbers as doubles. The store keeps it per segment and host, to sort and
    page by ``id`` in SQL.
    """
    return int(hashlib.sha256(uuid_text.encode()).hexdigest()[:13], 16)
