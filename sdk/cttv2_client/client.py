"""The Client: connection settings, the resources (jobs, device_specs, artifacts, sweeps, weights)
and the few calls that belong to none of them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import httpx

from cttv2_client import config
from cttv2_client.artifacts import Artifacts
from cttv2_client.calls import Call, Pager
from cttv2_client.device_specs import DeviceSpecs
from cttv2_client.jobs import Jobs
from cttv2_client.models import APIModel
from cttv2_client.sweeps import Sweeps
from cttv2_client.transport import DEFAULT_TIMEOUT, RetryPolicy, Transport
from cttv2_client.weights import WeightsFiles

M = TypeVar("M", bound=APIModel)
T = TypeVar("T")

__version__ = "0.1.0"


class Client:
    """A connection to a cttv2 server.

        client = Client()                       # CTTV2_URL / CTTV2_TOKEN, else `cttv2 login`'s file
        job = client.jobs.submit("job.yaml")
        job = client.jobs.wait(job.id)          # progress bar in a terminal or notebook
        client.artifacts.download(job.id, "weights.safetensors", "out/")

    One pooled HTTP connection set per Client; use it as a context manager or call close().
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_attempts: int | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        settings, retry = resolve_settings(base_url, token, retry, max_attempts)
        self.base_url: str = settings.url  # type: ignore[assignment]
        self._transport = Transport(
            self.base_url,
            settings.token,
            timeout=timeout,
            retry=retry,
            user_agent=f"cttv2-client/{__version__}",
            http_client=http_client,
        )
        self.jobs = Jobs(self)
        self.device_specs = DeviceSpecs(self)
        self.artifacts = Artifacts(self)
        self.sweeps = Sweeps(self)
        self.weights = WeightsFiles(self)

    # -- plumbing the resources share --------------------------------------------------------
    @property
    def retry(self) -> RetryPolicy:
        return self._transport.retry

    def sleep(self, seconds: float) -> None:
        self._transport.sleep(seconds)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Any API call, with the client's auth, retries and error mapping."""
        return self._transport.request(method, path, **kwargs)

    def stream(self, method: str, path: str, **kwargs: Any) -> AbstractContextManager[httpx.Response]:
        return self._transport.stream(method, path, **kwargs)

    def call(self, call: Call[T]) -> T:
        """Run one API call (see cttv2_client.calls) and parse its answer."""
        return call.parse(self.request(call.method, call.path, idempotent=call.idempotent, **call.kwargs))

    def pages(self, pager: Pager[M]) -> Iterator[M]:
        """Items of a paged list endpoint, following next_cursor lazily."""
        while True:
            items, more = self.call(pager.call())
            yield from items
            if not more:
                return

    def paginate(self, path: str, model: type[M], params: dict[str, Any], page_size: int | None) -> Iterator[M]:
        """Items of a paged list endpoint, following next_cursor lazily."""
        return self.pages(Pager(path, model, params, page_size))

    # -- server-wide calls -----------------------------------------------------------------
    def presets(self) -> dict[str, Any]:
        """Device families and presets (knobs, ranges, defaults), algorithms, models, datasets."""
        presets: dict[str, Any] = self.request("GET", "/v1/presets").json()
        return presets

    def version(self) -> dict[str, str]:
        version: dict[str, str] = self.request("GET", "/version").json()
        return version

    def ready(self) -> bool:
        """True when the server, its database and its broker are up."""
        try:  # one try, no retries: callers poll this
            return self._transport.http.get("/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:  # noqa: PYI034 - no typing.Self on 3.10
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"


def resolve_settings(
    base_url: str | None, token: str | None, retry: RetryPolicy | None, max_attempts: int | None
) -> tuple[config.Settings, RetryPolicy]:
    """The server, token and retry policy a Client or AsyncClient uses."""
    settings = config.resolve(base_url, token)
    retry = retry or RetryPolicy()
    if max_attempts is not None:
        retry.max_attempts = max(1, max_attempts)
    return settings, retry


def wait_until_ready(client: Client, timeout: float = 60.0) -> None:
    """Poll /readyz until the server is ready (for scripts that start a server)."""
    deadline = time.monotonic() + timeout
    while not client.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.base_url} not ready after {timeout:g} s")
        time.sleep(0.3)
