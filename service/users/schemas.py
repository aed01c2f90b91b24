from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=USER_NAME, description="letters, digits, . _ - (at most 64)")
    is_admin: bool = False


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(None, max_length=100)
    ttl_days: int | None = Field(None, ge=1, le=3650, description="default: CTTV2_TOKEN_TTL_DAYS")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    is_admin: bool
    created_at: datetime
    disabled_at: datetime | None


class TokenOut(BaseModel):
    """A token's record; the token itself is never stored, so never shown again."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenIssued(TokenOut):
    token: str = Field(description="the API token: shown this once")


class UserCreated(BaseModel):
    user: UserOut
    token: TokenIssued


class MyLimits(BaseModel):
    max_active_jobs: int = Field(
        description="queued + running jobs at once (CTTV2_MAX_ACTIVE_JOBS_PER_USER); beyond: 429"
    )
    max_running_jobs: int = Field(
        description="running at once (CTTV2_MAX_RUNNING_JOBS_PER_USER); beyond: the others wait queued"
    )
    max_storage_bytes: int = Field(
        description="disk for the files of your jobs + your uploaded weights (CTTV2_MAX_STORAGE_MB_PER_USER); "
        "beyond: 507 storage_quota_exceeded"
    )


class MyUsage(BaseModel):
    active_jobs: int = Field(description="queued + running")
    running_jobs: int
    queued_jobs: int
    storage_bytes: int = Field(description="the files of your jobs (artifacts) + your uploaded weights")


class MeOut(BaseModel):
    """GET /v1/users/me: who the token belongs to, this server's limits and what counts against them."""

    id: int
    name: str
    is_admin: bool
    created_at: datetime
    limits: MyLimits
    usage: MyUsage
