"""The request id every log line carries: an HTTP request's X-Request-ID in the API, the job
(`job-<id>`) in a worker, which also sets job_id. Named log_context, not logging, so the stdlib
module stays visible.

Two line formats (CTTV2_LOG_FORMAT): `text` (the default, one readable line) and `json` (one
JSON object per line: time, level, logger, message, request_id, job_id when in a job, and
exc_info when an exception is logged), for a log collector."""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
job_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("job_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.job_id = job_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. request_id and job_id come from the record (RequestIdFilter
    sets them), else from the context variables, so the formatter also works without the
    filter."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        out["request_id"] = None if request_id == "-" else request_id  # "-": outside a request or job
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            job_id = job_id_var.get()
        if job_id is not None:
            out["job_id"] = job_id
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for CTTV2_LOG_FORMAT (`text` or `json`)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def logging_dict_config(level: str, log_format: str) -> dict[str, object]:
    """The same set-up as a logging.config.dictConfig dict, for uvicorn's log_config: uvicorn
    applies it in each process it starts (`cttv2 serve --workers N` spawns fresh interpreters,
    which inherit no handlers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "service.core.log_context.RequestIdFilter"}},
        "formatters": {"cttv2": {"()": "service.core.log_context.make_formatter", "log_format": log_format}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "cttv2", "filters": ["request_id"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        # Alembic announces its plugins at INFO when a fresh process imports it: noise.
        "loggers": {"alembic.runtime.plugins": {"level": "WARNING"}},
    }
