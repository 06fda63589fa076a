"""The backup runner: plan (pure), then backups, rotations and their outcomes as persisted records.

Owned by haven serve (a leader-only runnable) or driven pass by pass by tests, drills and benchmarks.
Each pass:
1. advances every backup left in flight or being deleted (by this engine or a previous one), except
   those this process is still asking the cloud for (a backup now from the API: the pass would ask
   twice) and those another process holds (``haven backups run`` from the CLI, until it lets go or its
   hold runs out); a backup ``issued`` and not worked on here (left by an engine that died) may or may not
   have reached the cloud, so its step first looks for the image (or Cinder backups) named by the
   record: found, it is adopted; absent, the call is made. Nova creates
   the image before it answers createBackup, so an absent image means the call was not made;
2. reads every server, resolves its policy, asks haven.backups.planner for the plan (telling it when
   haven first saw each protected server: kept in the store, so a restart does not forget it);
3. commits each new backup ``issued`` before calling the cloud and ``creating`` after; each rotation
   ``deleting`` before its delete call and ``deleted`` after;
4. raises (or clears) the backup-missed and recovery-point alerts.
A server deleted or resized mid-backup fails that backup (its image deleted), never the pass; a
permanent refusal (Nova's 400/403, an image quota exceeded) fails it at once with Nova's message; any
other error is retried pass after pass until the scheduler's ``timeout_s``, then fails it. One
backup's unexpected error fails that backup only.

Cinder backups are never left behind untracked. One still ``creating`` past ``timeout_s`` (counted from
when Cinder accepted it) is only marked late: Cinder cannot delete it then, and a backup it finishes is
a good one; it fails on Cinder's ``error``, or past ``volume_timeout_s``. A backup failed while something
it made may still exist is marked ``leftover``: each pass tries the removal again until Cinder has
deleted it, and no new backup of that server's volumes is asked meanwhile (Cinder would refuse it while
the volume is ``backing-up``, or base the next incremental on the leftover).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from haven.backups import planner
from haven.backups.config import BackupsConfig
from haven.backups.planner import BackupPlan, BackupSnapshot, PlannedBackup, Protected
from haven.backups.policy import PolicyProblem, resolve
from haven.cloud.backups import BackupPort
from haven.domain.backups import (
    IMAGE_BACKUP_ID,
    IMAGE_SLOT,
    BackupKind,
    BackupPolicy,
    BackupRecord,
    BackupState,
    BackupTarget,
    ImageStatus,
    Trigger,
    VolumeBackupStatus,
    held_by_another,
    nova_backup_type,
)
from haven.domain.clock import Clock
from haven.domain.errors import (
    Conflict,
    Deposed,
    HavenError,
    NotFound,
    PermanentError,
    TemporaryError,
    UserError,
)
from haven.domain.ids import HostName, SegmentId, ServerId
from haven.domain.incidents import Alert, AlertKind
from haven.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
BackupHook = Callable[[BackupRecord], None]  # told of each backup this engine saw end (available, failed)
HISTORY_S = 35 * 86400.0  # deleted and failed backups the planner still sees (windows they covered)
_DEAD_IMAGE = (ImageStatus.KILLED, ImageStatus.DELETED, ImageStatus.PENDING_DELETE, ImageStatus.DEACTIVATED)
_ALERTS = (AlertKind.BACKUP_MISSED, AlertKind.RECOVERY_POINT_STALE)


class TermEpoch:
    """The leader's epoch, for fencing each write; ``Deposed`` once the term that gave one has ended.

    An elector's ``epoch()`` answers None once this engine no longer leads (haven.coordination), and the
    store skips the fence for a None epoch: a round still running after the lease is gone would write
    unfenced, and go on asking the cloud, while the new leader works on the same records. Once it has
    answered a number, a None is a deposition: refused here, before any write or cloud call."""

    def __init__(self, source: Callable[[], int | None] | None) -> None:
        self._source = source
        self._last: int | None = None  # the last epoch it answered

    def __call__(self) -> int | None:
        if self._source is None:  # no coordination: the one engine of a single-node set-up
            return None
        epoch = self._source()
        if epoch is None:
            if self._last is not None:
                raise Deposed(
                    f"this engine no longer leads (its term, epoch {self._last}, ended): its backup and "
                    "restore work stops here",
                    self._last,
                    None,
                )
            return None
        self._last = epoch
        return epoch


class HoldLost(HavenError):
    """A record this process held (``haven backups run|restore``) is no longer held by it: its hold ran
    out, and haven serve's leader may be carrying it on. This process makes no more calls for it."""

    def __init__(self, what: str, held_until: float) -> None:
        super().__init__(
            f"{what}: this command's hold on it ran out (at {_iso(held_until)}); haven serve's leader "
            "carries it on, so this command stops asking the cloud for it (haven backups list SERVER "
            "shows where it stands)"
        )


def backup_name(server_id: str, slot: float, backup_id: str) -> str:
    """The name the image (and each volume's Cinder backup) carries: how a resumed step finds it."""
    stamp = datetime.fromtimestamp(slot, UTC).strftime("%Y%m%dT%H%M")
    return f"haven-backup-{server_id}-{stamp}-{backup_id[:8]}"


class BackupRunner:
    def __init__(
        self,
        config: BackupsConfig,
        port: BackupPort,
        store: Store,
        clock: Clock,
        leader_epoch: Callable[[], int | None] | None = None,
        on_backup: BackupHook | None = None,
        holder: str = "",
        hold_s: float = 0.0,
    ) -> None:
        """``holder``: this process's name when it is not haven serve's leader (``haven backups run``):
        the backups it starts are held by it for ``hold_s``, and the leader's passes leave them alone
        until it releases them (``release``) or the hold runs out (it died: resumed as a dead engine's)."""
        self._config, self._port, self._store, self._clock = config, port, store, clock
        self._epoch = TermEpoch(leader_epoch)
        self._on_backup = on_backup
        self._holder, self._hold_s = holder, hold_s
        self.last_plan: BackupPlan | None = None
        self.problems: list[PolicyProblem] = []
        self._working: set[str] = set()  # records this process is creating now (a backup now's call)
        self._warned_projects: set[str] = set()  # [backups.projects] keys that matched no server
        # protected server -> the first pass that saw it (alerts), as stored: read back at this engine's
        # first pass and again in each new term (another leader may have written meanwhile)
        self._first_seen: dict[str, float] | None = None
        self._first_seen_term: int | None = None

    @property
    def settings(self) -> BackupsConfig:
        return self._config

    # ---- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Pass after pass until cancelled (by the TaskGroup that owns it)."""
        interval = self._config.pass_interval_s
        while True:
            started = self._clock.now()
            due = started + interval
            try:
                result = await self.run_pass()
                if result.next_due_at is not None:
                    due = min(due, max(result.next_due_at, started + 1.0))
            except HavenError as exc:
                log.warning("backup pass failed: %s", exc)
            except Exception:  # a bug: this pass is lost, never the loop
                log.exception("backup pass failed")
            await self._clock.sleep_until(max(due, self._clock.now() + 0.05))

    async def run_pass(self) -> BackupPlan:
        epoch = self._epoch()
        now = self._clock.now()
        for record in await self._db(self._store.backups_relevant, now):
            if record.id in self._working:  # this process is still asking the cloud for it
                continue
            if held_by_another(record, self._holder, now):  # haven backups run, in another process
                continue
            if record.state.in_flight or record.state is BackupState.DELETING:
                await self._isolated(self._advance, record, epoch)
        protected = await self.protected()
        now = self._clock.now()
        records = await self._db(self._store.backups_relevant, now - HISTORY_S)
        first_seen = await self._seen(protected, now, epoch)
        snapshot = BackupSnapshot(now, protected, records, self._config.scheduler, first_seen)
        blocked = await self._leftovers(records, epoch)
        result = planner.plan(snapshot)
        for item in result.create:
            if item.target.id in blocked:  # Cinder still holds a failed backup of its volumes
                log.info(
                    "backup of %s waits: Cinder still holds backup %s of failed backup %s",
                    item.target.name, *blocked[item.target.id],
                )  # fmt: skip
                continue
            await self._isolated(self._start, item, Trigger.SCHEDULE, epoch)
        for record in result.delete:
            await self._isolated(self._delete, record, epoch)
        await self._alerts(result, epoch)
        self.last_plan = result
        return result

    async def protected(self) -> list[Protected]:
        """Every server with a policy; a server whose metadata cannot be used is a logged problem."""
        problems, protected = [], []
        targets = await self._with_segments(await self._port.list_targets())
        self._unmatched_projects(targets)
        for target in targets:
            policy = resolve(target, self._config)
            if isinstance(policy, PolicyProblem):
                problems.append(policy)
            elif policy is not None:
                protected.append(Protected(target, policy))
        for problem in problems:
            if problem not in self.problems:
                log.warning("server %s: %s", problem.server_id, problem.message)
        self.problems = problems
        return protected

    async def _with_segments(self, targets: Sequence[BackupTarget]) -> list[BackupTarget]:
        """The targets with ``segment`` set from haven's own membership (Masakari's segments and
        hosts, in the store): a server's segment is its compute host's. The key is the segment's name,
        or its id when ``[backups.segments]`` names it by id. Read only when segment defaults exist."""
        if not self._config.segments or not targets:
            return list(targets)
        segments = {s.id: s for s in await self._db(self._store.list_segments)}
        key: dict[SegmentId, str] = {
            s.id: s.id if s.id in self._config.segments and s.name not in self._config.segments else s.name
            for s in segments.values()
        }
        of_host = {
            h.name: key[h.segment_id] for h in await self._db(self._store.list_hosts) if h.segment_id in key
        }
        return [
            dataclasses.replace(t, segment=of_host[HostName(t.host)]) if t.host in of_host else t
            for t in targets
        ]

    async def _seen(self, protected: Sequence[Protected], now: float, epoch: int | None) -> dict[str, float]:
        """When haven first saw each protected server, kept in the store so that a restart does not
        forget it (a server never backed up alerts from there); a server no longer protected is
        forgotten. Read from the store once per term, written only when the protected set changes."""
        if self._first_seen is None or epoch != self._first_seen_term:
            self._first_seen = await self._db(self._store.backup_first_seen)
            self._first_seen_term = epoch
        known = self._first_seen
        current = {p.target.id for p in protected}
        seen = {server: now for server in current if server not in known}
        gone = [server for server in known if server not in current]
        if seen or gone:
            stored = await self._db(self._store.note_backup_first_seen, seen, gone, epoch=epoch)
            for server in gone:
                del known[server]
            known.update(stored)
        return dict(known)

    def _unmatched_projects(self, targets: Sequence[BackupTarget]) -> None:
        """Warn once for each ``[backups.projects.KEY]`` that no server's project id matches: the key is
        a project's id (Nova's ``tenant_id``), and a project's name never matches."""
        if not targets:
            return
        projects = {t.project for t in targets}
        for name in self._config.projects:
            if name not in projects and name not in self._warned_projects:
                self._warned_projects.add(name)
                log.warning(
                    "[backups.projects.%s] matches no server: its key must be a project's id (Nova's "
                    "tenant_id), not its name", name,
                )  # fmt: skip

    async def backup_now(self, server_id: ServerId) -> BackupRecord:
        """A backup outside the schedule (haven backups run): issued, then asked of the cloud at once."""
        try:
            target = await self._port.get_target(server_id)
        except NotFound:
            raise UserError(
                f"no server {server_id}", "name a server by its id (haven backups list)"
            ) from None
        (target,) = await self._with_segments([target])
        policy = resolve(target, self._config)
        if policy is None or isinstance(policy, PolicyProblem):
            policy = BackupPolicy("daily", source="manual")
        kind = BackupKind.VOLUME if target.volume_backed else BackupKind.IMAGE
        incremental, parent = False, ""
        if kind is BackupKind.VOLUME:
            records = await self._db(self._store.backups_of, server_id)
            blocked = await self._leftovers(records, self._epoch())
            if server_id in blocked:
                cinder_backup, failed = blocked[server_id]
                raise UserError(
                    f"server {target.name} ({server_id}): Cinder still holds backup {cinder_backup} of "
                    f"failed backup {failed}, not deleted yet",
                    "haven deletes it once Cinder lets it (it is still creating); run again later",
                )
            incremental, parent = planner._chain(records, self._config.scheduler.chain_max)
        now = self._clock.now()
        item = PlannedBackup(target, policy, now, now, kind, 1, incremental, parent)
        try:
            record = await self._start(item, Trigger.MANUAL, self._epoch())
        except Conflict:
            raise UserError(
                f"server {target.name} ({server_id}) already has a backup in flight",
                "wait for it (haven backups list SERVER) and run again",
            ) from None
        if record.state is BackupState.FAILED:
            raise UserError(
                f"backup of server {target.name} ({server_id}) failed: {record.error}",
                "the backup is recorded failed (haven backups list SERVER); fix the cause and run again",
            )
        return record

    # ---- steps -------------------------------------------------------------------------------------

    async def _start(self, item: PlannedBackup, trigger: Trigger, epoch: int | None) -> BackupRecord:
        backup_id = str(uuid.uuid4())
        t = item.target
        record = BackupRecord(
            backup_id, t.id, t.name, t.project, item.kind, item.slot, trigger, item.policy.backup_type,
            backup_name(t.id, item.slot, backup_id), BackupState.ISSUED, self._clock.now(),
            attempt=item.attempt, incremental=item.incremental, parent_id=item.parent_id,
            held_by=self._holder, held_until=self._clock.now() + self._hold_s if self._holder else 0.0,
        )  # fmt: skip
        self._working.add(backup_id)  # a pass meanwhile leaves it alone: it would ask the cloud again
        try:
            await self._db(self._store.issue_backup, record, epoch=epoch)
            return await self._create(record, epoch, rotation=item.rotation, target=t)
        finally:
            self._working.discard(backup_id)

    async def release(self, backup_id: str) -> BackupRecord:
        """Let go of a backup this process held: the leader's passes carry it on from here."""
        for _ in range(5):
            record = await self._db(self._store.get_backup, backup_id)
            if record.held_by != self._holder or not self._holder:
                return record
            freed = dataclasses.replace(record, held_by="", held_until=0.0)
            try:
                await self._db(self._store.save_backup, freed, [record.state], epoch=self._epoch())
                return freed
            except Conflict:  # it moved on meanwhile (the hold ran out): read it again
                continue
        return await self._db(self._store.get_backup, backup_id)

    async def renew(self, backup_id: str) -> BackupRecord:
        """Hold a backup this process started ``hold_s`` longer (the CLI's wait, each time round).

        A backup no longer in flight is returned as it is. ``HoldLost`` when the hold already ran out
        (or another holds it): the leader may be carrying it on, so this process must make no more
        calls for it."""
        for _ in range(5):
            record = await self._db(self._store.get_backup, backup_id)
            if not (record.state.in_flight or record.state is BackupState.DELETING):
                return record
            now = self._clock.now()
            if not self._holder or record.held_by != self._holder or record.held_until <= now:
                raise HoldLost(f"backup {record.id}", record.held_until)
            renewed = dataclasses.replace(record, held_until=now + self._hold_s)
            try:
                await self._db(self._store.save_backup, renewed, [record.state], epoch=self._epoch())
                return renewed
            except Conflict:  # it moved on meanwhile: read it again
                continue
        return await self._db(self._store.get_backup, backup_id)

    async def advance(self, record: BackupRecord, epoch: int | None = None) -> None:
        """One step of one backup in flight or being deleted (the CLI's wait uses it too)."""
        await self._advance(record, epoch)

    async def _advance(self, record: BackupRecord, epoch: int | None) -> None:
        if record.state is BackupState.ISSUED:
            await self._create(record, epoch)
        elif record.state is BackupState.CREATING:
            await self._poll(record, epoch)
        elif record.state is BackupState.DELETING:
            await self._finish_delete(record, epoch)

    async def _create(
        self,
        record: BackupRecord,
        epoch: int | None,
        rotation: int | None = None,
        target: BackupTarget | None = None,
    ) -> BackupRecord:
        """Make (or adopt) the create call of an issued backup, then commit ``creating``."""
        try:
            target = target or await self._port.get_target(record.server_id)
        except NotFound:
            return await self._fail(record, "the server was deleted before its backup started", epoch)
        try:
            if record.kind is BackupKind.IMAGE:
                found = [i for i in await self._port.find_images(record.name) if i.status not in _DEAD_IMAGE]
                if found:
                    image_id = found[0].id
                else:
                    ceiling = rotation if rotation is not None else self._rotation(target)
                    props = {IMAGE_BACKUP_ID: record.id, IMAGE_SLOT: str(int(record.slot))}
                    image_id = await self._port.create_image_backup(
                        record.server_id, record.name, nova_backup_type(record.backup_type), ceiling, props
                    )
                creating = dataclasses.replace(record, state=BackupState.CREATING, image_id=image_id)
            else:
                creating = await self._create_volumes(record, target, epoch)
            creating = dataclasses.replace(creating, accepted_at=self._clock.now())
        except TemporaryError as exc:
            if self._clock.now() - record.created_at > self._refused_limit(record):
                return await self._fail(record, f"the cloud kept refusing: {exc}", epoch)
            log.info("backup %s of %s waits: %s", record.id, record.server_name, exc)
            return record  # still issued: the next pass looks for its image first
        except NotFound:
            return await self._fail(record, "the server was deleted before its backup started", epoch)
        except PermanentError as exc:  # busy (409), or refused outright (400/403: a quota): Nova's words
            return await self._fail(record, f"the cloud refused the backup: {exc}", epoch)
        except Exception as exc:  # anything else: retried by the next pass until the timeout
            if self._clock.now() - record.created_at > self._config.scheduler.timeout_s:
                return await self._fail(record, f"still failing after the timeout: {exc}", epoch)
            raise
        if creating.networks is None:
            creating = dataclasses.replace(creating, networks=await self._networks_of(record))
        await self._db(self._store.save_backup, creating, [BackupState.ISSUED], epoch=epoch)
        return creating

    async def _networks_of(self, record: BackupRecord) -> tuple[str, ...] | None:
        """The server's networks as the cloud took its backup (a restore as new of it, once the server
        is gone, boots on them); None when they cannot be read now (best effort: the backup goes on)."""
        try:
            return await self._port.server_networks(record.server_id)
        except Exception as exc:  # never a reason to lose the accepted backup's record
            log.info(
                "backup %s of %s: its networks were not recorded: %s", record.id, record.server_name, exc
            )
            return None

    def _refused_limit(self, record: BackupRecord) -> float:
        """How long an issued backup may be refused for now: ``timeout_s``; for Cinder, which refuses
        a backup while the volume is ``backing-up`` (a backup of it still being taken, haven's late one
        or its tenant's), the Cinder cap: waiting for it is no failure of the window's attempt."""
        settings = self._config.scheduler
        if record.kind is BackupKind.VOLUME:
            return max(settings.volume_timeout_s, settings.timeout_s)
        return settings.timeout_s

    def _rotation(self, target: BackupTarget) -> int:
        policy = resolve(target, self._config)
        return (
            policy.retention.ceiling + 1
            if policy is not None and not isinstance(policy, PolicyProblem)
            else 8
        )

    async def _create_volumes(
        self, record: BackupRecord, target: BackupTarget, epoch: int | None
    ) -> BackupRecord:
        """One Cinder backup per volume, each id committed as soon as Cinder gave it. An incremental
        record asks Cinder for an incremental of a volume only when the chain's parent record holds an
        available Cinder backup of that volume (Cinder bases it on the volume's newest backup, and
        refuses with none): a volume added since, or whose parent backup is gone, gets a full."""
        done = dict(record.volume_backups)
        parent = await self._parent_backups(record)
        for volume in sorted(target.volumes, key=lambda v: not v.boot):  # the boot volume first
            if volume.id in done:
                continue
            name = f"{record.name}-{volume.id}"
            found = [
                b
                for b in await self._port.find_volume_backups(name)
                if b.status is not VolumeBackupStatus.ERROR
            ]
            if found:
                done[volume.id] = found[0].id
            else:
                incremental = record.incremental and await self._available(parent.get(volume.id, ""))
                done[volume.id] = await self._port.create_volume_backup(volume.id, name, incremental)
            updated = dataclasses.replace(record, volume_backups=dict(done))
            await self._db(self._store.save_backup, updated, [BackupState.ISSUED], epoch=epoch)
            record = updated
        return dataclasses.replace(record, state=BackupState.CREATING)

    async def _parent_backups(self, record: BackupRecord) -> dict[str, str]:
        if not (record.incremental and record.parent_id):
            return {}
        try:
            parent = await self._db(self._store.get_backup, record.parent_id)
        except NotFound:
            return {}
        return dict(parent.volume_backups) if parent.state is BackupState.AVAILABLE else {}

    async def _available(self, backup_id: str) -> bool:
        if not backup_id:
            return False
        try:
            return (await self._port.get_volume_backup(backup_id)).status is VolumeBackupStatus.AVAILABLE
        except NotFound:
            return False

    async def _poll(self, record: BackupRecord, epoch: int | None) -> None:
        now = self._clock.now()
        ready, broken = await self._ready(record)
        if ready:
            done = dataclasses.replace(record, state=BackupState.AVAILABLE, completed_at=now)
            await self._db(self._store.save_backup, done, [BackupState.CREATING], epoch=epoch)
            self._ended(done)
            return
        if record.kind is BackupKind.IMAGE:  # Nova deletes the image of a deleted server's snapshot; a
            try:  # Cinder backup goes on (the volume stays ``backing-up``) and is a good backup
                await self._port.get_target(record.server_id)
            except NotFound:
                broken = "the server was deleted while its backup was taken"
        if broken:
            await self._fail(record, broken, epoch, was=BackupState.CREATING)
            return
        settings = self._config.scheduler
        age = now - (record.accepted_at if record.accepted_at is not None else record.created_at)
        if age <= settings.timeout_s:
            return
        if record.kind is BackupKind.IMAGE:
            await self._fail(
                record, f"not ready after {settings.timeout_s:.0f} s", epoch, BackupState.CREATING
            )
            return
        # Cinder still takes it: failing it now would leave it behind (Cinder refuses to delete a backup
        # while it is creating), its volume ``backing-up`` and the next incremental based on it
        cap = max(settings.volume_timeout_s, settings.timeout_s)
        if age > cap:
            await self._fail(
                record,
                f"Cinder still creating it {age:.0f} s after it accepted it (volume_timeout_s {cap:.0f} s)",
                epoch,
                BackupState.CREATING,
            )
        elif record.late_at is None:
            log.warning(
                "backup %s of %s is late: Cinder still creating it %.0f s after it accepted it (timeout_s "
                "%.0f s); it is not failed before volume_timeout_s (%.0f s)",
                record.id, record.server_name, age, settings.timeout_s, cap,
            )  # fmt: skip
            late = dataclasses.replace(record, late_at=now)
            await self._db(self._store.save_backup, late, [BackupState.CREATING], epoch=epoch)

    async def _ready(self, record: BackupRecord) -> tuple[bool, str]:
        """(ready, why it is broken: "" while it may still become ready)."""
        if record.kind is BackupKind.IMAGE:
            try:
                image = await self._port.get_image(record.image_id)
            except NotFound:
                return False, "its image is gone (Nova deletes the image of a snapshot that failed)"
            if image.status in _DEAD_IMAGE:
                return False, f"its image is {image.status.value}"
            return image.status is ImageStatus.ACTIVE, ""
        statuses = []
        for backup_id in record.volume_backups.values():
            try:
                statuses.append((await self._port.get_volume_backup(backup_id)).status)
            except NotFound:
                return False, f"Cinder backup {backup_id} is gone"
        if any(s is VolumeBackupStatus.ERROR for s in statuses):
            if any(s is VolumeBackupStatus.CREATING for s in statuses):
                return False, ""  # fail it once the others settle: Cinder refuses to delete a creating one
            return False, "a Cinder backup ended in error"
        return bool(statuses) and all(s is VolumeBackupStatus.AVAILABLE for s in statuses), ""

    async def _fail(
        self, record: BackupRecord, why: str, epoch: int | None, was: BackupState = BackupState.ISSUED
    ) -> BackupRecord:
        log.warning("backup %s of %s failed: %s", record.id, record.server_name, why)
        failed = dataclasses.replace(
            record,
            state=BackupState.FAILED,
            finished_at=self._clock.now(),
            error=why,
            leftover=bool(record.image_id or record.volume_backups),  # cleared once all of it is gone
        )
        await self._db(self._store.save_backup, failed, [was], epoch=epoch)
        self._ended(failed)
        if failed.leftover:  # what it left (a killed image, a half chain) is no backup
            failed = await self._clear_leftover(failed, epoch)
        return failed

    async def _leftovers(
        self, records: Sequence[BackupRecord], epoch: int | None
    ) -> dict[str, tuple[str, str]]:
        """Ask again for the removal of what failed backups left. Returns the servers whose volumes
        Cinder still holds one of (server id -> (that Cinder backup, the failed record)): no new backup
        of them meanwhile (Cinder refuses one while the volume is ``backing-up``, and bases the next
        incremental on the volume's newest backup, the leftover)."""
        blocked: dict[str, tuple[str, str]] = {}
        for record in records:
            if record.state is not BackupState.FAILED or not record.leftover:
                continue
            try:
                self._epoch()
                record = await self._clear_leftover(record, epoch)
            except Deposed:
                raise
            except HavenError as exc:  # Conflict too: another engine cleared it meanwhile
                log.info("leftover of failed backup %s waits: %s", record.id, exc)
            except Exception:
                log.exception("leftover of failed backup %s: its removal failed", record.id)
            if record.leftover and record.volume_backups:
                last = list(record.volume_backups.values())[-1]
                blocked.setdefault(record.server_id, (last, record.id))
        return blocked

    async def _clear_leftover(self, record: BackupRecord, epoch: int | None) -> BackupRecord:
        """Ask for the removal of what a failed backup made; once all of it is gone, clear its mark."""
        if not await self._remove(record):
            return record
        cleared = dataclasses.replace(record, leftover=False)
        await self._db(self._store.save_backup, cleared, [BackupState.FAILED], epoch=epoch)
        log.info("what failed backup %s of %s left is gone", record.id, record.server_name)
        return cleared

    def _ended(self, record: BackupRecord) -> None:
        if self._on_backup is not None:
            try:
                self._on_backup(record)
            except Exception:  # a metrics hook never fails a backup
                log.exception("backup hook failed")

    async def _delete(self, record: BackupRecord, epoch: int | None) -> None:
        deleting = dataclasses.replace(record, state=BackupState.DELETING)
        await self._db(self._store.save_backup, deleting, [BackupState.AVAILABLE], epoch=epoch)
        await self._finish_delete(deleting, epoch)

    async def _finish_delete(self, record: BackupRecord, epoch: int | None) -> None:
        try:
            gone = await self._remove(record, strict=True)
        except (TemporaryError, Conflict) as exc:
            log.info("deleting backup %s waits: %s", record.id, exc)  # still deleting: the next pass retries
            return
        if not gone:
            return  # Cinder deletes later, or a backup still depends on one of them: the next pass looks
        done = dataclasses.replace(record, state=BackupState.DELETED, finished_at=self._clock.now())
        await self._db(self._store.save_backup, done, [BackupState.DELETING], epoch=epoch)

    async def _remove(self, record: BackupRecord, strict: bool = False) -> bool:
        """Delete the image, or the Cinder backups (newest first); True once nothing of it is left
        (NotFound is gone). Cinder refuses to delete a backup another depends on (an incremental,
        even one it is still deleting), and deletes later: a Cinder backup with
        ``has_dependent_backups``, or not yet available, error or gone, is left for a later pass."""
        calls: list[tuple[Callable[[str], Awaitable[None]], str]] = []
        image_left = False
        if record.image_id:
            calls.append((self._port.delete_image, record.image_id))
        for call, ident in calls:
            try:
                await call(ident)
            except NotFound:
                continue
            except HavenError:
                if strict:
                    raise
                log.info("leftover %s of failed backup %s kept for now", ident, record.id)
                image_left = True
        left = image_left
        for backup_id in reversed(list(record.volume_backups.values())):
            try:
                left |= not await self._remove_volume_backup(backup_id, record)
            except NotFound:
                continue
            except HavenError:
                if strict:
                    raise
                left = True
        return not left

    async def _remove_volume_backup(self, backup_id: str, record: BackupRecord) -> bool:
        """One Cinder backup: True once it is gone; asks Cinder to delete it when it may."""
        backup = await self._port.get_volume_backup(backup_id)
        if backup.status is VolumeBackupStatus.DELETED:
            return True
        if backup.status is VolumeBackupStatus.DELETING:
            return False
        if backup.has_dependent_backups:
            log.info("Cinder backup %s of backup %s waits: backups depend on it", backup_id, record.id)
            return False
        if backup.status not in (VolumeBackupStatus.AVAILABLE, VolumeBackupStatus.ERROR):
            return False  # creating, restoring: Cinder refuses to delete it now
        try:
            await self._port.delete_volume_backup(backup_id)
        except PermanentError as exc:  # Cinder's 400: a dependent or a status change since the read
            log.info("Cinder refused deleting backup %s of backup %s for now: %s", backup_id, record.id, exc)
        return False  # accepted: Cinder deletes it later (``deleting``), the next pass sees it gone

    # ---- alerts ------------------------------------------------------------------------------------

    async def _alerts(self, result: BackupPlan, epoch: int | None) -> None:
        now = self._clock.now()
        wanted: dict[tuple[AlertKind, str], str] = {}
        for s in result.statuses:
            if s.missed:
                wanted[(AlertKind.BACKUP_MISSED, s.server_id)] = (
                    f"server {s.server_name} ({s.server_id}): no good backup of its {s.policy.schedule} "
                    f"window due {_iso(s.due_at)}{f' ({s.waiting})' if s.waiting else ''}"
                )
            if s.stale:
                point = _iso(s.recovery_point) if s.recovery_point is not None else "none"
                wanted[(AlertKind.RECOVERY_POINT_STALE, s.server_id)] = (
                    f"server {s.server_name} ({s.server_id}): recovery point {point} is older than its "
                    f"{s.policy.schedule} policy allows"
                )
        active = await self._db(self._store.list_alerts)
        for alert in active:
            if alert.kind in _ALERTS and alert.host is not None and (alert.kind, alert.host) not in wanted:
                await self._db(
                    self._store.clear_alerts, now=now, kind=alert.kind, host=alert.host, epoch=epoch
                )
        raised = {(a.kind, a.host) for a in active}
        for (kind, subject), message in wanted.items():
            if (kind, subject) not in raised:
                log.warning("%s", message)
                alert = Alert(str(uuid.uuid4()), kind, message, now, host=HostName(subject))
                await self._db(self._store.raise_alert, alert, epoch=epoch)

    # ---- plumbing ----------------------------------------------------------------------------------

    async def _isolated(self, step: Callable[..., object], *args: object) -> None:
        """One backup's failure, expected or not, is that backup's: the pass goes on. A deposed engine's
        pass stops (``Deposed``, checked before each step: no cloud call once the term ended)."""
        try:
            self._epoch()
            result = step(*args)
            if asyncio.iscoroutine(result):
                await result
        except Deposed:
            raise
        except Conflict as exc:  # another pass or engine holds it: nothing to do here
            log.info("backup step skipped: %s", exc)
        except HavenError as exc:
            log.warning("backup step failed: %s", exc)
        except Exception:
            log.exception("backup step failed")

    async def _db(self, call: Callable[..., T], *args: object, **kw: object) -> T:
        return await asyncio.to_thread(call, *args, **kw)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def newest_good(records: Sequence[BackupRecord], at: float | None = None) -> BackupRecord | None:
    """The newest available backup taken at or before ``at`` (None: the newest of all)."""
    good = [r for r in records if r.state is BackupState.AVAILABLE and (at is None or r.created_at <= at)]
    return max(good, key=lambda r: (r.created_at, r.id), default=None)
