"""Restores and restore drills: boot (or rebuild) from a backup as persisted, resumable records.

Called by the CLI and the API (``haven backups restore``), and by haven serve's drill loop while it
leads. A restore is committed ``issued`` before Nova is asked; its boot carries the record's id in
its metadata (``haven_restore_id``) and a resumed one looks for the server with that tag
(``find_restored``, never a server that only shares the name) before booting again, so a restart
never boots two; a resumed rebuild in place reads Nova's instance actions first and adopts a rebuild
asked since the record was made (a second one would wipe what the guest wrote since). An issued
restore the cloud keeps refusing fails after ``[backups.drills] timeout_s``; a permanent refusal
fails it at once. A restore as new boots on networks chosen when it is asked and kept in its record
(``networks``, Neutron ids): by default the original server's (as Nova shows them while it exists, else
those recorded with the backup), or the ones named, or none. A drill boots the newest
good backup of a protected server with no network, waits (pass by pass, never sleeping) for ACTIVE,
deletes its server and records the recovery point it proved; a drill whose server never reaches
ACTIVE fails and raises restore_drill_failed for that server until a later drill succeeds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from haven.backups.config import DrillSettings
from haven.backups.runner import HoldLost, TermEpoch, newest_good
from haven.cloud.backups import BackupPort
from haven.domain.backups import (
    RESTORE_ID_KEY,
    BackupKind,
    BackupRecord,
    BackupState,
    RestorePurpose,
    RestoreRecord,
    RestoreState,
    held_by_another,
)
from haven.domain.clock import Clock
from haven.domain.cloud import VmState
from haven.domain.errors import (
    Conflict,
    Deposed,
    HavenError,
    NotFound,
    PermanentError,
    TemporaryError,
    UserError,
)
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Alert, AlertKind
from haven.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
DRILL_PREFIX = "haven-drill-"
DRILL_METADATA = {"haven_backup": "off", "haven_drill": "true"}  # a drill's server is never backed up


@dataclass(frozen=True, slots=True)
class DrillRound:
    started: tuple[RestoreRecord, ...]
    advanced: int


def choose_drills(
    protected: Sequence[str], records: Sequence[BackupRecord], drills: Sequence[RestoreRecord],
    settings: DrillSettings, now: float,
) -> list[tuple[str, BackupRecord]]:  # fmt: skip
    """Which servers to drill now (pure): those with a good backup whose last drill is older than
    ``interval_s``, least recently drilled first, at most ``sample`` (0: all) and the free concurrency."""
    busy = {d.server_id for d in drills if d.purpose is RestorePurpose.DRILL and d.state.in_flight}
    last: dict[str, float] = {}
    for d in drills:
        if d.purpose is RestorePurpose.DRILL:
            last[d.server_id] = max(last.get(d.server_id, 0.0), d.created_at)
    by_server: dict[str, list[BackupRecord]] = {}
    for r in records:
        by_server.setdefault(r.server_id, []).append(r)
    due = []
    for server_id in protected:
        backup = newest_good(by_server.get(server_id, []))
        if backup is None or server_id in busy or now - last.get(server_id, -1e18) < settings.interval_s:
            continue
        due.append((last.get(server_id, 0.0), server_id, backup))
    due.sort(key=lambda d: (d[0], d[1]))
    room = max(settings.concurrency - len(busy), 0)
    if settings.sample:
        room = min(room, settings.sample)
    return [(server_id, backup) for _, server_id, backup in due[:room]]


class Restorer:
    def __init__(
        self, port: BackupPort, store: Store, clock: Clock, settings: DrillSettings,
        leader_epoch: Callable[[], int | None] | None = None,
        on_finish: Callable[[RestoreRecord], None] | None = None,
        holder: str = "", hold_s: float = 0.0,
    ) -> None:  # fmt: skip
        """``holder``, ``hold_s``: as BackupRunner's (``haven backups restore`` in another process)."""
        self._port, self._store, self._clock, self._settings = port, store, clock, settings
        self._holder, self._hold_s = holder, hold_s
        self._epoch = TermEpoch(leader_epoch)  # Deposed once this engine's term ended
        self._on_finish = on_finish  # told of each restore or drill this engine saw end (done, failed)
        self._working: set[str] = set()  # restores this process is asking the cloud for now (the API's)
        # Held from a drill's "is there room, is it running already" look to its issue (drill_now and
        # the drill round's pick): two admins' clicks, or a click during the round, start one drill.
        self._drill_lock = asyncio.Lock()

    # ---- restores asked by a person ----------------------------------------------------------------

    async def choose(self, server_id: str, at: float | None) -> BackupRecord:
        """The newest good backup of ``server_id`` taken at or before ``at``; a UserError when none."""
        records = await self._db(self._store.backups_of, server_id)
        backup = newest_good(records, at)
        if backup is None:
            when = " at or before that time" if at is not None else ""
            raise UserError(
                f"server {server_id} has no good backup{when}",
                "haven backups list SERVER shows its backups; haven backups run SERVER takes one",
            )
        return backup

    async def restore(
        self, server_id: str, at: float | None, as_new: str | None, networks: Sequence[str] | None = None
    ) -> RestoreRecord:
        """Start a restore: a new server ``as_new`` from the backup, or a rebuild in place.

        ``networks`` (as new only): None, the original server's networks; a list of networks (names
        or ids), those; empty, no network at all. A UserError for a network Neutron does not know."""
        if as_new is None and networks is not None:
            raise UserError(
                "networks are chosen for a restore as new only (a rebuild keeps the server's own)",
                "pass --as-new NAME, or drop --network/--no-network",
            )
        backup = await self.choose(server_id, at)
        if as_new is None and backup.kind is BackupKind.VOLUME:
            raise UserError(
                "a volume-backed server cannot be rebuilt in place from a Cinder backup",
                "pass --as-new NAME to boot a new server from it",
            )
        if as_new is None:
            try:
                await self._port.get_target(ServerId(server_id))
            except NotFound:
                raise UserError(
                    f"server {server_id} no longer exists: nothing to rebuild", "pass --as-new NAME"
                ) from None
        else:
            await self._flavor_of(server_id)  # a deleted server's flavor must come from the config
        purpose = RestorePurpose.AS_NEW if as_new else RestorePurpose.REBUILD
        record = self._record(purpose, backup, as_new or backup.server_name)
        if as_new is not None:
            record = dataclasses.replace(record, networks=await self._networks(backup, networks))
        if self._holder:
            until = self._clock.now() + self._hold_s
            record = dataclasses.replace(record, held_by=self._holder, held_until=until)
        self._working.add(record.id)  # a drill round meanwhile leaves it alone: it would ask again
        try:
            await self._db(self._store.issue_restore, record, epoch=self._epoch())
            return await self.advance(record)
        finally:
            self._working.discard(record.id)

    async def renew(self, record: RestoreRecord) -> RestoreRecord:
        """Hold a restore this process started ``hold_s`` longer (the CLI's wait, each time round); one
        no longer in flight is returned as it is; ``HoldLost`` once the hold ran out (as BackupRunner's)."""
        for _ in range(5):
            (current,) = [
                r for r in await self._db(self._store.list_restores, since=record.created_at - 1)
                if r.id == record.id
            ]  # fmt: skip
            if not current.state.in_flight:
                return current
            now = self._clock.now()
            if not self._holder or current.held_by != self._holder or current.held_until <= now:
                raise HoldLost(f"restore {current.id}", current.held_until)
            renewed = dataclasses.replace(current, held_until=now + self._hold_s)
            try:
                await self._db(self._store.save_restore, renewed, [current.state], epoch=self._epoch())
                return renewed
            except Conflict:
                continue
        return record

    async def release(self, record: RestoreRecord) -> RestoreRecord:
        """Let go of a restore this process held: the leader's rounds carry it on from here."""
        for _ in range(5):
            (current,) = [
                r for r in await self._db(self._store.list_restores, since=record.created_at - 1)
                if r.id == record.id
            ]  # fmt: skip
            if current.held_by != self._holder or not self._holder:
                return current
            freed = dataclasses.replace(current, held_by="", held_until=0.0)
            try:
                await self._db(self._store.save_restore, freed, [current.state], epoch=self._epoch())
                return freed
            except Conflict:
                continue
        return record

    async def _networks(self, backup: BackupRecord, asked: Sequence[str] | None) -> tuple[str, ...]:
        """The networks (ids) a restore as new boots on: those ``asked`` (names or ids, each found in
        Neutron), else the original server's as Nova shows them now, else (it is gone) those recorded
        with the backup, each still in Neutron."""
        if asked is not None:
            return tuple(dict.fromkeys([await self._network(n, "") for n in asked]))
        try:
            return await self._port.server_networks(ServerId(backup.server_id))
        except NotFound:
            pass
        if backup.networks is None:
            raise UserError(
                f"server {backup.server_id} no longer exists and backup {backup.id} recorded no networks "
                "(it was taken before haven recorded them, or they could not be read then)",
                'name them with --network NAME_OR_ID (API: networks), or pass --no-network ("none")',
            )
        why = f" (server {backup.server_id} was on it when backup {backup.id} was taken)"
        return tuple([await self._network(n, why) for n in backup.networks])

    async def _network(self, name_or_id: str, why: str) -> str:
        try:
            return await self._port.find_network(name_or_id)
        except NotFound:
            raise UserError(
                f"no network {name_or_id!r} in the cloud{why}",
                "openstack network list shows them: pass --network NAME_OR_ID, or --no-network",
            ) from None
        except Conflict as exc:
            raise UserError(str(exc), "pass the network's id") from None

    # ---- drills -------------------------------------------------------------------------------------

    async def drill_now(self, server_id: str, asked_by: str) -> RestoreRecord:
        """A restore drill of ``server_id`` now, outside the schedule (an admin's, from the dashboard):
        its newest good backup booted isolated as a scheduled drill's, the record saying ``asked_by``;
        the drill rounds carry it on to ACTIVE and the delete. A UserError when the server has no good
        backup, a drill of it is in flight, or ``[backups.drills] concurrency`` drills are in flight.
        The look and the issue are one step (``_drill_lock``, shared with the drill round's pick)."""
        async with self._drill_lock:
            backup = await self.choose(server_id, None)
            running = [
                r for r in await self._db(self._store.list_restores, unfinished=True)
                if r.purpose is RestorePurpose.DRILL
            ]  # fmt: skip
            mine = [r for r in running if r.server_id == server_id]
            if mine:
                raise UserError(
                    f"a restore drill of {backup.server_name} is already running (restore {mine[0].id})",
                    "wait for it to end: the backups panel shows its result",
                )
            if len(running) >= self._settings.concurrency:
                raise UserError(
                    f"{len(running)} restore drills are running, as many as [backups.drills] "
                    f"concurrency = {self._settings.concurrency} allows",
                    "wait for one to end (the backups panel shows them), or raise the concurrency",
                )
            now = self._clock.now()
            record = self._record(
                RestorePurpose.DRILL, backup, f"{DRILL_PREFIX}{backup.server_name}-{now:.0f}"
            )
            record = dataclasses.replace(record, asked_by=asked_by)
            self._working.add(record.id)  # a drill round meanwhile leaves it alone: it would boot it twice
            try:
                await self._db(self._store.issue_restore, record, epoch=self._epoch())
            except BaseException:
                self._working.discard(record.id)
                raise
        try:
            return await self._isolated(record)
        finally:
            self._working.discard(record.id)

    async def drill_round(self, protected: Sequence[str]) -> DrillRound:
        """Advance the drills in flight, then start those due (``Deposed`` once this engine's term ended)."""
        self._epoch()
        advanced = 0
        for record in await self._db(self._store.list_restores, unfinished=True):
            if record.id in self._working:  # the API's restore, still asking the cloud
                continue
            if held_by_another(record, self._holder, self._clock.now()):  # haven backups restore
                continue
            await self._isolated(record)
            advanced += 1
        now = self._clock.now()
        records = await self._db(self._store.backups_relevant, now)
        issued = []
        async with self._drill_lock:  # no drill_now between the pick and the issues (one drill a server)
            drills = await self._db(self._store.list_restores, since=now - 2 * self._settings.interval_s)
            for _, backup in choose_drills(protected, records, drills, self._settings, now):
                record = self._record(
                    RestorePurpose.DRILL, backup, f"{DRILL_PREFIX}{backup.server_name}-{now:.0f}"
                )
                await self._db(self._store.issue_restore, record, epoch=self._epoch())
                issued.append(record)
        started = [await self._isolated(record) for record in issued]
        await self._alerts(
            await self._db(self._store.list_restores, since=now - 2 * self._settings.interval_s)
        )
        return DrillRound(tuple(started), advanced)

    def _record(self, purpose: RestorePurpose, backup: BackupRecord, name: str) -> RestoreRecord:
        return RestoreRecord(
            str(uuid.uuid4()), purpose, backup.server_id, backup.id, backup.image_id, name,
            RestoreState.ISSUED, self._clock.now(), recovery_point=backup.created_at,
            target_id=backup.server_id if purpose is RestorePurpose.REBUILD else "",
        )  # fmt: skip

    # ---- steps ---------------------------------------------------------------------------------------

    async def _isolated(self, record: RestoreRecord) -> RestoreRecord:
        try:
            return await self.advance(record)
        except Deposed:  # this engine's term ended: the round stops, the new leader carries on
            raise
        except HavenError as exc:
            log.warning("restore %s: %s", record.id, exc)
        except Exception:
            log.exception("restore %s", record.id)
        return record

    async def advance(self, record: RestoreRecord) -> RestoreRecord:
        """One step of a restore: ask (or find what was asked), check, clean up a drill. A deposed
        engine makes none (``Deposed``): no cloud call once its term ended."""
        self._epoch()
        if record.state is RestoreState.ISSUED:
            return await self._ask(record)
        if record.state is RestoreState.BOOTING:
            return await self._check(record)
        if record.state is RestoreState.CLEANING:
            return await self._clean(record)
        return record

    async def _ask(self, record: RestoreRecord) -> RestoreRecord:
        try:
            if record.purpose is RestorePurpose.REBUILD:
                if not await self._rebuild_asked(record):
                    await self._port.rebuild(ServerId(record.target_id), record.image_id)
                return await self._save(dataclasses.replace(record, state=RestoreState.BOOTING), record.state)
            found = await self._port.find_restored(record.id, record.name)
            if found:
                target_id = found[0].id
            else:
                backup = await self._db(self._store.get_backup, record.backup_id)
                flavor = self._settings.flavor if record.purpose is RestorePurpose.DRILL else ""
                flavor = flavor or await self._flavor_of(record.server_id)
                metadata = (
                    {**DRILL_METADATA, RESTORE_ID_KEY: record.id}
                    if record.purpose is RestorePurpose.DRILL
                    else {"haven_restored_from": backup.id, RESTORE_ID_KEY: record.id}
                )
                # a drill is isolated: never a network, whatever its record says
                networks = record.networks if record.purpose is RestorePurpose.AS_NEW else ()
                if backup.kind is BackupKind.VOLUME:
                    volumes = await self._restored_volumes(record, backup)
                    if volumes is None:  # Cinder still restores: the next round looks again
                        return await self._waited(record, "Cinder is still restoring its volumes")
                    target_id = await self._port.boot_from_volumes(
                        record.name, volumes, flavor, metadata,
                        delete_on_termination=record.purpose is RestorePurpose.DRILL, networks=networks,
                    )  # fmt: skip
                else:
                    target_id = await self._port.boot_from_image(
                        record.name, record.image_id, flavor, metadata, networks
                    )
        except TemporaryError as exc:
            if self._clock.now() - record.created_at > self._settings.timeout_s:
                why = f"the cloud kept refusing for {self._settings.timeout_s:.0f} s: {exc}"
                return await self._save(self._failed(record, why), record.state)
            log.info("restore %s waits: %s", record.id, exc)
            return record
        except PermanentError as exc:
            if record.purpose is RestorePurpose.REBUILD and isinstance(exc, Conflict) and "busy" in str(exc):
                return await self._save(dataclasses.replace(record, state=RestoreState.BOOTING), record.state)
            await self._drop_volumes(record)
            return await self._save(self._failed(record, f"the cloud refused: {exc}"), record.state)
        return await self._save(
            dataclasses.replace(record, state=RestoreState.BOOTING, target_id=target_id), record.state
        )

    async def _restored_volumes(self, record: RestoreRecord, backup: BackupRecord) -> list[str] | None:
        """The new volumes of a Cinder restore, the boot volume first; None while Cinder restores.

        Each volume's Cinder backup is restored to a new volume named after the record
        (``volume_name``); a resumed restore finds it by that name before asking again, so a restart
        never restores a second one. A volume that ends in error fails the restore (PermanentError).
        """
        volumes, waiting = [], False
        for index, backup_id in enumerate(await self._boot_first(backup)):
            name = volume_name(record, index)
            found = [v for v in await self._port.find_volumes(name) if v.status != "deleting"]
            if found:
                volume = found[0]
            else:
                volume_id = await self._port.restore_volume_backup(backup_id, name)
                volume = await self._port.get_volume(volume_id)
            if volume.status.startswith("error"):
                raise PermanentError(
                    f"restoring Cinder backup {backup_id} left volume {volume.id} {volume.status}"
                )
            waiting |= volume.status != "available"
            volumes.append(volume.id)
        if not volumes:
            raise PermanentError(f"backup {backup.id} holds no Cinder backup")
        return None if waiting else volumes

    async def _boot_first(self, backup: BackupRecord) -> list[str]:
        """The backup's Cinder backups, the boot volume's first (Nova boots from ``boot_index`` 0).

        The store keeps the order the runner recorded them in (the boot volume first) since the review
        fix; a record stored before it on PostgreSQL (JSONB keeps no key order) may not have it: when
        the server still exists, its boot volume goes first; else the stored order is kept as is."""
        pairs = list(backup.volume_backups.items())
        if len(pairs) < 2:
            return [b for _, b in pairs]
        try:
            target = await self._port.get_target(ServerId(backup.server_id))
        except NotFound:
            return [b for _, b in pairs]
        boot = {v.id for v in target.volumes if v.boot}
        return [b for _, b in sorted(pairs, key=lambda pair: pair[0] not in boot)]

    async def _waited(self, record: RestoreRecord, why: str) -> RestoreRecord:
        if self._clock.now() - record.created_at > self._settings.timeout_s:
            await self._drop_volumes(record)
            failed = self._failed(record, f"{why} after {self._settings.timeout_s:.0f} s")
            return await self._save(failed, record.state)
        log.info("restore %s waits: %s", record.id, why)
        return record

    async def _drop_volumes(self, record: RestoreRecord) -> None:
        """A failed restore's volumes (before any server booted from them) are deleted, best effort."""
        if record.purpose is RestorePurpose.REBUILD:
            return
        try:
            backup = await self._db(self._store.get_backup, record.backup_id)
        except NotFound:
            return
        for index in range(len(backup.volume_backups)):
            try:
                for volume in await self._port.find_volumes(volume_name(record, index)):
                    await self._port.delete_volume(volume.id)
            except HavenError as exc:
                log.info("restore %s: volume %s left: %s", record.id, volume_name(record, index), exc)

    async def _rebuild_asked(self, record: RestoreRecord) -> bool:
        """Whether this restore's rebuild was already asked (by this engine or one that died after the
        call, before committing ``booting``): Nova's instance actions show a rebuild since the record
        was created, or the server is rebuilding now onto the backup's image. Asking again would wipe
        what the guest wrote since the first rebuild."""
        server_id = ServerId(record.target_id)
        target = await self._port.get_target(server_id)
        if target.busy and target.image_id == record.image_id:
            return True
        return await self._port.rebuilt_since(server_id, record.created_at)

    async def _flavor_of(self, server_id: str) -> str:
        """The server's own flavor; once it is deleted, ``[backups.drills] flavor``."""
        try:
            return (await self._port.get_target(ServerId(server_id))).flavor_id
        except NotFound:
            if self._settings.flavor:
                return self._settings.flavor
            raise UserError(
                f"server {server_id} no longer exists and no flavor is set to boot its backup with",
                "set [backups.drills] flavor in haven.toml",
            ) from None

    async def _check(self, record: RestoreRecord) -> RestoreRecord:
        now = self._clock.now()
        try:
            target = await self._port.get_target(ServerId(record.target_id))
        except NotFound:
            return await self._save(self._failed(record, "the restored server disappeared"), record.state)
        error = ""
        if target.vm_state is VmState.ACTIVE and not target.busy:
            if record.purpose is not RestorePurpose.DRILL:
                done = dataclasses.replace(record, state=RestoreState.DONE, active_at=now, finished_at=now)
                return await self._save(done, record.state)
            cleaning = dataclasses.replace(record, state=RestoreState.CLEANING, active_at=now)
            return await self._clean(await self._save(cleaning, record.state))
        if target.vm_state is VmState.ERROR:
            error = "the restored server went to ERROR"
        elif now - record.created_at > self._settings.timeout_s:
            error = f"the restored server was not ACTIVE after {self._settings.timeout_s:.0f} s"
        if not error:
            return record
        if record.purpose is RestorePurpose.DRILL:
            cleaning = dataclasses.replace(record, state=RestoreState.CLEANING, error=error)
            return await self._clean(await self._save(cleaning, record.state))
        return await self._save(self._failed(record, error), record.state)

    async def _clean(self, record: RestoreRecord) -> RestoreRecord:
        try:
            await self._port.delete_server(ServerId(record.target_id))
        except NotFound:
            pass
        except TemporaryError as exc:
            log.info("drill %s cleanup waits: %s", record.id, exc)
            return record
        state = RestoreState.FAILED if record.error else RestoreState.DONE
        return await self._save(
            dataclasses.replace(record, state=state, finished_at=self._clock.now()), record.state
        )

    def _failed(self, record: RestoreRecord, why: str) -> RestoreRecord:
        return dataclasses.replace(
            record, state=RestoreState.FAILED, error=why, finished_at=self._clock.now()
        )

    async def _save(self, record: RestoreRecord, was: RestoreState) -> RestoreRecord:
        await self._db(self._store.save_restore, record, [was], epoch=self._epoch())
        if self._on_finish is not None and not record.state.in_flight:
            try:
                self._on_finish(record)
            except Exception:  # a metrics hook never fails a restore
                log.exception("restore hook failed")
        return record

    async def _alerts(self, drills: Sequence[RestoreRecord]) -> None:
        latest: dict[str, RestoreRecord] = {}
        for d in drills:
            newer = d.server_id not in latest or d.created_at > latest[d.server_id].created_at
            if d.purpose is RestorePurpose.DRILL and not d.state.in_flight and newer:
                latest[d.server_id] = d
        active = {
            a.host
            for a in await self._db(self._store.list_alerts)
            if a.kind is AlertKind.RESTORE_DRILL_FAILED
        }
        now = self._clock.now()
        for server_id, d in latest.items():
            if d.state is RestoreState.FAILED and server_id not in active:
                message = f"restore drill of server {server_id} failed: {d.error} (backup {d.backup_id})"
                log.warning("%s", message)
                alert = Alert(
                    str(uuid.uuid4()), AlertKind.RESTORE_DRILL_FAILED, message, now, host=HostName(server_id)
                )
                await self._db(self._store.raise_alert, alert, epoch=self._epoch())
            elif d.state is RestoreState.DONE and server_id in active:
                await self._db(
                    self._store.clear_alerts, now=now, kind=AlertKind.RESTORE_DRILL_FAILED,
                    host=HostName(server_id), epoch=self._epoch(),
                )  # fmt: skip

    async def _db(self, call: Callable[..., T], *args: object, **kw: object) -> T:
        return await asyncio.to_thread(call, *args, **kw)


def volume_name(record: RestoreRecord, index: int) -> str:
    """The name of the volume a Cinder restore makes (the record's key for it)."""
    return f"{record.name}-{record.id[:8]}-vol{index}"


def is_good(record: BackupRecord) -> bool:
    return record.state is BackupState.AVAILABLE
