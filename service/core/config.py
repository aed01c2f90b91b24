"""Settings, from environment variables prefixed CTTV2_ (or a .env file).

With nothing set, everything lives under ./.state: a SQLite database, a filesystem broker
and the artifact store, so `cttv2 serve` + `cttv2 worker` work on one machine alone.
Production sets CTTV2_DATABASE_URL=postgresql+psycopg://... and CTTV2_BROKER_URL=redis://...
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_BROKER_SCHEMES = ("filesystem", "redis", "rediss", "memory")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTTV2_", env_file=".env", extra="ignore")

    state_dir: Path = Field(Path(".state"), description="root of the embedded default's files")
    database_url: str = Field("", description="default: sqlite file under state_dir")
    broker_url: str = Field("", description="default: filesystem broker under state_dir")
    # Default: a folder under state_dir (a factory that sees the validated state_dir).
    artifact_dir: Path = Field(default_factory=lambda data: data["state_dir"] / "artifacts")
    # Where job files and uploaded weights live (service.artifacts.store): file:///path (a
    # folder: ARTIFACT_DIR when empty) or s3://bucket/prefix (an S3-compatible object store,
    # configured by boto3's AWS_* settings; then nothing is shared between hosts but the
    # database, the broker and the store).
    artifact_url: str = Field("", description="file:///path or s3://bucket/prefix; default: ARTIFACT_DIR")
    data_dir: Path = Field(default_factory=lambda data: data["state_dir"] / "data")
    weights_dir: Path = Field(default_factory=lambda data: data["state_dir"] / "weights")
    queue_name: str = Field("cttv2", pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    # Secret mixed into every token hash: a leaked database alone does not yield tokens.
    token_pepper: SecretStr = SecretStr("cttv2-dev-pepper-change-me")
    token_ttl_days: int = Field(365, ge=1, le=3650)

    # Queue protocol (seconds). A running job whose heartbeat is older than heartbeat_timeout_s
    # is reaped and re-queued (it resumes from its checkpoint), at most max_attempts times.
    heartbeat_interval_s: float = Field(5.0, gt=0, le=3600)
    heartbeat_timeout_s: float = Field(60.0, gt=0, le=86400)
    maintenance_interval_s: float = Field(10.0, gt=0, le=3600)
    requeue_after_s: float = Field(900.0, gt=0, le=86400 * 7)
    requeue_grace_s: float = Field(10.0, ge=0, le=3600)
    max_attempts: int = Field(3, ge=1, le=100)
    # How long a worker keeps retrying a database write during an outage before giving up.
    db_retry_deadline_s: float = Field(900.0, gt=0, le=86400)
    # How long a worker keeps retrying an upload to the artifact store (S3 unreachable: MinIO
    # restarting) before failing the job; training waits meanwhile, the heartbeat goes on.
    store_retry_deadline_s: float = Field(900.0, gt=0, le=86400)

    auto_migrate: bool = Field(True, description="run `alembic upgrade head` when serve/worker start")
    # Log lines of `cttv2 serve` and `cttv2 worker`: readable text, or one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    worker_threads: int = Field(1, ge=1, le=256, description="torch threads per worker process")

    # Uploaded weights (POST /v1/weights) larger than this are refused with 413.
    max_upload_mb: int = Field(512, ge=1, le=100_000)
    # The events stream (GET /v1/jobs/{id}/events): how often it polls the event log, and how
    # long it stays silent before sending a keep-alive comment.
    sse_poll_s: float = Field(0.5, gt=0, le=60)
    sse_keepalive_s: float = Field(15.0, gt=0, le=3600)
    # A sweep creates one job per grid point and seed (+ baselines): at most this many.
    max_sweep_jobs: int = Field(500, ge=1, le=100_000)

    page_size_default: int = Field(50, ge=1, le=1000)
    page_size_max: int = Field(500, ge=1, le=10000)

    # Limits: a careless request gets a clear 4xx instead of filling the disk or the queue.
    # (max_upload_mb and max_sweep_jobs, above, are limits too: multipart bodies and sweeps.)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1 << 30, description="JSON request bodies")
    max_epochs: int = Field(1000, ge=1, le=10_000)
    max_train_samples: int = Field(200_000, ge=1, description="train_per_class x classes")
    max_img_size: int = Field(512, ge=8, le=1024)
    max_active_jobs_per_user: int = Field(200, ge=1, description="queued + running; beyond: 429")
    # Running at once per user: a worker skips a user's queued jobs while they have this many
    # running (service.jobs.lifecycle.claim_next); the rest wait queued.
    max_running_jobs_per_user: int = Field(4, ge=1, le=100_000, description="running at once; beyond: they wait")
    # Disk per user: the files of their jobs (artifacts) + their uploaded weights, in MB (MiB).
    # An upload that would pass it is a 507; so is a job while it is used up, at submit, and a
    # job a worker starts then fails before training (service.users.storage).
    max_storage_mb_per_user: int = Field(100_000, ge=1, description="artifacts + uploaded weights; beyond: 507")
    # Retention: a run keeps checkpoints/latest.pt and best.pt (never one per epoch). Once a job
    # has succeeded, a worker deletes the ones not kept here (worker.artifacts.prune_checkpoints).
    # latest.pt is what `resume_from` continues and best.pt the best epoch's state.
    keep_checkpoints: Literal["best_and_latest", "best", "latest", "none"] = "best_and_latest"

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, v: str) -> str:
        if v and v.split(":", 1)[0] not in _DB_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(_DB_SCHEMES)} (got {v.split(':', 1)[0]!r})")
        return v

    @field_validator("artifact_url")
    @classmethod
    def _artifact_url(cls, v: str) -> str:
        v = v.strip()
        if not v:
            return v
        scheme, sep, rest = v.partition("://")
        if not sep or scheme not in ("file", "s3"):
            raise ValueError(f"must start with file:// or s3:// (got {v[:40]!r})")
        if scheme == "file" and not rest.startswith("/"):
            raise ValueError("file:// needs an absolute path (file:///srv/cttv2/artifacts)")
        if scheme == "s3" and not _BUCKET.match(rest.split("/", 1)[0]):
            raise ValueError("s3://BUCKET/prefix: a bucket name of 3-63 lowercase letters, digits, dots and hyphens")
        return v

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, v: str) -> str:
        if v and v.split(":", 1)[0] not in _BROKER_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(_BROKER_SCHEMES)} (got {v.split(':', 1)[0]!r})")
        return v

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        state = self.state_dir.absolute()
        if not self.database_url:
            self.database_url = f"sqlite:///{state / 'cttv2.db'}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if self.artifact_url.startswith("file://"):
            self.artifact_dir = Path(self.artifact_url.removeprefix("file://"))
        self.artifact_dir = self.artifact_dir.absolute()
        self.data_dir = self.data_dir.absolute()
        self.weights_dir = self.weights_dir.absolute()
        if self.heartbeat_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_timeout_s must be larger than heartbeat_interval_s")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def artifact_backend(self) -> Literal["file", "s3"]:
        return "s3" if self.artifact_url.startswith("s3://") else "file"

    @property
    def s3_location(self) -> tuple[str, str]:
        """(bucket, prefix) of an s3:// artifact_url."""
        bucket, _, prefix = self.artifact_url.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    @property
    def scratch_dir(self) -> Path:
        """This host's working copies of job files when the store is remote (S3)."""
        return self.state_dir.absolute() / "scratch"

    @property
    def broker_dir(self) -> Path:
        """Folder of the filesystem broker (the embedded default)."""
        return self.state_dir.absolute() / "broker"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def describe_settings_error(exc: Exception) -> str:
    """One line for a bad setting: which variable and why."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors():
            name = "CTTV2_" + "_".join(str(p) for p in err["loc"]).upper() if err["loc"] else "settings"
            parts.append(f"{name}: {err['msg']}")
        return "bad setting: " + "; ".join(parts)
    return f"bad setting: {exc}"
