"""client.weights: upload pretrained digital weights (safetensors or a plain state dict) that
fine-tuning jobs start from with model.pretrained = {weights: NAME}."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

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
        data = {"name": name or path.name, "arch": arch}
        if img_size is not None:
            data["img_size"] = str(img_size)
        with open(path, "rb") as fh:
            r = self._client.request(
                "POST", "/v1/weights", data=data, files={"file": (path.name, fh, "application/octet-stream")}
            )
        return Weights.model_validate(r.json())

    def get(self, weights_id: int) -> Weights:
        return Weights.model_validate(self._client.request("GET", f"/v1/weights/{int(weights_id)}").json())

    def list(self, *, page_size: int | None = None) -> Iterator[Weights]:
        return self._client.paginate("/v1/weights", Weights, {}, page_size)

    def delete(self, weights_id: int) -> None:
        """Delete an upload (record and file). Raises Conflict while a queued or running job
        starts from it."""
        self._client.request("DELETE", f"/v1/weights/{int(weights_id)}")
