"""HTTP with retries: one pooled httpx client, bearer auth, explicit timeouts, and a retry loop
that is safe for requests that create things. Transport (httpx.Client, for Client) and
AsyncTransport (httpx.AsyncClient, for AsyncClient) run the same RetryLoop: one set of rules.

What is retried:
- any request that never reached the server (connection refused, connect timeout);
- idempotent requests (GET, DELETE, or a POST carrying an Idempotency-Key) also after a dropped
  connection, a read timeout, or a 429 / 502 / 503 / 504 answer; not a 429 that is the
  user's quota (errors.QUOTA_CODES, e.g. too many active jobs): waiting does not cure it.
A POST that creates something is only idempotent with a key: the resources generate one per
call and reuse it across that call's retries, so the server answers a retry with the job it
already created instead of a second one.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio
import httpx

from cttv2_client.errors import QUOTA_CODES, APIConnectionError, AuthError, error_from_response

log = logging.getLogger("cttv2_client")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Errors raised before the request left this machine: always safe to retry.
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass
class RetryPolicy:
    max_attempts: int = 5  # tries per call, the first one included
    backoff_base: float = 0.5  # seconds before the first retry (doubling, with jitter)
    backoff_max: float = 30.0
    max_retry_after: float = 300.0  # cap on the server's Retry-After hint

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try number attempt + 1."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        cap = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return float(cap / 2 + random.uniform(0, cap / 2))  # "equal jitter": spread, never zero


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class RetryLoop:
    """The retry decisions of one call, without I/O: the sync and the async transport run the
    same loop around it (send; on an error or a response ask what to do; sleep; again)."""

    def __init__(self, transport: BaseTransport, method: str, path: str, idempotent: bool) -> None:
        self.transport = transport
        self.method = method
        self.path = path
        self.idempotent = idempotent
        self.attempt = 0

    def start_attempt(self) -> None:
        self.attempt += 1

    @property
    def last_try(self) -> bool:
        return self.attempt >= self.transport.retry.max_attempts

    def after_transport_error(self, exc: httpx.TransportError) -> float:
        """Seconds to wait before the next try, or raise APIConnectionError (giving up)."""
        if self.last_try or not (self.idempotent or isinstance(exc, NOT_SENT_ERRORS)):
            what = "cannot reach" if isinstance(exc, NOT_SENT_ERRORS) else "lost the connection to"
            raise APIConnectionError(
                f"{what} {self.transport.base_url} ({type(exc).__name__}: {str(exc) or 'no detail'})"
            ) from exc
        wait = self.transport.retry.delay(self.attempt)
        log.info("%s %s: %s; retry %d in %.1fs", self.method, self.path, type(exc).__name__, self.attempt, wait)
        return wait

    def after_error_response(self, response: httpx.Response) -> float:
        """For an error status (its body read): seconds to wait before the next try, or raise
        the APIError it stands for."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        error = error_from_response(response, retry_after=retry_after)
        retryable = response.status_code in RETRY_STATUSES and error.code not in QUOTA_CODES
        if retryable and self.idempotent and not self.last_try:
            wait = self.transport.retry.delay(self.attempt, retry_after)
            log.info(
                "%s %s: HTTP %d; retry %d in %.1fs", self.method, self.path, response.status_code, self.attempt, wait
            )
            return wait
        if isinstance(error, AuthError) and error.status_code == 401 and not self.transport.has_token:
            error.message = f"{error.message} (no token configured: set CTTV2_TOKEN or run `cttv2 login`)"
            error.args = (error.message,)
        raise error


class BaseTransport:
    """What the sync and async transports share: settings, headers, idempotency and the retry
    decisions (RetryLoop)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        retry: RetryPolicy | None = None,
        user_agent: str = "cttv2-client",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.has_token = bool(token)
        self.retry = retry or RetryPolicy()
        self.headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    @staticmethod
    def client_options(timeout: float | httpx.Timeout) -> dict[str, Any]:
        """Keyword arguments of the httpx.Client / AsyncClient a transport makes for itself."""
        return {
            "timeout": timeout
            if isinstance(timeout, httpx.Timeout)
            else httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            "limits": httpx.Limits(max_connections=10, max_keepalive_connections=5),
        }

    def loop(self, method: str, path: str, idempotent: bool | None, kwargs: dict[str, Any]) -> RetryLoop:
        return RetryLoop(self, method, path, self._idempotent(method, idempotent, kwargs))

    @staticmethod
    def _idempotent(method: str, given: bool | None, kwargs: dict[str, Any]) -> bool:
        if given is not None:
            return given
        headers = kwargs.get("headers") or {}
        return method in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in headers)

    @staticmethod
    def done(response: httpx.Response, accept_statuses: tuple[int, ...]) -> bool:
        """Whether a response (its body read if an error) ends the call successfully."""
        return response.status_code < 400 or response.status_code in accept_statuses


class Transport(BaseTransport):
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        user_agent: str = "cttv2-client",
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, token, retry=retry, user_agent=user_agent)
        self.sleep = time.sleep
        self._owns_client = http_client is None
        self.http = http_client or httpx.Client(base_url=self.base_url, **self.client_options(timeout))
        self.http.headers.update(self.headers)

    def close(self) -> None:
        if self._owns_client:
            self.http.close()

    # -- the retry loop -------------------------------------------------------------------
    def request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying as the module doc says; raise an APIError for a 4xx/5xx."""
        method = method.upper()
        return self._send_with_retries(self.loop(method, path, idempotent, kwargs), (), kwargs, read_body=True)

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        accept_statuses: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        """Like request, but the body is not read: the caller iterates it inside the `with`."""
        method = method.upper()
        response = self._send_with_retries(self.loop(method, path, idempotent, kwargs), accept_statuses, kwargs)
        try:
            yield response
        finally:
            response.close()

    def _send_with_retries(
        self, loop: RetryLoop, accept_statuses: tuple[int, ...], kwargs: dict[str, Any], read_body: bool = False
    ) -> httpx.Response:
        while True:
            loop.start_attempt()
            try:
                request = self.http.build_request(loop.method, loop.path, **kwargs)
                response = self.http.send(request, stream=True)
                if read_body or response.status_code >= 400:
                    try:
                        response.read()  # inside the try: a body cut short is retried too
                    finally:
                        response.close()
            except httpx.TransportError as exc:
                self.sleep(loop.after_transport_error(exc))
                continue
            if self.done(response, accept_statuses):
                return response
            self.sleep(loop.after_error_response(response))


class AsyncTransport(BaseTransport):
    """Transport's twin on httpx.AsyncClient: the same retries (RetryLoop), awaiting instead of
    blocking; sleeps with anyio (asyncio or trio, as httpx)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        user_agent: str = "cttv2-client",
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, token, retry=retry, user_agent=user_agent)
        self.sleep: Callable[[float], Awaitable[None]] = anyio.sleep
        self._owns_client = http_client is None
        self.http = http_client or httpx.AsyncClient(base_url=self.base_url, **self.client_options(timeout))
        self.http.headers.update(self.headers)

    async def close(self) -> None:
        if self._owns_client:
            await self.http.aclose()

    async def request(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> httpx.Response:
        method = method.upper()
        return await self._send_with_retries(self.loop(method, path, idempotent, kwargs), (), kwargs, read_body=True)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        accept_statuses: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> AsyncIterator[httpx.Response]:
        method = method.upper()
        loop = self.loop(method, path, idempotent, kwargs)
        response = await self._send_with_retries(loop, accept_statuses, kwargs)
        try:
            yield response
        finally:
            await response.aclose()

    async def _send_with_retries(
        self, loop: RetryLoop, accept_statuses: tuple[int, ...], kwargs: dict[str, Any], read_body: bool = False
    ) -> httpx.Response:
        while True:
            loop.start_attempt()
            try:
                request = self.http.build_request(loop.method, loop.path, **kwargs)
                response = await self.http.send(request, stream=True)
                if read_body or response.status_code >= 400:
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
            except httpx.TransportError as exc:
                await self.sleep(loop.after_transport_error(exc))
                continue
            if self.done(response, accept_statuses):
                return response
            await self.sleep(loop.after_error_response(response))
