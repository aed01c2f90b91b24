"""The orphan sweep (a step of worker.maintenance's loop): files whose row is gone.

Deletes commit the rows first and remove the files after (service.jobs.deletion,
service.weights.service.delete), so a crash in between leaves files with no row. This sweep
finds them, only once they are older than a grace period (ORPHAN_GRACE_S), so that what is
being created right now is never touched: a job's folder is made by the worker after the
job's row exists, and an upload streams into a temporary `.upload-*.part` file (its mtime
moves while it streams), is renamed into place and its row committed just after.

- ARTIFACT_DIR/jobs/<id>/ with no job row: removed.
- ARTIFACT_DIR/jobs/.deleted-<id>-<created>-<renamed>-<x>/ (a job delete's trash,
  service.jobs.deletion): renamed back to jobs/<id>/ when the job's row (same id, same
  created_at) still exists (the delete did not commit), else removed.
- WEIGHTS_DIR/users/<user id>/<file> with no weights row of that user and name (including
  temporary files of uploads that died): removed. Server-wide files in WEIGHTS_DIR itself are
  never touched.

On the S3 store (CTTV2_ARTIFACT_URL=s3://...) the same, by key: objects under jobs/<id>/
with no job row, objects under weights/users/<user id>/ with no weights row, and multipart
uploads left unfinished (a worker killed mid-upload), each once older than the grace period;
and on this host, the scratch folders (working copies) of jobs no longer queued or running.

Only names the path helpers make are considered (ids are integers, names are checked), links
are unlinked and never followed, and nothing outside those two folders is touched. Several
workers may run it at once: each removal first renames its target to a unique name.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from service.artifacts.paths import job_dir
from service.artifacts.store import S3Store, StoredObject, get_store, job_key
from service.core.config import Settings
from service.core.db import session_scope
from service.jobs import deletion
from service.jobs.models import ACTIVE_STATUSES, Job
from service.weights.models import WeightsFile

log = logging.getLogger("cttv2.worker.orphans")

ORPHAN_GRACE_S = 600.0  # files younger than this are never removed
ORPHAN_EVERY_S = 300.0  # how often the maintenance loop runs the sweep


@dataclass
class Swept:
    removed: list[str] = field(default_factory=list)  # paths removed
    restored: list[str] = field(default_factory=list)  # trash folders renamed back
    bytes: int = 0


def newest_mtime(path: Path) -> float:
    """The latest mtime of path and everything below it (links are not followed)."""
    newest = os.lstat(path).st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
                except OSError:
                    continue
    return newest


def _chunks(items: list[int], n: int = 500):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def remove_orphans(settings: Settings, grace_s: float = ORPHAN_GRACE_S) -> Swept:
    swept = Swept()
    store = get_store(settings)
    if isinstance(store, S3Store):
        _stored_objects(store, grace_s, swept)
        _scratch_folders(store, grace_s, swept)
    else:
        _job_folders(Path(settings.artifact_dir), grace_s, swept)
        _weights_files(Path(settings.weights_dir), grace_s, swept)
    if swept.removed or swept.restored:
        log.info(
            "orphan sweep: removed %d (%d bytes), restored %d", len(swept.removed), swept.bytes, len(swept.restored)
        )
    return swept


def _stored_objects(store: S3Store, grace_s: float, swept: Swept) -> None:
    """The S3 store: objects of jobs with no row (jobs/<id>/...), uploads with no weights
    row (weights/users/<user id>/<name>), and multipart uploads a killed worker left
    unfinished; each only once its newest write is older than the grace period."""
    cutoff = datetime.now(UTC) - timedelta(seconds=grace_s)
    by_job: dict[int, list[StoredObject]] = {}
    for obj in store.list("jobs/"):
        part = obj.key.split("/", 2)[1]
        if part.isdigit() and part == str(int(part)):
            by_job.setdefault(int(part), []).append(obj)
    if by_job:
        with session_scope() as session:
            live = {
                i for chunk in _chunks(sorted(by_job)) for i in session.scalars(select(Job.id).where(Job.id.in_(chunk)))
            }
        for job_id, objects in by_job.items():
            if job_id in live or max(o.modified for o in objects) >= cutoff:
                continue
            store.delete(o.key for o in objects)
            swept.removed.append(f"{store.describe()}{job_key(job_id)}")
            swept.bytes += sum(o.size for o in objects)
    uploads: dict[tuple[int, str], StoredObject] = {}
    for obj in store.list("weights/users/"):
        parts = obj.key.split("/")
        if len(parts) == 4 and parts[2].isdigit():
            uploads[(int(parts[2]), parts[3])] = obj
    if uploads:
        users = sorted({u for u, _ in uploads})
        with session_scope() as session:
            names = {
                (u, n)
                for chunk in _chunks(users)
                for u, n in session.execute(
                    select(WeightsFile.user_id, WeightsFile.name).where(WeightsFile.user_id.in_(chunk))
                )
            }
        gone = [o for k, o in uploads.items() if k not in names and o.modified < cutoff]
        store.delete(o.key for o in gone)
        swept.removed += [f"{store.describe()}{o.key}" for o in gone]
        swept.bytes += sum(o.size for o in gone)
    aborted = store.abort_stale_uploads(cutoff)
    if aborted:
        log.info("orphan sweep: aborted %d unfinished multipart upload(s)", aborted)


def _scratch_folders(store: S3Store, grace_s: float, swept: Swept) -> None:
    """This host's working copies (S3) of jobs that are over or gone: what a worker killed
    mid-job left behind (a running job's folder is its worker's; a queued job's is cleared by
    whichever worker on this host starts it)."""
    root = store.local_path("jobs")
    if not root.is_dir():
        return
    folders = {int(e.name): root / e.name for e in os.scandir(root) if e.name.isdigit() and e.name == str(int(e.name))}
    if not folders:
        return
    with session_scope() as session:
        active = {
            i
            for chunk in _chunks(sorted(folders))
            for i in session.scalars(select(Job.id).where(Job.id.in_(chunk), Job.status.in_(ACTIVE_STATUSES)))
        }
    cutoff = time.time() - grace_s
    for job_id, path in folders.items():
        try:
            if job_id in active or newest_mtime(path) >= cutoff:
                continue
        except OSError:
            continue
        _remove(path, swept, str(path))


def _job_folders(artifact_dir: Path, grace_s: float, swept: Swept) -> None:
    root = artifact_dir / "jobs"
    if not root.is_dir():
        return
    plain: dict[int, Path] = {}
    trash: list[tuple[Path, int, str, datetime]] = []
    for entry in os.scandir(root):
        if entry.name.isdigit() and entry.name == str(int(entry.name)):
            plain[int(entry.name)] = root / entry.name
        elif (parsed := deletion.parse_trash_name(entry.name)) is not None:
            trash.append((root / entry.name, *parsed))
    ids = sorted(set(plain) | {t[1] for t in trash})
    if not ids:
        return
    created: dict[int, str] = {}
    with session_scope() as session:
        for chunk in _chunks(ids):
            for job_id, created_at in session.execute(select(Job.id, Job.created_at).where(Job.id.in_(chunk))):
                created[job_id] = deletion.stamp(created_at)
    cutoff = time.time() - grace_s
    for job_id, path in plain.items():
        if job_id in created or path != job_dir(artifact_dir, job_id):
            continue
        try:
            if newest_mtime(path) >= cutoff:
                continue
        except OSError:
            continue
        # Out of jobs/<id> first: a job created now with this id starts with no folder.
        target = root / deletion.trash_name(job_id, datetime(1970, 1, 1, tzinfo=UTC), datetime.now(UTC))
        try:
            os.rename(path, target)
        except OSError:
            continue
        _remove(target, swept, str(path))
    renamed_before = datetime.now(UTC) - timedelta(seconds=grace_s)
    for path, job_id, created_stamp, renamed_at in trash:
        if renamed_at >= renamed_before:
            continue  # a delete may be in progress
        original = job_dir(artifact_dir, job_id)
        if created.get(job_id) == created_stamp and not os.path.lexists(original):
            try:
                os.rename(path, original)  # the delete never committed: the job keeps its files
            except OSError:
                continue
            swept.restored.append(str(original))
            log.warning("orphan sweep: job %s was not deleted; its folder is back", job_id)
            continue
        _remove(path, swept, str(path))


def _remove(path: Path, swept: Swept, label: str) -> None:
    swept.bytes += deletion.tree_size(path) if path.is_dir() and not path.is_symlink() else 0
    deletion.remove_tree(path)
    swept.removed.append(label)


def _weights_files(weights_dir: Path, grace_s: float, swept: Swept) -> None:
    users_root = weights_dir / "users"
    if not users_root.is_dir():
        return
    folders = {int(e.name): users_root / e.name for e in os.scandir(users_root) if e.name.isdigit() and e.is_dir()}
    if not folders:
        return
    names: set[tuple[int, str]] = set()
    with session_scope() as session:
        for chunk in _chunks(sorted(folders)):
            rows = session.execute(select(WeightsFile.user_id, WeightsFile.name).where(WeightsFile.user_id.in_(chunk)))
            names.update((u, n) for u, n in rows)
    cutoff = time.time() - grace_s
    for user_id, folder in folders.items():
        for entry in os.scandir(folder):
            if (user_id, entry.name) in names or entry.is_dir(follow_symlinks=False):
                continue
            path = folder / entry.name
            try:
                if os.lstat(path).st_mtime >= cutoff:
                    continue
                # Rename first, then look again: an upload of this name may have landed in
                # between (os.replace keeps its fresh mtime); if so, it goes back.
                target = folder / f".orphan-{uuid.uuid4().hex}"
                os.rename(path, target)
                st = os.lstat(target)
            except OSError:
                continue
            if st.st_mtime >= cutoff:
                try:
                    os.rename(target, path)
                except OSError:
                    pass
                continue
            target.unlink(missing_ok=True)
            swept.removed.append(str(path))
            swept.bytes += st.st_size
