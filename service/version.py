from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def version_info() -> dict[str, str]:
    try:
        v = version("cttv2")
    except PackageNotFoundError:
        v = "0+unknown"
    return {"version": v, "api": "v1"}
