"""Every table, imported in one place for Alembic's autogenerate and for the worker."""

from service.artifacts.models import Artifact
from service.core.db import Base
from service.device_specs.models import DeviceSpecRecord
from service.jobs.models import Job, JobEvent, JobLogLine, JobMetric
from service.sweeps.models import Sweep
from service.ui.models import UiSession
from service.users.models import ApiToken, User
from service.weights.models import WeightsFile

__all__ = [
    "ApiToken",
    "Artifact",
    "Base",
    "DeviceSpecRecord",
    "Job",
    "JobEvent",
    "JobLogLine",
    "JobMetric",
    "Sweep",
    "UiSession",
    "User",
    "WeightsFile",
]
