"""Python client for the cttv2 service: analog in-memory training jobs (c-TTv2 on Swin-ViT).

from cttv2_client import Client
with Client() as client:
    job = client.jobs.wait(client.jobs.submit("job.yaml").id)
    print(job.result.test_accuracy)
"""

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
    DeviceSpecRecord,
    Event,
    Job,
    JobResult,
    LogChunk,
    MetricPoint,
    Metrics,
    Progress,
    Sweep,
    SweepReport,
    Weights,
)
from cttv2_client.transport import RetryPolicy

__all__ = [
    "APIConnectionError",
    "APIError",
    "Artifact",
    "AuthError",
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
    "LogChunk",
    "MetricPoint",
    "Metrics",
    "NotFound",
    "Progress",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "SpecFileError",
    "Sweep",
    "SweepReport",
    "ValidationError",
    "WaitTimeout",
    "Weights",
    "__version__",
    "wait_until_ready",
]
