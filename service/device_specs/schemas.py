from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from cttv2_engine.spec import DeviceSpec


class DeviceSpecCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    spec: DeviceSpec


class DeviceSpecOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str | None
    spec: DeviceSpec
    created_at: datetime
