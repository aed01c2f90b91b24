"""Request bodies from what users have at hand: a dict, a YAML or JSON file, or a pydantic model,
plus dotted-path overrides ({"training.epochs": 2})."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cttv2_client.errors import SpecFileError

SpecSource = Mapping[str, Any] | str | Path


def load_document(source: Any) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if hasattr(source, "model_dump"):  # a pydantic model, e.g. cttv2_engine.spec.JobSpec
        dumped: dict[str, Any] = source.model_dump(mode="json", exclude_unset=True)
        return dumped
    if isinstance(source, (str, Path)):
        return load_file(Path(source))
    raise TypeError(f"expected a dict or a path to a YAML/JSON file, not {type(source).__name__}")


def load_file(path: Path) -> dict[str, Any]:
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecFileError(f"{path}: invalid JSON: {exc}") from None
    else:
        try:
            import yaml
        except ImportError:
            raise SpecFileError(
                f"{path}: reading YAML needs PyYAML (pip install 'cttv2-client[yaml]'), or give a .json file"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecFileError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise SpecFileError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def apply_overrides(body: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Set dotted paths in place, creating mappings on the way: {"model.pretrained": {"job": 3}}."""
    for dotted, value in (overrides or {}).items():
        node = body
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = value
    return body
