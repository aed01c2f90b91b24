"""A sweep request as a list of job specs: every grid point x seed, plus the digital baselines.

Pure functions on dicts (no database, no validation of whole specs): the service validates
each planned spec with the jobs' own checks. Axes are dotted JobSpec paths
("device.transfer_noise", "algorithm", "data.num_classes", ...).

The digital baseline is the same fine-tuning done digitally: algorithm fp, no device. Axes that
only describe the analog side (ANALOG_ONLY) do not apply to it; any other axis (say
data.num_classes) changes the task itself, so there is one baseline per value of those axes
and seed, and each grid point is compared with the baseline of its own values.
"""

from __future__ import annotations

import copy
import itertools
import json
import types
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from cttv2_engine.spec import JobSpec
from service.core.errors import Invalid

# The analog lr (training.lr of an analog job) means something else for AdamW: the baseline
# trains with the base's digital lr instead (see make_digital).
ANALOG_ONLY = ("algorithm", "device", "algorithm_options", "training.lr")
FORBIDDEN_AXES = {
    "training.seed": "seeds are given in `seeds`, not as a grid axis",
    "name": "job names are made from the sweep's name and each point",
}
BASELINE_ALGORITHM = "fp"


@dataclass(frozen=True)
class PlannedJob:
    spec: dict[str, Any]  # a JobSpec dict, not validated yet
    grid: dict[str, Any]  # the grid values of this job (for a baseline: the axes that apply)
    seed: int
    is_baseline: bool


def applies_to_baseline(path: str) -> bool:
    return not any(path == p or path.startswith(p + ".") for p in ANALOG_ONLY)


# -- checks on the request ----------------------------------------------------------------------
def check_axes(grid: dict[str, list[Any]], axes: list[str] | None) -> list[str]:
    """The axes in order (`axes` if given, else the grid's key order), each a JobSpec path whose
    values are all different. Raises Invalid naming `grid.<path>`."""
    if axes is not None and (sorted(axes) != sorted(grid) or len(set(axes)) != len(axes)):
        raise _invalid("axes", f"must list each grid path once (grid has: {', '.join(grid) or 'none'})")
    order = list(axes if axes is not None else grid)
    for path in order:
        problem = FORBIDDEN_AXES.get(path) or path_problem(path)
        if problem:
            raise _invalid(f"grid.{path}", problem)
        seen: set[str] = set()
        for value in grid[path]:
            key = value_key(value)
            if key in seen:
                raise _invalid(f"grid.{path}", f"value {_show(value)} is listed twice")
            seen.add(key)
    return order


def check_seeds(seeds: list[int]) -> None:
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise _invalid("seeds", f"seed {dup} is listed twice")


def path_problem(path: str) -> str | None:
    """Why `path` is not a field of the job spec, or None when it is."""
    models: list[type[BaseModel]] = [JobSpec]
    parts = path.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i]) or "the job spec"
        if not models:
            return f"{where} is a value; it has no field {part!r}"
        field = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        if field is None:
            known = sorted({name for m in models for name in m.model_fields})
            return f"{where} has no field {part!r} (it has: {', '.join(known)})"
        models = _models_in(field.annotation)
    return None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


# -- expansion --------------------------------------------------------------------------------
def points(grid: dict[str, list[Any]], axes: list[str]) -> list[dict[str, Any]]:
    """The cartesian product in axis order (the last axis varies fastest)."""
    return [dict(zip(axes, values)) for values in itertools.product(*(grid[a] for a in axes))]


def baseline_axes(axes: list[str]) -> list[str]:
    return [a for a in axes if applies_to_baseline(a)]


def count_jobs(grid: dict[str, list[Any]], axes: list[str], n_seeds: int, baseline: bool) -> tuple[int, int]:
    """(grid jobs, baseline jobs), from the sizes alone."""
    n_points = 1
    for a in axes:
        n_points *= len(grid[a])
    n_baselines = 0
    if baseline:
        n_baselines = 1
        for a in baseline_axes(axes):
            n_baselines *= len(grid[a])
    return n_points * n_seeds, n_baselines * n_seeds


def make_digital(spec: dict[str, Any]) -> dict[str, Any]:
    """A spec made digital: algorithm fp, no device, default analog options, and the
    lr of AdamW: the spec's digital lr (training.digital_lr) for an analog spec, its lr for an
    fp spec; unset means the fp default."""
    out = copy.deepcopy(spec)
    training = out.setdefault("training", {})
    if out.get("algorithm", JobSpec.model_fields["algorithm"].default) != BASELINE_ALGORITHM:
        training["lr"] = training.get("digital_lr")
    training["digital_lr"] = None
    out["algorithm"] = BASELINE_ALGORITHM
    out["device"] = None
    out.pop("algorithm_options", None)
    return out


def plan(base: dict[str, Any], grid: dict[str, list[Any]], axes: list[str], seeds: list[int],
         baseline: bool, label: str) -> list[PlannedJob]:
    """Every job of the sweep, seed by seed (each seed's baselines first), so that a partly done
    sweep already has one result at every point."""
    grid_points = points(grid, axes)
    b_axes = baseline_axes(axes)
    b_points = points(grid, b_axes) if baseline else []
    jobs: list[PlannedJob] = []
    for seed in seeds:
        for point in b_points:
            # Made digital after the values are applied: a training.digital_lr axis becomes
            # the baseline's lr.
            name = f"{label}: baseline {BASELINE_ALGORITHM}{_label(point)}"
            jobs.append(PlannedJob(make_digital(_apply(base, point, seed, name)), point, seed, True))
        for point in grid_points:
            jobs.append(PlannedJob(_apply(base, point, seed, f"{label}:{_label(point)}"), point, seed, False))
    return jobs


def _apply(base: dict[str, Any], point: dict[str, Any], seed: int, name: str) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for path, value in point.items():
        set_path(spec, path, copy.deepcopy(value))
    set_path(spec, "training.seed", seed)
    spec["name"] = f"{name} seed={seed}"[:200]
    return spec


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}  # e.g. analog_scope "head" -> {"last_n_blocks": ...}
        node = node[part]
    node[leaf] = value


def _label(point: dict[str, Any]) -> str:
    return "".join(f" {path}={_show(v)}" for path, v in point.items())


# -- values -----------------------------------------------------------------------------------
def value_key(value: Any) -> str:
    """Equal for values that validate alike (0 and 0.0): how jobs are matched to points."""
    return json.dumps(_normal(value), sort_keys=True)


def point_key(point: dict[str, Any], axes: list[str]) -> tuple[str, ...]:
    return tuple(value_key(point.get(a)) for a in axes)


def _normal(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if not isinstance(value, str) else value


def _invalid(field: str, message: str) -> Invalid:
    return Invalid(f"{field}: {message}", fields=[{"field": field, "message": message}])
