"""client.weights: upload pretrained digital weights (safetensors or a plain state dict) that
fine-tuning jobs start from with model.pretrained = {weights: NAME}."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from cttv2_client.calls import Call, Pager, delete, get, parse_model
from cttv2_client.models import Weights

if TYPE_CHECKING:
    from cttv2_client.client import Client


class WeightsFiles:
    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self, path: str | os.PathLike[str], arch: str, name: str | None = None, img_size: int | None = None
    ) -> Weights:
        """Upload a weights file; the server validates it in the background (status pending,
        then valid or invalid)."""
        path = Path(path)
        with open(path, "rb") as fh:
            return self._client.call(upload_call(path, fh, arch, name, img_size))

    def get(self, weights_id: int) -> Weights:
        return self._client.call(get(f"/v1/weights/{int(weights_id)}", Weights))

    def list(self, *, page_size: int | None = None) -> Iterator[Weights]:
        return self._client.pages(Pager("/v1/weights", Weights, {}, page_size))

    def delete(self, weights_id: int) -> None:
        """Delete an upload (record and file). Raises Conflict while a queued or running job
        starts from it."""
        self._client.call(delete(f"/v1/weights/{int(weights_id)}"))


def upload_call(path: Path, fh: IO[bytes], arch: str, name: str | None, img_size: int | None) -> Call[Weights]:
    data = {"name": name or path.name, "arch": arch}
    if img_size is not None:
        data["img_size"] = str(img_size)
    files = {"file": (path.name, fh, "application/octet-stream")}
    return Call("POST", "/v1/weights", parse_model(Weights), {"data": data, "files": files})
