"""client.sweeps: grids of jobs (the study's robustness sweeps) and their reports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from cttv2_client.calls import Call, Pager, delete, get, parse_model
from cttv2_client.models import Job, Sweep, SweepReport
from cttv2_client.progress import make_display
from cttv2_client.specfile import apply_overrides, load_document
from cttv2_client.waiting import Watch

if TYPE_CHECKING:
    from cttv2_client.client import Client

REPORT_FORMATS = ("json", "csv", "png")


class Sweeps:
    def __init__(self, client: Client) -> None:
        self._client = client

    def submit(
        self,
        sweep: Any,
        *,
        overrides: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Sweep:
        """Create a sweep from a dict or YAML/JSON file: {name, base: <job>, grid: {path: [values]},
        mode: "grid" | "one_at_a_time", crossed: [path, ...], reference_only: [algorithm, ...],
        seeds: [...], baseline: bool, baseline_training: {...}}. overrides set dotted paths
        ("base.training.epochs")."""
        return self._client.call(submit_call(sweep, overrides, idempotency_key))

    def get(self, sweep_id: int) -> Sweep:
        return self._client.call(get(f"/v1/sweeps/{int(sweep_id)}", Sweep))

    def list(self, *, page_size: int | None = None) -> Iterator[Sweep]:
        return self._client.pages(Pager("/v1/sweeps", Sweep, {}, page_size))

    def jobs(self, sweep_id: int, *, page_size: int | None = None) -> Iterator[Job]:
        return self._client.pages(Pager(f"/v1/sweeps/{int(sweep_id)}/jobs", Job, {}, page_size))

    def cancel(self, sweep_id: int) -> Sweep:
        return self._client.call(cancel_call(sweep_id))

    def delete(self, sweep_id: int) -> None:
        """Delete the sweep and all its jobs (records and files). Raises Conflict while any of
        its jobs is queued or running (cancel the sweep first)."""
        self._client.call(delete(f"/v1/sweeps/{int(sweep_id)}"))

    def wait(
        self,
        sweep_id: int | Sweep,
        timeout: float | None = None,
        *,
        on_progress: Callable[[Sweep], None] | None = None,
        poll_interval: float = 2.0,
        progress_bar: bool | None = None,
    ) -> Sweep:
        """Block until no job of the sweep is queued or running; return the sweep (its status
        tells succeeded / partial / failed / cancelled). Polls every poll_interval seconds at
        first, doubling up to 10 s. Raises WaitTimeout after `timeout` s."""
        sweep_id = sweep_id.id if isinstance(sweep_id, Sweep) else int(sweep_id)
        display = make_display(f"sweep {sweep_id}", progress_bar)
        watch: Watch[Sweep] = Watch(f"sweep {sweep_id}", display, on_progress, timeout, poll_interval)
        try:
            while True:
                sweep = watch.report(self.get(sweep_id))
                if sweep.done:
                    return sweep
                self._client.sleep(watch.next_poll(sweep))
        finally:
            display.close()

    @overload
    def report(self, sweep_id: int, format: Literal["json"] = "json") -> SweepReport: ...
    @overload
    def report(self, sweep_id: int, format: Literal["csv"]) -> str: ...
    @overload
    def report(self, sweep_id: int, format: Literal["png"]) -> bytes: ...

    def report(self, sweep_id: int, format: str = "json") -> SweepReport | str | bytes:
        """Mean test error per grid point against the baseline: a SweepReport (json), the CSV
        text, or the PNG plot's bytes."""
        return self._client.call(report_call(sweep_id, format))


# -- the requests (shared with the async client) ----------------------------------------------
def submit_call(sweep: Any, overrides: Mapping[str, Any] | None, idempotency_key: str | None) -> Call[Sweep]:
    body = apply_overrides(load_document(sweep), overrides)
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", "/v1/sweeps", parse_model(Sweep), {"json": body, "headers": {"Idempotency-Key": key}})


def cancel_call(sweep_id: int) -> Call[Sweep]:
    return Call("POST", f"/v1/sweeps/{int(sweep_id)}/cancel", parse_model(Sweep), idempotent=True)


def report_call(sweep_id: int, format: str) -> Call[SweepReport | str | bytes]:
    if format not in REPORT_FORMATS:
        raise ValueError(f"format must be json, csv or png, not {format!r}")

    def parse(r: httpx.Response) -> SweepReport | str | bytes:
        if format == "csv":
            return r.text
        if format == "png":
            return r.content
        return SweepReport.model_validate(r.json())

    kwargs = {"params": {"format": format}, "headers": {"Accept": "*/*"}}
    return Call("GET", f"/v1/sweeps/{int(sweep_id)}/report", parse, kwargs)
