"""A sweep request as a list of job specs: every grid point x seed, plus the digital baselines.

Pure functions on dicts (no database, no validation of whole specs): the service validates
each planned spec with the jobs' own checks. Axes are dotted JobSpec paths
("device.transfer_noise", "algorithm", "data.num_classes", ...).

The digital baseline is the same fine-tuning done digitally: algorithm fp, no device. Axes that
only describe the analog side (ANALOG_ONLY) do not apply to it; any other axis (say
data.num_classes) changes the task itself, so there is one baseline per value of those axes
and seed, and each grid point is compared with the baseline of its own values.

Two modes (SweepCreate.mode): "grid" plans every combination of the axes' values;
"one_at_a_time" crosses the `algorithm` axis with the rest as "grid" does, but varies every
other axis (a knob) alone while the other knobs stay at their reference value, the first one
listed. The reference point (every knob at its first value) is planned once and belongs to every
knob's curve. Either way a point holds a value for every axis.

Knobs that apply to some algorithms only (cttv2_engine.spec.KNOB_ALGORITHMS, e.g.
device.transfer_noise: the Tiki-Taka family; the job spec rejects any value but None for sgd or
mixed-precision) are planned around when `algorithm` is an axis, instead of failing the sweep:
- grid: a point whose algorithm the knob does not apply to is planned only where the knob's
  value is None (often: not at all);
- one_at_a_time: such an algorithm gets no points along that knob, only the reference point;
  there the knob keeps its reference value if that is None, else the path is not set at all
  (the base's value stays). The point (PlannedJob.grid, the report's row) still holds the
  reference value, so the job lines up with its row and on the x axis.
not_applicable() lists these (algorithm, knob) pairs for the report. Without an algorithm axis
nothing is planned around: a base algorithm the knob does not apply to is a 422 as before.

`crossed` (one_at_a_time only) names axes crossed with every knob setting as the algorithm
axis is, e.g. the model and the task of a study that runs every knob's curve on each model
and data subset; they are not knobs and have no reference value.

`reference_only` (one_at_a_time only) names algorithms of the algorithm axis that are planned at
the reference point alone: a method known to fail (in-memory SGD in the paper's study) is shown
at the reference device without paying for its every curve. not_applicable() lists those too.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from cttv2_engine.presets import digital_baseline_training
from cttv2_engine.spec import KNOB_ALGORITHMS, JobSpec, TrainingSpec
from service.core.errors import field_error

# The analog lr (training.lr of an analog job) means something else for AdamW: the baseline
# trains with the base's digital lr instead (see make_digital).
ANALOG_ONLY = ("algorithm", "device", "algorithm_options", "training.lr")
FORBIDDEN_AXES = {
    "training.seed": "seeds are given in `seeds`, not as a grid axis",
    "name": "job names are made from the sweep's name and each point",
}
BASELINE_ALGORITHM = "fp"
ALGORITHM_AXIS = "algorithm"
FORBIDDEN_BASELINE_TRAINING = {"seed": "the baseline runs once per seed of `seeds`"}

Mode = Literal["grid", "one_at_a_time"]


@dataclass(frozen=True)
class PlannedJob:
    spec: dict[str, Any]  # a JobSpec dict, not validated yet
    # The grid values of this job (for a baseline: the axes that apply): the point, even where
    # the spec leaves a knob that does not apply to its algorithm unset (see omitted_paths).
    grid: dict[str, Any]
    seed: int
    is_baseline: bool


def applies_to_baseline(path: str) -> bool:
    return not any(path == p or path.startswith(p + ".") for p in ANALOG_ONLY)


def knob_applies(path: str, algorithm: Any) -> bool:
    """Whether the job spec takes a value other than None at `path` with `algorithm`
    (cttv2_engine.spec.KNOB_ALGORITHMS; fp takes any, it ignores the device)."""
    allowed = KNOB_ALGORITHMS.get(path)
    return allowed is None or algorithm == BASELINE_ALGORITHM or algorithm in allowed


def _inapplicable(
    grid: dict[str, list[Any]], axes: list[str], algorithm: Any, crossed: Sequence[str] = ()
) -> list[str]:
    """The knobs that do not apply to `algorithm` and have a value other than None."""
    return [
        k for k in knob_axes(axes, crossed) if not knob_applies(k, algorithm) and any(v is not None for v in grid[k])
    ]


def not_applicable(
    grid: dict[str, list[Any]],
    axes: list[str],
    mode: Mode = "grid",
    reference_only: Sequence[Any] = (),
    crossed: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The (algorithm, knob) pairs planned around (see the module's docstring), each with why
    and what was planned instead; [] without an algorithm axis."""
    if ALGORITHM_AXIS not in axes:
        return []
    out: list[dict[str, Any]] = []
    for algorithm in grid[ALGORITHM_AXIS]:
        if _is_reference_only(algorithm, reference_only):
            reason = f"{algorithm} is in reference_only: only the reference point is planned"
            out.extend({"algorithm": algorithm, "knob": knob, "reason": reason} for knob in knob_axes(axes, crossed))
            continue
        for knob in _inapplicable(grid, axes, algorithm, crossed):
            why = f"{knob} applies to {', '.join(KNOB_ALGORITHMS[knob])} only, not to {algorithm}"
            if mode == "one_at_a_time":
                ref = grid[knob][0]
                planned = "only the reference point is planned" + (
                    f", with {knob} null"
                    if ref is None
                    else f", without {knob} (the base's value; its row shows the reference {_show(ref)})"
                )
            elif any(v is None for v in grid[knob]):
                planned = f"only the points with {knob} null are planned"
            else:
                planned = f"no point of {algorithm} is planned"
            out.append({"algorithm": algorithm, "knob": knob, "reason": f"{why}: {planned}"})
    return out


def omitted_paths(point: dict[str, Any]) -> list[str]:
    """The axes of a planned point whose value its spec does not get: a knob that does not
    apply to the point's algorithm, at a value other than None (one_at_a_time's reference)."""
    if ALGORITHM_AXIS not in point:
        return []
    return [
        k
        for k, v in point.items()
        if k != ALGORITHM_AXIS and v is not None and not knob_applies(k, point[ALGORITHM_AXIS])
    ]


# -- checks on the request ----------------------------------------------------------------------
def check_axes(grid: dict[str, list[Any]], axes: list[str] | None) -> list[str]:
    """The axes in order (`axes` if given, else the grid's key order), each a JobSpec path whose
    values are all different. Raises Invalid naming `grid.<path>`."""
    if axes is not None and (sorted(axes) != sorted(grid) or len(set(axes)) != len(axes)):
        raise field_error("axes", f"must list each grid path once (grid has: {', '.join(grid) or 'none'})")
    order = list(axes if axes is not None else grid)
    for path in order:
        problem = FORBIDDEN_AXES.get(path) or path_problem(path)
        if problem:
            raise field_error(f"grid.{path}", problem)
        seen: set[str] = set()
        for value in grid[path]:
            key = value_key(value)
            if key in seen:
                raise field_error(f"grid.{path}", f"value {_show(value)} is listed twice")
            seen.add(key)
    return order


def check_reference_only(
    grid: dict[str, list[Any]], axes: list[str], mode: Mode, reference_only: Sequence[Any]
) -> None:
    """Each name an algorithm of the grid's algorithm axis, in one_at_a_time mode. Raises Invalid
    naming `reference_only`."""
    if not reference_only:
        return
    if mode != "one_at_a_time":
        raise field_error("reference_only", "applies to mode one_at_a_time only (a grid has no reference point)")
    listed = grid.get(ALGORITHM_AXIS) if ALGORITHM_AXIS in axes else None
    for algorithm in reference_only:
        if listed is None or not _is_reference_only(algorithm, listed):
            raise field_error(
                "reference_only",
                f"{_show(algorithm)} is not a value of the grid's algorithm axis ({_show(listed or [])})",
            )
    if len({value_key(a) for a in reference_only}) != len(reference_only):
        raise field_error("reference_only", "lists an algorithm twice")


def check_crossed(grid: dict[str, list[Any]], axes: list[str], mode: Mode, crossed: Sequence[str]) -> None:
    """Each a grid axis other than algorithm (always crossed), in one_at_a_time mode. Raises
    Invalid naming `crossed`."""
    if not crossed:
        return
    if mode != "one_at_a_time":
        raise field_error("crossed", "applies to mode one_at_a_time only (a grid crosses every axis)")
    for axis in crossed:
        if axis == ALGORITHM_AXIS:
            raise field_error("crossed", "the algorithm axis is always crossed: leave it out")
        if axis not in axes:
            raise field_error("crossed", f"{axis} is not an axis of the grid ({', '.join(axes) or 'none'})")
    if len(set(crossed)) != len(crossed):
        raise field_error("crossed", "lists an axis twice")


def _is_reference_only(algorithm: Any, reference_only: Sequence[Any]) -> bool:
    return value_key(algorithm) in {value_key(a) for a in reference_only}


def check_seeds(seeds: list[int]) -> None:
    if len(set(seeds)) != len(seeds):
        dup = next(s for s in seeds if seeds.count(s) > 1)
        raise field_error("seeds", f"seed {dup} is listed twice")


def check_baseline_training(overrides: dict[str, Any] | None) -> None:
    """Each key a field of the training section (values are checked with the planned baseline
    specs). Raises Invalid naming `baseline_training.<key>`."""
    known = TrainingSpec.model_fields
    for key in overrides or {}:
        problem = FORBIDDEN_BASELINE_TRAINING.get(key)
        if key not in known:
            problem = f"the training section has no field {key!r} (it has: {', '.join(known)})"
        if problem:
            raise field_error(f"baseline_training.{key}", problem)


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
def points(
    grid: dict[str, list[Any]],
    axes: list[str],
    mode: Mode = "grid",
    reference_only: Sequence[Any] = (),
    crossed: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The points in axis order, each with a value for every axis. grid: the cartesian product
    (the last axis varies fastest). one_at_a_time: the algorithm axis crossed with the knob
    settings: the reference (every knob at its first value) first, then each knob's other
    values in turn (the algorithm varies outside the knobs when it is listed before them).
    The `crossed` axes are crossed with the knob settings as the algorithm axis is.
    Leaves out the points of knobs that do not apply to their algorithm, and every point but the
    reference of the algorithms in `reference_only` (module docstring)."""
    if mode == "grid":
        out = [dict(zip(axes, values)) for values in itertools.product(*(grid[a] for a in axes))]
        if ALGORITHM_AXIS not in axes:
            return out
        skip = {value_key(a): _inapplicable(grid, axes, a) for a in grid[ALGORITHM_AXIS]}
        return [p for p in out if all(p[k] is None for k in skip[value_key(p[ALGORITHM_AXIS])])]
    knobs = knob_axes(axes, crossed)
    ref = reference(grid, axes, crossed)
    # (the knob away from its reference, or None at the reference; the setting)
    settings = [(None, dict(ref))] + [(k, {**ref, k: v}) for k in knobs for v in grid[k][1:]]
    outer_axes = [a for a in axes if a not in knobs]  # the algorithm and the crossed axes
    if not outer_axes:
        return [{a: s[a] for a in axes} for _, s in settings]
    combos = [dict(zip(outer_axes, values)) for values in itertools.product(*(grid[a] for a in outer_axes))]
    outer_first = not knobs or axes.index(outer_axes[0]) < axes.index(knobs[0])
    pairs = (
        itertools.product(combos, settings) if outer_first else ((c, s) for s, c in itertools.product(settings, combos))
    )

    def planned(combo: dict[str, Any], knob: str | None) -> bool:
        if knob is None or ALGORITHM_AXIS not in combo:
            return True
        algorithm = combo[ALGORITHM_AXIS]
        return knob_applies(knob, algorithm) and not _is_reference_only(algorithm, reference_only)

    return [{ax: {**c, **s}[ax] for ax in axes} for c, (knob, s) in pairs if planned(c, knob)]


def knob_axes(axes: list[str], crossed: Sequence[str] = ()) -> list[str]:
    """The axes other than algorithm and the crossed ones: in one_at_a_time mode, each is
    varied alone."""
    return [a for a in axes if a != ALGORITHM_AXIS and a not in crossed]


def reference(grid: dict[str, list[Any]], axes: list[str], crossed: Sequence[str] = ()) -> dict[str, Any]:
    """The reference point of one_at_a_time mode: each knob's first value."""
    return {a: grid[a][0] for a in knob_axes(axes, crossed)}


def knobs_of(
    point: dict[str, Any], grid: dict[str, list[Any]], axes: list[str], crossed: Sequence[str] = ()
) -> list[str]:
    """one_at_a_time: the knobs whose curve the point lies on (all of them at the reference
    point; otherwise the one knob away from its reference value)."""
    ref = reference(grid, axes, crossed)
    off = [k for k in ref if value_key(point.get(k)) != value_key(ref[k])]
    if not off:
        return list(ref)
    return off if len(off) == 1 else []  # [] : not a point of this mode


def baseline_axes(axes: list[str]) -> list[str]:
    return [a for a in axes if applies_to_baseline(a)]


def count_points(
    grid: dict[str, list[Any]],
    axes: list[str],
    mode: Mode = "grid",
    reference_only: Sequence[Any] = (),
    crossed: Sequence[str] = (),
) -> int:
    """len(points(grid, axes, mode, reference_only, crossed)), from the sizes alone (and the
    knobs that do not apply)."""
    knobs = knob_axes(axes, crossed)
    algorithms = grid[ALGORITHM_AXIS] if ALGORITHM_AXIS in axes else [None]
    total = 0
    for algorithm in algorithms:
        skip = _inapplicable(grid, axes, algorithm, crossed) if ALGORITHM_AXIS in axes else []
        if mode == "grid":  # a knob that does not apply: its None value only (values are unique)
            total += math.prod(sum(v is None for v in grid[k]) if k in skip else len(grid[k]) for k in knobs)
        elif _is_reference_only(algorithm, reference_only):
            total += 1
        else:
            total += 1 + sum(len(grid[k]) - 1 for k in knobs if k not in skip)
    return total * math.prod(len(grid[c]) for c in crossed if c in axes)


def count_jobs(
    grid: dict[str, list[Any]],
    axes: list[str],
    n_seeds: int,
    baseline: bool,
    mode: Mode = "grid",
    reference_only: Sequence[Any] = (),
    crossed: Sequence[str] = (),
) -> tuple[int, int]:
    """(grid jobs, baseline jobs), from the sizes alone."""
    b_axes = baseline_axes(axes)
    n_baselines = count_points(grid, b_axes, mode, crossed=crossed) if baseline else 0
    return count_points(grid, axes, mode, reference_only, crossed) * n_seeds, n_baselines * n_seeds


def make_digital(spec: dict[str, Any], training_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A spec made digital: algorithm fp, no device, default analog options. The training
    section of an analog spec is cttv2_engine.presets.digital_baseline_training's (the base's
    digital lr or the fp recipe's lr, twice the epochs); an fp spec keeps its own lr. Then
    training_overrides (SweepCreate.baseline_training) are set over it."""
    out = copy.deepcopy(spec)
    training = out.get("training") or {}
    if out.get("algorithm", JobSpec.model_fields["algorithm"].default) != BASELINE_ALGORITHM:
        training = digital_baseline_training(training)
    else:
        training = {**training, "digital_lr": None}
    out["training"] = {**training, **copy.deepcopy(training_overrides or {})}
    out["algorithm"] = BASELINE_ALGORITHM
    out["device"] = None
    out.pop("algorithm_options", None)
    return out


def plan(
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    axes: list[str],
    seeds: list[int],
    baseline: bool,
    label: str,
    *,
    mode: Mode = "grid",
    baseline_training: dict[str, Any] | None = None,
    reference_only: Sequence[Any] = (),
    crossed: Sequence[str] = (),
) -> list[PlannedJob]:
    """Every job of the sweep, seed by seed (each seed's baselines first), so that a partly done
    sweep already has one result at every point."""
    grid_points = points(grid, axes, mode, reference_only, crossed)
    b_axes = baseline_axes(axes)
    b_points = points(grid, b_axes, mode, crossed=crossed) if baseline else []
    jobs: list[PlannedJob] = []
    for seed in seeds:
        for point in b_points:
            # Made digital after the values are applied: a training.digital_lr axis becomes
            # the baseline's lr (unless baseline_training sets it).
            name = f"{label}: baseline {BASELINE_ALGORITHM}{_label(point)}"
            spec = make_digital(_apply(base, point, seed, name), baseline_training)
            jobs.append(PlannedJob(spec, point, seed, True))
        for point in grid_points:
            omit = omitted_paths(point)
            shown = {k: v for k, v in point.items() if k not in omit}  # the name says what was set
            spec = _apply(base, point, seed, f"{label}:{_label(shown)}", omit)
            jobs.append(PlannedJob(spec, point, seed, False))
    return jobs


def _apply(
    base: dict[str, Any], point: dict[str, Any], seed: int, name: str, omit: list[str] | None = None
) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    for path, value in point.items():
        if path not in (omit or []):
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
