"""How haven's identifiers appear as Masakari's ``uuid`` and integer ``id``.

Used by the views (to name objects) and by the lookups (to find what a URL names).

- Segments keep a uuid in hex; they are shown in the canonical dashed form, and a URL
  may use either form. Notifications already have dashed uuid4 ids.
- Hosts keep a uuid of their own (a uuid4, stored), kept across renames as in Masakari.
  Hosts stored before that keep the uuid they were shown with, ``uuid5(HOST_NAMESPACE,
  name)``; a notification about a host no segment holds any more shows that one too.
- A vmove is an evacuate step: ``uuid5(VMOVE_NAMESPACE, "<notification id>/<seq>")``.
- Masakari's integer ``id`` is a database row number that clients only display (every
  URL takes the uuid). haven shows ``number(uuid)`` (haven.domain.ids.public_number): the
  first 52 bits of the SHA-256 of the uuid string, so it is stable, the same on every engine,
  and exact in JSON parsers that hold numbers as doubles; the store keeps it to sort by it.
  List markers accept it as well as the uuid, because openstacksdk pages with the ``id``
  of the last item it saw.
"""

from __future__ import annotations

import uuid

from haven.domain.ids import public_number, public_uuid

HOST_NAMESPACE = uuid.UUID("3f1d5a0c-7f2e-5a7b-9a63-6b1d2f0c4e11")
VMOVE_NAMESPACE = uuid.UUID("8c2e4b9a-1d3f-5e6a-8b7c-0d9e1f2a3b4c")


def candidates(ref: str) -> list[str]:
    """The stored ids ``ref`` (from a URL) may stand for: itself, and its hex and dashed forms."""
    found = [ref]
    try:
        parsed = uuid.UUID(ref)
    except ValueError:
        return found
    for form in (parsed.hex, str(parsed)):
        if form not in found:
            found.append(form)
    return found


def number(uuid_text: str) -> int:
    return public_number(uuid_text)


def legacy_host_uuid(name: str) -> str:
    """The uuid a host was shown with before hosts kept their own (store migration 0007 kept it)."""
    return str(uuid.uuid5(HOST_NAMESPACE, name))


def vmove_uuid(notification_id: str, seq: int) -> str:
    return str(uuid.uuid5(VMOVE_NAMESPACE, f"{notification_id}/{seq}"))


def same_uuid(ref: str, uuid_text: str) -> bool:
    return uuid_text in candidates(ref)


__all__ = [
    "HOST_NAMESPACE",
    "VMOVE_NAMESPACE",
    "candidates",
    "legacy_host_uuid",
    "number",
    "public_uuid",
    "same_uuid",
    "vmove_uuid",
]
