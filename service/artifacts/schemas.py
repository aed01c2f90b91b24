from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ArtifactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: str
    size: int
    sha256: str
    updated_at: datetime


class ArtifactList(BaseModel):
    items: list[ArtifactOut]
