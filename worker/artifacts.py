"""Job files in the artifact store (service.artifacts.store): the worker writes them in the
job's local folder (the store itself on the local backend, a scratch folder on S3), then
`publish` uploads each complete file (S3) before its row is written."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact
from service.artifacts.store import ArtifactStore, StoreError, job_key, sha256_of
from service.core.db import dialect_name, utcnow

T = TypeVar("T")

# What a finished run leaves behind (name relative to the job dir, kind).
FINAL_OUTPUTS = (
    ("weights.safetensors", "weights"),
    ("result.json", "result"),
    ("curves.png", "plot"),
    ("checkpoints/latest.pt", "checkpoint"),
    ("checkpoints/best.pt", "checkpoint"),
)


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    kind: str
    size: int
    sha256: str


def describe(root: Path, path: Path, kind: str) -> ArtifactInfo:
    path = Path(path)
    name = path.resolve().relative_to(root.resolve()).as_posix()
    return ArtifactInfo(name=name, kind=kind, size=path.stat().st_size, sha256=sha256_of(path))


def publish(
    store: ArtifactStore, job_id: int, path: Path, kind: str, published: dict[str, str] | None = None
) -> ArtifactInfo:
    """Describe a complete file of the job's local folder and put it in the store (an upload
    on S3, nothing on the local backend); the caller writes its row after this returns.
    `published` (name -> sha256 already uploaded) skips a second upload of the same bytes."""
    info = describe(store.local_path(job_key(job_id)), path, kind)
    if published is None or published.get(info.name) != info.sha256:
        store.publish(job_key(job_id, info.name), info.sha256)
        if published is not None:
            published[info.name] = info.sha256
    return info


def wait_out_store(
    fn: Callable[[], T], deadline_s: float, max_delay_s: float, on_wait: Callable[[StoreError], None] | None = None
) -> T:
    """fn(), retried while the artifact store is unreachable (StoreError), with a growing
    delay, until deadline_s has passed; then the last StoreError is raised. on_wait is
    called once, at the first failure."""
    deadline = time.monotonic() + deadline_s
    delay = 1.0
    waited = False
    while True:
        try:
            return fn()
        except StoreError as exc:
            if time.monotonic() + delay > deadline:
                raise
            if not waited and on_wait is not None:
                on_wait(exc)
            waited = True
        time.sleep(delay)
        delay = min(delay * 2, max_delay_s)


def upsert(session: Session, job_id: int, info: ArtifactInfo) -> None:
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    now = utcnow()
    stmt = insert(Artifact).values(
        job_id=job_id,
        name=info.name,
        kind=info.kind,
        size=info.size,
        sha256=info.sha256,
        created_at=now,
        updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["job_id", "name"],
        set_={"kind": info.kind, "size": info.size, "sha256": info.sha256, "updated_at": now},
    )
    session.execute(stmt)


def final_outputs(workdir: Path) -> list[tuple[Path, str]]:
    return [(workdir / name, kind) for name, kind in FINAL_OUTPUTS if (workdir / name).is_file()]


# Which checkpoints a succeeded job keeps, by the keep_checkpoints setting.
KEPT_CHECKPOINTS = {
    "best_and_latest": ("checkpoints/best.pt", "checkpoints/latest.pt"),
    "best": ("checkpoints/best.pt",),
    "latest": ("checkpoints/latest.pt",),
    "none": (),
}


def prune_checkpoints(session: Session, job_id: int, keep: str) -> list[str]:
    """Delete a succeeded job's checkpoints that `keep` does not keep: their rows (in the
    caller's transaction), then, once it commits, their files (`unlink_pruned`). A crash in
    between leaves a file with no row (never listed or served; it goes with the job's other
    files when the job is deleted). Returns the names."""
    kept = KEPT_CHECKPOINTS[keep]
    candidates = [n for n, kind in FINAL_OUTPUTS if kind == "checkpoint" and n not in kept]
    # By the rows, not this attempt's folder: a resumed attempt may never have written
    # best.pt itself (the best epoch was an earlier attempt's, maybe on another host).
    names = list(session.scalars(select(Artifact.name).where(Artifact.job_id == job_id, Artifact.name.in_(candidates))))
    if names:
        session.execute(delete(Artifact).where(Artifact.job_id == job_id, Artifact.name.in_(names)))
    return names


def unlink_pruned(store: ArtifactStore, job_id: int, names: list[str]) -> None:
    store.delete(job_key(job_id, name) for name in names)
