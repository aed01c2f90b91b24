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
    "Client", "RetryPolicy", "wait_until_ready", "__version__",
    "CTTV2Error", "ConfigError", "APIConnectionError", "APIError", "AuthError", "NotFound", "Conflict",
    "ValidationError", "FieldError", "RateLimited", "ServerError", "ChecksumMismatch", "SpecFileError",
    "WaitTimeout", "JobError", "JobFailed", "JobCancelled",
    "Job", "JobResult", "Progress", "DeviceSpecRecord", "Event", "LogChunk", "Artifact", "MetricPoint",
    "Metrics", "Sweep", "SweepReport", "Weights",
]
