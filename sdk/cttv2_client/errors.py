"""Exceptions: one class per way a call can fail, all under `CTTV2Error`.

API errors carry the server's one error shape {"error": {"code", "message", "fields"?}}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from cttv2_client.models import Job


class CTTV2Error(Exception):
    """Base of every error the client raises."""


class ConfigError(CTTV2Error):
    """No server URL or token configured, or a config file that cannot be read."""


class APIConnectionError(CTTV2Error):
    """The server could not be reached (after the retries)."""


@dataclass
class FieldError:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class APIError(CTTV2Error):
    """The server answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str = "error",
        fields: list[FieldError] | None = None,
        request_id: str | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.fields = fields or []
        self.request_id = request_id
        self.response = response

    def __str__(self) -> str:
        return self.message


class AuthError(APIError):
    """401 (missing, wrong or expired token) or 403 (not allowed)."""


class NotFound(APIError):
    """404: no such object, or another user's."""


class Conflict(APIError):
    """409: e.g. an Idempotency-Key reused with another body, a device spec still in use."""


class ValidationError(APIError):
    """422: the request was invalid; `fields` names each bad field and why."""


# Errors that a short wait does not cure: the user's own quotas (the server's error codes):
# too many active jobs (a 429) and a used-up storage quota (a 507, which is not retried in any
# case; listed so that it stays so). The transport raises these at once; it retries only rate
# and overload 429s and 502/503/504.
QUOTA_CODES = frozenset({"too_many_active_jobs", "storage_quota_exceeded"})


class RateLimited(APIError):
    """429 after the retries; `retry_after` is the server's hint in seconds (or None)."""

    def __init__(self, *args: Any, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx after the retries."""


class ChecksumMismatch(CTTV2Error):
    """A downloaded file's sha256 differs from the server's; nothing was written."""


class WaitTimeout(CTTV2Error, TimeoutError):
    """`wait` gave up before the job or sweep finished (it keeps running on the server)."""


class JobError(CTTV2Error):
    """Base of the job outcomes `jobs.wait` raises; `job` is the final Job."""

    def __init__(self, message: str, job: Job) -> None:
        super().__init__(message)
        self.job = job


class JobFailed(JobError):
    """The job ended with status failed; `job.error` says why."""


class JobCancelled(JobError):
    """The job was cancelled."""


_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    422: ValidationError,
    429: RateLimited,
}


def error_from_response(response: httpx.Response, retry_after: float | None = None) -> APIError:
    """The exception for an error response, from the server's error body when it has one."""
    status = response.status_code
    code, message, fields = "error", "", []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or "")
        for f in err.get("fields") or []:
            if isinstance(f, dict):
                fields.append(FieldError(str(f.get("field", "")), str(f.get("message", ""))))
    if not message:
        text = response.text.strip()  # the transport reads streamed error bodies first
        message = f"HTTP {status} {response.reason_phrase}".strip() + (f": {text[:200]}" if text else "")
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    kwargs: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "fields": fields,
        "response": response,
        "request_id": response.headers.get("X-Request-ID"),
    }
    if cls is RateLimited:
        return RateLimited(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)


class SpecFileError(CTTV2Error):
    """A job, device or sweep spec file that is missing or cannot be parsed."""
