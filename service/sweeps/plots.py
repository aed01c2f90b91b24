"""The sweep's figure, drawn from its report (matplotlib's object API with Agg: no pyplot state,
so concurrent requests do not share a figure).

Which figure depends on the swept axes other than `algorithm` (algorithm is always drawn as
one line, or one panel, per value):
- one axis: error against the axis value, one line per algorithm with std error bars; the
  digital baseline as a dashed line with a +-std band (horizontal, or following the axis when
  that axis changes the task, e.g. data.num_classes).
- two axes: a heatmap of the mean error (first axis down, second across), one panel per
  algorithm on a shared colour scale, each cell annotated with its mean (and the difference to
  the baseline when there is one).
- none, or more than two: a bar per grid point with std error bars, the baseline dashed.
The title names the sweep and says when it is partial. The size in pixels depends only on the
kind of figure and the number of panels (figure_size).
"""

from __future__ import annotations

import io
import math
from typing import Any

from service.sweeps.plan import value_key

DPI = 100
SINGLE_SIZE_IN = (9.6, 6.0)  # line and bar figures: 960 x 600 px
HEATMAP_PANEL_W_IN, HEATMAP_EXTRA_W_IN, HEATMAP_H_IN = 4.8, 1.6, 5.6
BASELINE_LABEL = "digital baseline (fp)"


def plot_axes(report: dict[str, Any]) -> list[str]:
    return [a for a in report["axes"] if a != "algorithm"]


def figure_kind(report: dict[str, Any]) -> str:
    return {1: "line", 2: "heatmap"}.get(len(plot_axes(report)), "bars")


def algorithms(report: dict[str, Any], base_algorithm: str) -> list[str]:
    if "algorithm" not in report["axes"]:
        return [base_algorithm]
    return _unique(row["point"]["algorithm"] for row in report["rows"])


def figure_size(report: dict[str, Any], base_algorithm: str) -> tuple[int, int]:
    """The PNG's (width, height) in pixels."""
    if figure_kind(report) == "heatmap":
        panels = len(algorithms(report, base_algorithm))
        w, h = HEATMAP_PANEL_W_IN * panels + HEATMAP_EXTRA_W_IN, HEATMAP_H_IN
    else:
        w, h = SINGLE_SIZE_IN
    return round(w * DPI), round(h * DPI)


def render_png(report: dict[str, Any], *, base_algorithm: str) -> bytes:
    from matplotlib.figure import Figure  # the API imports matplotlib only when drawing

    w, h = figure_size(report, base_algorithm)
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained")
    algos = algorithms(report, base_algorithm)
    kind = figure_kind(report)
    if kind == "line":
        _line(fig, report, algos, base_algorithm)
    elif kind == "heatmap":
        _heatmaps(fig, report, algos, base_algorithm)
    else:
        _bars(fig, report, base_algorithm)
    fig.suptitle(_title(report))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# -- the three figures --------------------------------------------------------------------------
def _line(fig, report, algos: list[str], base_algorithm: str) -> None:
    ax = fig.add_subplot()
    axis = plot_axes(report)[0]
    values = _unique((row["point"][axis] for row in report["rows"]), key=value_key)
    numeric = all(_is_number(v) for v in values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    colors = _colors(len(algos))
    for algo, color in zip(algos, colors):
        means, stds = [], []
        for v in values:
            row = _find(report["rows"], {axis: v, "algorithm": algo}, base_algorithm)
            means.append(_num(row and row["mean_test_error"]))
            stds.append(_num(row and row["std_test_error"], 0.0))
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, linewidth=2, color=color, label=algo)
    baselines = report["baselines"]
    if baselines:
        if axis in baselines[0]["point"]:  # the axis changes the task: a baseline per value
            by = [_num(_baseline_at(baselines, axis, v, "mean_test_error")) for v in values]
            bs = [_num(_baseline_at(baselines, axis, v, "std_test_error"), 0.0) for v in values]
            ax.plot(xs, by, "--", color="black", linewidth=1.5, label=BASELINE_LABEL)
            ax.fill_between(xs, [m - s for m, s in zip(by, bs)], [m + s for m, s in zip(by, bs)],
                            color="black", alpha=0.12, linewidth=0)
        else:
            _baseline_hline(ax, baselines[0])
    if not numeric or len(values) <= 12:  # the grid's own values as ticks
        ax.set_xticks(xs, [_show(v) for v in values])
    ax.set_xlabel(axis)
    ax.set_ylabel("final test error (mean ± std over seeds)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")
    _note_if_empty(ax, report)


def _heatmaps(fig, report, algos: list[str], base_algorithm: str) -> None:
    from matplotlib import colormaps

    down, across = plot_axes(report)
    rows_v = _unique((r["point"][down] for r in report["rows"]), key=value_key)
    cols_v = _unique((r["point"][across] for r in report["rows"]), key=value_key)
    cmap = colormaps["viridis_r"].with_extremes(bad="#d9d9d9")  # low error = bright
    finite = [r["mean_test_error"] for r in report["rows"] if r["mean_test_error"] is not None]
    vmin, vmax = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if vmax - vmin < 1e-9:
        vmin, vmax = vmin - 0.005, vmax + 0.005
    axes = fig.subplots(1, len(algos), squeeze=False)[0]
    cells = len(rows_v) * len(cols_v)
    annotate, font = cells <= 144, 10 if cells <= 16 else 8
    image = None
    for ax, algo in zip(axes, algos):
        grid = [[math.nan] * len(cols_v) for _ in rows_v]
        for i, rv in enumerate(rows_v):
            for j, cv in enumerate(cols_v):
                row = _find(report["rows"], {down: rv, across: cv, "algorithm": algo}, base_algorithm)
                grid[i][j] = _num(row and row["mean_test_error"])
                if annotate:
                    ax.text(j, i, _cell_text(row), ha="center", va="center", fontsize=font,
                            color=_text_color(grid[i][j], vmin, vmax))
        image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        _ticks(ax.set_xticks, cols_v, rotate=len(cols_v) > 6)
        _ticks(ax.set_yticks, rows_v, rotate=False)
        ax.set_xlabel(across)
        ax.set_ylabel(down)
        ax.set_title(algo)
    fig.colorbar(image, ax=list(axes), label="final test error (mean over seeds)", shrink=0.9)
    notes = [] if finite else ["no finished jobs yet"]
    baseline = report["baseline"]
    if baseline and baseline["mean_test_error"] is not None:
        notes.append(f"{BASELINE_LABEL}: {_pm(baseline)}")
    if annotate and report["baselines"]:
        notes.append("cells: mean, Δ vs baseline")
    if notes:
        fig.supxlabel("; ".join(notes), fontsize=9)


def _bars(fig, report, base_algorithm: str) -> None:
    ax = fig.add_subplot()
    rows = report["rows"]
    algos = _unique(r["point"].get("algorithm", base_algorithm) for r in rows)
    color_of = dict(zip(algos, _colors(len(algos))))
    xs = list(range(len(rows)))
    ax.bar(xs, [_num(r["mean_test_error"], 0.0) for r in rows],
           yerr=[_num(r["std_test_error"], 0.0) for r in rows], capsize=3,
           color=[color_of[r["point"].get("algorithm", base_algorithm)] for r in rows])
    if report["baseline"]:
        _baseline_hline(ax, report["baseline"])
    else:  # a baseline per group of points: a dashed mark over each bar
        marks = [(x, r["baseline_mean_test_error"]) for x, r in zip(xs, rows)
                 if r["baseline_mean_test_error"] is not None]
        if marks:
            ax.hlines([y for _, y in marks], [x - 0.45 for x, _ in marks], [x + 0.45 for x, _ in marks],
                      colors="black", linestyles="--", label=BASELINE_LABEL)
    few = len(rows) <= 8  # few bars: one line per axis, upright; many: one rotated line
    labels = [("\n" if few else ", ").join(f"{a.rsplit('.', 1)[-1]}={_show(v)}"
                                           for a, v in r["point"].items() if a != "algorithm")
              or "base" for r in rows]
    step = max(1, math.ceil(len(rows) / 40))  # at most 40 tick labels
    ax.set_xticks(xs[::step], labels[::step], rotation=0 if few else 60,
                  ha="center" if few else "right", fontsize=9 if few or len(rows) <= 16 else 7)
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles = [Patch(color=color_of[a], label=a) for a in algos] + handles
    ax.set_ylabel("final test error (mean ± std over seeds)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=handles, loc="best")
    _note_if_empty(ax, report)


# -- helpers ----------------------------------------------------------------------------------
def _ticks(set_ticks, values: list, rotate: bool) -> None:
    step = max(1, math.ceil(len(values) / 30))  # at most 30 labels per axis
    positions = list(range(len(values)))[::step]
    set_ticks(positions, [_show(v) for v in values[::step]], rotation=90 if rotate else 0,
              fontsize=7 if len(positions) > 12 else 10)


def _title(report: dict[str, Any]) -> str:
    title = report.get("name") or f"sweep {report['sweep_id']}"
    if not report["complete"]:
        title += f" (partial: {report['pending']} of {report['total_jobs']} jobs pending)"
    return title


def _baseline_hline(ax, baseline: dict[str, Any]) -> None:
    mean, std = baseline["mean_test_error"], baseline["std_test_error"] or 0.0
    if mean is None:
        return
    ax.axhline(mean, linestyle="--", color="black", linewidth=1.5, label=f"{BASELINE_LABEL} {_pm(baseline)}")
    if std:
        ax.axhspan(mean - std, mean + std, color="black", alpha=0.12, linewidth=0)


def _baseline_at(baselines: list[dict[str, Any]], axis: str, value: Any, field: str) -> Any:
    for b in baselines:
        if value_key(b["point"].get(axis)) == value_key(value):
            return b[field]
    return None


def _find(rows: list[dict[str, Any]], where: dict[str, Any], base_algorithm: str) -> dict | None:
    for row in rows:
        point = {"algorithm": base_algorithm, **row["point"]}
        if all(value_key(point.get(k)) == value_key(v) for k, v in where.items()):
            return row
    return None


def _note_if_empty(ax, report: dict[str, Any]) -> None:
    if all(r["mean_test_error"] is None for r in report["rows"]):
        ax.text(0.5, 0.5, "no finished jobs yet", transform=ax.transAxes, ha="center",
                va="center", fontsize=14, color="grey")


def _cell_text(row: dict[str, Any] | None) -> str:
    if not row or row["mean_test_error"] is None:
        return "n/a"
    text = f"{row['mean_test_error']:.3f}"
    if row["delta_vs_baseline"] is not None:
        text += f"\nΔ {row['delta_vs_baseline']:+.3f}"
    return text


def _text_color(value: float, vmin: float, vmax: float) -> str:
    if math.isnan(value):
        return "black"
    return "white" if (value - vmin) / (vmax - vmin) > 0.5 else "black"  # dark end of viridis_r


def _pm(stats: dict[str, Any]) -> str:
    text = f"{stats['mean_test_error']:.3f}"
    return text + (f" ± {stats['std_test_error']:.3f}" if stats["std_test_error"] is not None else "")


def _colors(n: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors
    return [palette[i % len(palette)] for i in range(n)]


def _unique(values, key=lambda v: v) -> list:
    seen, out = set(), []
    for v in values:
        k = key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: Any, default: float = math.nan) -> float:
    return float(v) if v is not None and v is not False else default


def _show(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:g}"
    return value_key(v) if isinstance(v, (dict, list)) else str(v)
