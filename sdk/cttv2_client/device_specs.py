"""client.device_specs: store analog device descriptions and refer to them by id in jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from cttv2_client.calls import Call, Pager, delete, get, parse_model
from cttv2_client.models import DeviceSpecRecord
from cttv2_client.specfile import load_document

if TYPE_CHECKING:
    from cttv2_client.client import Client


class DeviceSpecs:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, spec: Any, name: str | None = None) -> DeviceSpecRecord:
        """Store a device spec: a dict / YAML path holding either the DeviceSpec fields
        ({family: ..., dw_min: ...}) or {name: ..., spec: {...}}."""
        return self._client.call(create_call(spec, name))

    def get(self, spec_id: int) -> DeviceSpecRecord:
        return self._client.call(get(f"/v1/device-specs/{int(spec_id)}", DeviceSpecRecord))

    def list(self, *, page_size: int | None = None) -> Iterator[DeviceSpecRecord]:
        return self._client.pages(Pager("/v1/device-specs", DeviceSpecRecord, {}, page_size))

    def delete(self, spec_id: int) -> None:
        """Raises Conflict while a queued or running job uses it."""
        self._client.call(delete(f"/v1/device-specs/{int(spec_id)}"))


def create_call(spec: Any, name: str | None) -> Call[DeviceSpecRecord]:
    doc = load_document(spec)
    if set(doc) <= {"name", "spec"} and isinstance(doc.get("spec"), dict):
        body = {"name": name or doc.get("name"), "spec": doc["spec"]}
    else:
        body = {"name": name, "spec": doc}
    if body["name"] is None:
        del body["name"]
    return Call("POST", "/v1/device-specs", parse_model(DeviceSpecRecord), {"json": body})
