from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict


class WeightsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    arch: str
    img_size: int | None
    size: int
    sha256: str
    status: Literal["pending", "valid", "invalid"]
    error: str | None
    created_at: datetime


# The multipart body of POST /v1/weights, for the OpenAPI document (the route parses the
# stream itself so the file goes straight to disk).
UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "arch"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "a state dict (.pt/.pth, plain tensors) or .safetensors",
                        },
                        "name": {
                            "type": "string",
                            "description": "plain file name ending in "
                            ".safetensors, .pt or .pth; default: the uploaded file's name",
                        },
                        "arch": {"type": "string", "description": "a model registry name, e.g. swin_micro"},
                        "img_size": {"type": "integer", "description": "input size (default: the arch's)"},
                    },
                }
            }
        },
    }
}
