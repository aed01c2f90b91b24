"""Deleting finished jobs: their rows (the job, and by ON DELETE CASCADE its events, metrics,
log lines, tags (job_tags) and artifact rows) and their files (ARTIFACT_DIR/jobs/<id>/, or the
objects under jobs/<id>/ on the S3 store: `_delete_stored`). Used by
DELETE /v1/jobs/{id}, DELETE /v1/sweeps/{id} and `cttv2 admin purge`.

Rows and files go together without a shared transaction:

1. In the transaction that deletes the rows, each job's folder is first *renamed* to a trash
   name in the same folder, `jobs/.deleted-<id>-<created>-<renamed>` (<created>: the row's
   created_at, <renamed>: when; both UTC). If anything fails before the commit, the folders
   are renamed back.
2. The rows are deleted and committed.
3. The trash folders are removed.

A crash after 1 but before 2 leaves the row and a trash folder: the worker's maintenance loop
(worker.maintenance.remove_orphans) renames it back, since the row with that id and that
created_at still exists. A crash after 2 leaves a trash folder with no row: the loop removes
it. Either way only after a grace period, so a delete in progress is never touched. The
folder leaves jobs/<id> before the id is free: on SQLite, where a deleted highest id is given
to the next job, the new job never finds the old job's checkpoint in its folder.

Only terminal jobs are deleted (the DELETE is conditional on the status, so a job cannot
become active between the check and the delete): an active job is a 409, "cancel it first".
A finished job that a queued or running job of its owner starts from (model.pretrained.job or
resume_from.job) is a 409 too: the worker reads those files when the job starts or resumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact
from service.artifacts.paths import job_dir
from service.artifacts.store import S3Store, StoreError, get_store, job_key
from service.core.db import execute_count
from service.core.errors import Conflict, NotFound
from service.jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job

log = logging.getLogger("cttv2.jobs.deletion")

TRASH_PREFIX = ".deleted-"
_STAMP = "%Y%m%dT%H%M%S%f"


@dataclass
class Deleted:
    """What a delete removed (or, dry, would remove)."""

    job_ids: list[int] = field(default_factory=list)
    bytes: int = 0


def stamp(moment: datetime) -> str:
    """A UTC time as it appears in a trash folder's name (microseconds)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(_STAMP)


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)


def trash_name(job_id: int, created_at: datetime, now: datetime) -> str:
    return f"{TRASH_PREFIX}{int(job_id)}-{stamp(created_at)}-{stamp(now)}-{uuid.uuid4().hex[:8]}"


def parse_trash_name(name: str) -> tuple[int, str, datetime] | None:
    """(job id, created stamp, renamed at) of a trash folder's name, or None."""
    if not name.startswith(TRASH_PREFIX):
        return None
    parts = name[len(TRASH_PREFIX) :].split("-")
    if len(parts) != 4 or not parts[0].isdigit():
        return None
    try:
        return int(parts[0]), parts[1], parse_stamp(parts[2])
    except ValueError:
        return None


def tree_size(path: Path) -> int:
    """Bytes of the regular files under path (links are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size
    return total


def remove_tree(path: Path) -> None:
    """Remove a folder (a link is unlinked, never followed)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def check_deletable(session: Session, jobs: Sequence[Job], what: str) -> None:
    """409 unless every job is terminal and no active job of the same owner starts from one."""
    active = [j.id for j in jobs if j.status in ACTIVE_STATUSES]
    if active:
        listed = ", ".join(map(str, active[:10]))
        raise Conflict(
            f"{what} cannot be deleted: job {listed} {'is' if len(active) == 1 else 'are'} queued or running "
            "(cancel it first)",
            code="job_active",
        )
    ids = {j.id for j in jobs}
    if not ids:
        return
    for job_id, used in started_from(session, {j.user_id for j in jobs}).items():
        hit = sorted(used & ids)
        if hit:
            raise Conflict(
                f"{what} cannot be deleted: job {job_id} (queued or running) starts from job {hit[0]}'s files",
                code="job_in_use",
            )


def started_from(session: Session, user_ids: Iterable[int]) -> dict[int, set[int]]:
    """For each active job of these users, the jobs whose files it starts from
    (model.pretrained.job, resume_from.job)."""
    rows = session.execute(
        select(Job.id, Job.spec, Job.resume_from).where(Job.user_id.in_(set(user_ids)), Job.status.in_(ACTIVE_STATUSES))
    ).all()
    out: dict[int, set[int]] = {}
    for job_id, spec, resume_from in rows:
        used: set[int] = set()
        pretrained = ((spec or {}).get("model") or {}).get("pretrained")
        if isinstance(pretrained, dict) and isinstance(pretrained.get("job"), int):
            used.add(pretrained["job"])
        if isinstance(resume_from, dict) and isinstance(resume_from.get("job"), int):
            used.add(resume_from["job"])
        if used:
            out[job_id] = used
    return out


def delete_jobs(session: Session, artifact_dir: Path, jobs: Sequence[Job], what: str) -> Deleted:
    """Delete terminal jobs, rows and files (see the module's docstring). Commits. Raises
    Conflict (nothing deleted) if one is active or another active job starts from one."""
    check_deletable(session, jobs, what)
    store = get_store()
    if isinstance(store, S3Store):
        return _delete_stored(session, store, jobs, what)
    out = Deleted(job_ids=[j.id for j in jobs])
    now = datetime.now(UTC)
    moved: list[tuple[Path, Path]] = []  # (trash, original)
    try:
        for job in jobs:
            folder = job_dir(artifact_dir, job.id)
            if folder.is_symlink() or not folder.is_dir():
                continue
            trash = folder.with_name(trash_name(job.id, job.created_at, now))
            os.rename(folder, trash)
            moved.append((trash, folder))
        ids = [j.id for j in jobs]
        n = execute_count(session, delete(Job).where(Job.id.in_(ids), Job.status.in_(TERMINAL_STATUSES)))
        if n != len(ids):  # deleted by a concurrent request meanwhile (a job never becomes active again)
            raise NotFound(f"{what} not found (deleted meanwhile)")
        session.commit()
    except BaseException:
        session.rollback()
        for trash, folder in reversed(moved):
            try:
                os.rename(trash, folder)
            except OSError as exc:  # maintenance renames it back later (the row still exists)
                log.warning("could not restore %s: %s", folder, exc)
        raise
    session.expunge_all()  # the deleted rows are gone: never refresh them
    for trash, _ in moved:
        out.bytes += tree_size(trash)
        remove_tree(trash)
    log.info("deleted job(s) %s (%d bytes)", ", ".join(map(str, out.job_ids)), out.bytes)
    return out


def _delete_stored(session: Session, store: S3Store, jobs: Sequence[Job], what: str) -> Deleted:
    """The S3 store (no folder to rename): the rows are deleted and committed, then each
    job's objects. A crash or a store error in between leaves objects with no job row, which
    the orphan sweep removes; a new job never reads them, since a worker only resumes from a
    checkpoint that has a row."""
    ids = [j.id for j in jobs]
    out = Deleted(job_ids=ids)
    try:
        out.bytes = stored_bytes(session, ids)
        n = execute_count(session, delete(Job).where(Job.id.in_(ids), Job.status.in_(TERMINAL_STATUSES)))
        if n != len(ids):
            raise NotFound(f"{what} not found (deleted meanwhile)")
        session.commit()
    except BaseException:
        session.rollback()
        raise
    session.expunge_all()
    for job_id in ids:
        try:
            store.delete_prefix(job_key(job_id))
        except StoreError as exc:
            log.warning("job %s: files left for the orphan sweep: %s", job_id, exc)
    log.info("deleted job(s) %s (%d bytes)", ", ".join(map(str, ids)), out.bytes)
    return out


def stored_bytes(session: Session, job_ids: Iterable[int]) -> int:
    """Bytes of the jobs' registered files (their artifact rows)."""
    ids = list(job_ids)
    if not ids:
        return 0
    return int(session.scalar(select(func.coalesce(func.sum(Artifact.size), 0)).where(Artifact.job_id.in_(ids))) or 0)


def files_size(artifact_dir: Path, job_ids: Iterable[int]) -> int:
    """Bytes the jobs' folders hold (what deleting them frees)."""
    return sum(tree_size(job_dir(artifact_dir, i)) for i in job_ids if job_dir(artifact_dir, i).is_dir())


def purge(
    session: Session,
    artifact_dir: Path,
    before: datetime,
    *,
    user_id: int | None = None,
    dry_run: bool = False,
    batch: int = 200,
) -> Deleted:
    """Delete terminal jobs that finished before `before` (all users', or one user's), with
    their files, in batches; a job an active job starts from is kept. dry_run: count only."""
    finished = func.coalesce(Job.finished_at, Job.updated_at)
    stmt = select(Job).where(Job.status.in_(TERMINAL_STATUSES), finished < before).order_by(Job.id)
    if user_id is not None:
        stmt = stmt.where(Job.user_id == user_id)
    total = Deleted()
    after = 0
    while True:
        jobs = list(session.scalars(stmt.where(Job.id > after).limit(batch)))
        if not jobs:
            return total
        after = jobs[-1].id
        kept = set().union(*started_from(session, {j.user_id for j in jobs}).values())
        jobs = [j for j in jobs if j.id not in kept]
        ids = [j.id for j in jobs]  # read now: after a rollback the rows are expired
        if dry_run:
            total.job_ids += ids
            local = get_store().is_local
            total.bytes += files_size(artifact_dir, ids) if local else stored_bytes(session, ids)
            continue
        try:
            done = delete_jobs(session, artifact_dir, jobs, "job")
        except (Conflict, NotFound):  # an active job starts from one, or one went meanwhile: one at a time
            done = Deleted()
            for job_id in ids:
                job = session.get(Job, job_id)  # None: deleted meanwhile
                if job is None:
                    continue
                try:
                    one = delete_jobs(session, artifact_dir, [job], f"job {job_id}")
                except (Conflict, NotFound):
                    continue
                done.job_ids += one.job_ids
                done.bytes += one.bytes
        total.job_ids += done.job_ids
        total.bytes += done.bytes
