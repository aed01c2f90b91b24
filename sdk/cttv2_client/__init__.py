"""Python client for the cttv2 service: analog in-memory training jobs (c-TTv2 on Swin-ViT).

from cttv2_client import Client
with Client() as client:
    job = client.jobs.wait(client.jobs.submit("job.yaml").id)
    print(job.result.test_accuracy)
"""

from cttv2_client.async_client import AsyncClient
from cttv2_client.client import Client, __version__, wait_until_ready
from cttv2_client.errors import (
    APIConnectionError,
    APIError,
    AuthError,
    ChecksumMismatch,
    ConfigError,
    Conflict,
    CTTV2Error,
    FieldError,
    JobCancelled,
    JobError,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    SpecFileError,
    ValidationError,
    WaitTimeout,
)
from cttv2_client.models import (
    Artifact,
    BaselineStats,
    DeviceSpecRecord,
    Event,
    Job,
    JobResult,
    JobStatus,
    LogChunk,
    MetricPoint,
    Metrics,
    NotApplicable,
    Progress,
    ReportRow,
    Sweep,
    SweepReport,
    SweepStatus,
    Weights,
)
from cttv2_client.transport import RetryPolicy

__all__ = [
    "APIConnectionError",
    "APIError",
    "Artifact",
    "AsyncClient",
    "AuthError",
    "BaselineStats",
    "CTTV2Error",
    "ChecksumMismatch",
    "Client",
    "ConfigError",
    "Conflict",
    "DeviceSpecRecord",
    "Event",
    "FieldError",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobResult",
    "JobStatus",
    "LogChunk",
    "MetricPoint",
    "Metrics",
    "NotApplicable",
    "NotFound",
    "Progress",
    "RateLimited",
    "ReportRow",
    "RetryPolicy",
    "ServerError",
    "SpecFileError",
    "Sweep",
    "SweepReport",
    "SweepStatus",
    "ValidationError",
    "WaitTimeout",
    "Weights",
    "__version__",
    "wait_until_ready",
]
