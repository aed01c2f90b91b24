from __future__ import annotations

from fastapi import APIRouter, Header, Path
from fastapi.responses import StreamingResponse

from service.artifacts import service
from service.artifacts.schemas import ArtifactList, ArtifactOut
from service.core.deps import ID, CurrentUser, SessionDep
from service.core.errors import ErrorResponse

router = APIRouter(prefix="/jobs/{job_id}/artifacts", tags=["artifacts"])


@router.get("", operation_id="list_job_artifacts", responses={404: {"model": ErrorResponse}})
def list_job_artifacts(job_id: ID, user: CurrentUser, session: SessionDep) -> ArtifactList:
    return ArtifactList(items=[ArtifactOut.model_validate(a) for a in service.list_for_job(session, user, job_id)])


@router.get(
    "/{name:path}",
    operation_id="download_job_artifact",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        206: {"description": "the requested byte range"},
        404: {"model": ErrorResponse},
        416: {"model": ErrorResponse},
        503: {"model": ErrorResponse},
    },
)
def download_job_artifact(
    job_id: ID,
    user: CurrentUser,
    session: SessionDep,
    name: str = Path(max_length=500, description="e.g. weights.safetensors, checkpoints/best.pt"),
    range_header: str | None = Header(None, alias="range", max_length=200),
    if_range: str | None = Header(None, alias="if-range", max_length=200),
) -> StreamingResponse:
    """The file, streamed from the artifact store; Range gives 206; ETag and X-Checksum-SHA256
    carry its sha256."""
    return service.download(session, user, job_id, name, range_header, if_range)
