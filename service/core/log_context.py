"""The request id every log line carries: an HTTP request's X-Request-ID in the API, the job
(`job-<id>`) in a worker. Named log_context, not logging, so the stdlib module stays visible."""

from __future__ import annotations

import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True
