"""`haven import masakari`: Masakari's segments and hosts into haven's store, idempotent.

Called by haven.cli.masakari_import with what haven.cloud.openstack.masakari read. ``plan_import``
is pure: it compares Masakari's records with the store's and says, for each, what an import does.
``apply_import`` does it. The rules, so that running the import twice creates nothing the second
time and never overwrites what an operator set in haven:

- a segment is matched by its uuid (haven keeps Masakari's): absent, it is created; present with the
  same fields, it is left alone (``unchanged``); present with other fields, it is left as haven has
  it and the fields are reported (``differs``). Its missing hosts are still added.
- a segment whose name haven already uses under another uuid (a segment haven bootstrapped per zone,
  or one an operator created) is a ``conflict``: nothing is created, and its hosts are ``skipped``.
- a host is matched by its name (a host belongs to one segment in Masakari and in haven): absent, it
  is created in the segment with Masakari's uuid; in the same segment, ``unchanged`` or ``differs``
  as above (a different uuid is a difference: Masakari's clients address hosts by uuid); in another
  haven segment, a ``conflict``. A host whose uuid haven gives to a host of another name (renamed in
  haven) is a ``conflict`` too.

haven's own segment field ``mode`` (automatic, notify, dry_run) is not Masakari's: new segments get
the mode asked for, and it is never compared.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Segment, SegmentHost, SegmentMode
from haven.domain.masakari import MasakariSegment
from haven.store import Store

SEGMENT_FIELDS = ("name", "recovery_method", "service_type", "enabled", "description")
HOST_FIELDS = ("uuid", "type", "control_attributes", "reserved", "on_maintenance")


class Action(StrEnum):
    CREATE = "create"  # not in haven: created (with --dry-run: would be)
    UNCHANGED = "unchanged"  # already in haven with the same fields
    DIFFERS = "differs"  # in haven with other fields: reported, left as haven has it
    CONFLICT = "conflict"  # cannot be created: haven uses the name for another segment
    SKIPPED = "skipped"  # a host of a segment in conflict


UNRESOLVED = frozenset({Action.DIFFERS, Action.CONFLICT, Action.SKIPPED})


@dataclass(frozen=True, slots=True)
class ImportItem:
    kind: Literal["segment", "host"]
    name: str
    uuid: str  # Masakari's
    segment: str  # the Masakari segment's name (for a segment: its own)
    action: Action
    detail: str = ""
    new: Segment | SegmentHost | None = None  # what CREATE creates

    def to_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "masakari_uuid": self.uuid,
            "segment": self.segment,
            "action": self.action.value,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class ImportReport:
    items: tuple[ImportItem, ...]
    dry_run: bool

    @property
    def unresolved(self) -> bool:
        """Something Masakari has that haven has differently, or could not take."""
        return any(item.action in UNRESOLVED for item in self.items)

    def counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {"segment": {}, "host": {}}
        for item in self.items:
            by_action = counts[item.kind]
            by_action[item.action.value] = by_action.get(item.action.value, 0) + 1
        return counts

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "counts": self.counts(),
            "items": [item.to_dict() for item in self.items],
        }


def plan_import(
    source: Sequence[MasakariSegment],
    segments: Iterable[Segment],
    hosts: Iterable[SegmentHost],
    mode: SegmentMode = SegmentMode.AUTOMATIC,
) -> list[ImportItem]:
    """What importing ``source`` into a store holding ``segments`` and ``hosts`` does, item by item."""
    by_id = {s.id: s for s in segments}
    by_name = {s.name: s for s in by_id.values()}
    host_by_name = {h.name: h for h in hosts}
    host_by_uuid = {h.uuid: h for h in host_by_name.values() if h.uuid}
    items: list[ImportItem] = []
    for record in source:
        wanted = dataclasses.replace(record.segment, mode=mode)
        existing = by_id.get(wanted.id)
        taken = by_name.get(wanted.name)
        if existing is None and taken is not None:
            items.append(
                _item(record.segment, record.uuid, Action.CONFLICT, f"haven has a segment {taken.name!r} "
                      f"with another uuid ({taken.id}); rename one of them, or delete haven's")
            )  # fmt: skip
            items.extend(
                ImportItem("host", h.name, h.uuid, wanted.name, Action.SKIPPED, "its segment conflicts")
                for h in record.hosts
            )
            continue
        if existing is None:
            items.append(_item(wanted, record.uuid, Action.CREATE, new=wanted))
            by_id[wanted.id] = by_name[wanted.name] = wanted
        else:
            differences = _differences(existing, wanted, SEGMENT_FIELDS)
            action = Action.DIFFERS if differences else Action.UNCHANGED
            items.append(_item(wanted, record.uuid, action, differences))
        for member in record.hosts:
            items.append(_host_item(member, wanted, host_by_name, host_by_uuid, by_id))
    return items


def _host_item(
    host: SegmentHost,
    segment: Segment,
    host_by_name: dict[HostName, SegmentHost],
    host_by_uuid: dict[str, SegmentHost],
    by_id: Mapping[SegmentId, Segment],
) -> ImportItem:
    existing = host_by_name.get(host.name)
    same_uuid = host_by_uuid.get(host.uuid)
    if existing is None and same_uuid is not None:
        detail = f"haven gives this uuid to host {same_uuid.name!r}"
        return ImportItem("host", host.name, host.uuid, segment.name, Action.CONFLICT, detail)
    if existing is None:
        host_by_name[host.name] = host  # a name listed twice is then a conflict with the first
        if host.uuid:
            host_by_uuid[host.uuid] = host
        return ImportItem("host", host.name, host.uuid, segment.name, Action.CREATE, new=host)
    if existing.segment_id != host.segment_id:
        other = by_id.get(existing.segment_id)
        where = repr(other.name) if other is not None else existing.segment_id
        detail = f"haven has this host in segment {where}; a host belongs to one segment"
        return ImportItem("host", host.name, host.uuid, segment.name, Action.CONFLICT, detail)
    differences = _differences(existing, host, HOST_FIELDS)
    action = Action.DIFFERS if differences else Action.UNCHANGED
    return ImportItem("host", host.name, host.uuid, segment.name, action, differences)


def _item(
    segment: Segment, masakari_uuid: str, action: Action, detail: str = "", new: Segment | None = None
) -> ImportItem:
    return ImportItem("segment", segment.name, masakari_uuid, segment.name, action, detail, new)


def _differences(haven: object, masakari: object, fields: Sequence[str]) -> str:
    return "; ".join(
        f"{name}: haven {getattr(haven, name)!r}, Masakari {getattr(masakari, name)!r}"
        for name in fields
        if getattr(haven, name) != getattr(masakari, name)
    )


def import_masakari(
    store: Store | None,
    source: Sequence[MasakariSegment],
    *,
    dry_run: bool,
    mode: SegmentMode = SegmentMode.AUTOMATIC,
) -> ImportReport:
    """Plan against ``store`` (None: an empty one, for a dry run before any state exists) and apply.

    Segments are created one by one, then each segment's new hosts in one statement. Something
    created by someone else between the plan and the write (a Conflict from the store) is
    reported as a conflict for that item; the rest is still imported.
    """
    segments = store.list_segments() if store is not None else []
    hosts = store.list_hosts() if store is not None else []
    planned = plan_import(source, segments, hosts, mode)
    if dry_run or store is None:
        return ImportReport(tuple(planned), dry_run=True)
    return ImportReport(tuple(apply_plan(store, planned)), dry_run=False)


def apply_plan(store: Store, planned: Sequence[ImportItem]) -> list[ImportItem]:
    """Create what ``planned`` says to create; each item as it turned out."""
    done: list[ImportItem] = []
    failed_segments: set[SegmentId] = set()
    for item in planned:
        if isinstance(item.new, Segment):
            try:
                store.create_segment(item.new)
            except Conflict as exc:
                failed_segments.add(item.new.id)
                item = dataclasses.replace(item, action=Action.CONFLICT, detail=str(exc), new=None)
        done.append(item)
    new_hosts: dict[SegmentId, list[int]] = {}
    for index, item in enumerate(done):
        if isinstance(item.new, SegmentHost):
            if item.new.segment_id in failed_segments:
                done[index] = dataclasses.replace(
                    item, action=Action.SKIPPED, detail="its segment conflicts", new=None
                )
            else:
                new_hosts.setdefault(item.new.segment_id, []).append(index)
    for indexes in new_hosts.values():
        _add_hosts(store, done, indexes)
    return done


def _add_hosts(store: Store, done: list[ImportItem], indexes: Sequence[int]) -> None:
    hosts = [item.new for item in (done[i] for i in indexes) if isinstance(item.new, SegmentHost)]
    try:
        store.add_hosts(hosts)
        return
    except (Conflict, NotFound):
        pass  # all or nothing: find out host by host which one was taken meanwhile
    for index in indexes:
        host = done[index].new
        assert isinstance(host, SegmentHost)
        try:
            store.add_host(host)
        except (Conflict, NotFound) as exc:
            done[index] = dataclasses.replace(done[index], action=Action.CONFLICT, detail=str(exc), new=None)
