"""Job files in the artifact store: ARTIFACT_DIR/jobs/<job_id>/<name>."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from service.artifacts.models import Artifact
from service.core.db import dialect_name, utcnow

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


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe(root: Path, path: Path, kind: str) -> ArtifactInfo:
    path = Path(path)
    name = path.resolve().relative_to(root.resolve()).as_posix()
    return ArtifactInfo(name=name, kind=kind, size=path.stat().st_size, sha256=sha256_of(path))


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


def prune_checkpoints(session: Session, workdir: Path, job_id: int, keep: str) -> list[str]:
    """Delete a succeeded job's checkpoints that `keep` does not keep: their rows (in the
    caller's transaction), then, once it commits, their files (`unlink_pruned`). A crash in
    between leaves files without a row, which the orphan sweep removes. Returns the names."""
    kept = KEPT_CHECKPOINTS[keep]
    names = [n for n, kind in FINAL_OUTPUTS if kind == "checkpoint" and n not in kept and (workdir / n).exists()]
    if names:
        session.execute(delete(Artifact).where(Artifact.job_id == job_id, Artifact.name.in_(names)))
    return names


def unlink_pruned(workdir: Path, names: list[str]) -> None:
    for name in names:
        (workdir / name).unlink(missing_ok=True)


def check_writable(workdir: Path) -> None:
    """Fail early (before any training) when the job's folder cannot be written."""
    probe = workdir / f".probe-{uuid.uuid4().hex}"
    with open(probe, "wb") as fh:
        fh.write(b"ok")
        fh.flush()
        os.fsync(fh.fileno())
    probe.unlink()
