from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.core.deps import CurrentUser

router = APIRouter(prefix="/presets", tags=["presets"])


@router.get("", operation_id="list_presets")
def list_presets(_: CurrentUser) -> dict[str, Any]:
    """Device families, named presets, knobs (units, ranges, defaults), algorithms, models, datasets."""
    from cttv2_engine.presets import listing

    return listing()
