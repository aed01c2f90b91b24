"""The sweep's figure, drawn from its report (matplotlib's object API with Agg: no pyplot state,
so concurrent requests do not share a figure).

Which figure depends on the swept axes other than `algorithm` (algorithm is always drawn as
one line, or one panel, per value):
- one axis ("line"), or a one_at_a_time sweep of two or more knobs ("knobs", one panel per
  knob side by side, sharing the y axis): test accuracy in % (1 - test error, mean over the
  finished seeds) against the knob's values, one line per algorithm with markers and a +-1 std
  band over seeds (none below 2 seeds); points without a finished seed are left out. The
  digital baseline is a dashed line in a +-std band, horizontal across the panel (or following
  the axis when that axis changes the task, e.g. data.num_classes). One legend, below the
  panels. The data of each panel comes from knob_panels (pure, no matplotlib). An algorithm a
  knob does not apply to (the report's not_applicable, e.g. sgd on device.transfer_noise) was
  not run along that knob: on its panel it gets no line and no band, only its one planned point
  (in one_at_a_time mode the reference point, which ran without the knob) as an open marker.
- two axes in grid mode: a heatmap of the mean error (first axis down, second across), one panel per
  algorithm on a shared colour scale, each cell annotated with its mean (and the difference to
  the baseline when there is one).
- none, or more than two: a bar per grid point with std error bars, the baseline dashed.
The title names the sweep and says when it is partial. The size in pixels depends only on the
kind of figure and the number of panels (figure_size).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from service.sweeps.plan import value_key

DPI = 100
SINGLE_SIZE_IN = (9.6, 6.0)  # line and bar figures: 960 x 600 px
HEATMAP_PANEL_W_IN, HEATMAP_EXTRA_W_IN, HEATMAP_H_IN = 4.8, 1.6, 5.6
KNOB_PANEL_W_IN, KNOB_EXTRA_W_IN, KNOB_H_IN = 4.6, 0.6, 5.4
KNOB_PANELS_PER_ROW = 4  # the paper's study has 12 knobs: 3 rows of 4
KNOB_ROW_H_IN = 4.2  # each further row
BASELINE_LABEL = "digital baseline (fp)"
LINE_BASELINE_LABEL = "digital (fp)"
ACCURACY_LABEL = "test accuracy (%), mean ± std over seeds"
NOT_APPLICABLE_LABEL = "reference point only (knob does not apply, or reference_only)"


def plot_axes(report: dict[str, Any]) -> list[str]:
    """The knobs: the axes other than algorithm and the crossed ones (each crossed value is a
    facet of its own)."""
    crossed = report.get("crossed") or []
    return [a for a in report["axes"] if a != "algorithm" and a not in crossed]


def facets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report cut by the values of its crossed axes (a model, a data subset): one report
    each, with its rows and baselines, titled by those values; [report] without crossed axes."""
    crossed = [a for a in report.get("crossed") or [] if a != "algorithm"]
    if not crossed:
        return [report]
    out = []
    for values in _unique((tuple(r["point"][a] for a in crossed) for r in report["rows"]), key=value_key):
        where = dict(zip(crossed, values))

        def mine(point: dict[str, Any], where=where) -> bool:
            return all(a not in point or value_key(point[a]) == value_key(v) for a, v in where.items())

        title = ", ".join(f"{a}={_show(v)}" for a, v in where.items())
        out.append(
            {
                **report,
                "rows": [r for r in report["rows"] if mine(r["point"])],
                "baselines": [b for b in report["baselines"] if mine(b["point"])],
                "facet": title,
            }
        )
    return out


def figure_kind(report: dict[str, Any]) -> str:
    n = len(plot_axes(report))
    if report.get("mode") == "one_at_a_time" and n >= 2:
        return "knobs"
    return {1: "line", 2: "heatmap"}.get(n, "bars")


def algorithms(report: dict[str, Any], base_algorithm: str) -> list[str]:
    if "algorithm" not in report["axes"]:
        return [base_algorithm]
    return _unique(row["point"]["algorithm"] for row in report["rows"])


def figure_size(report: dict[str, Any], base_algorithm: str) -> tuple[int, int]:
    """The PNG's (width, height) in pixels."""
    if figure_kind(report) == "heatmap":
        panels = len(algorithms(report, base_algorithm))
        w, h = HEATMAP_PANEL_W_IN * panels + HEATMAP_EXTRA_W_IN, HEATMAP_H_IN
    elif figure_kind(report) == "knobs":
        cols, rows = knob_grid(len(plot_axes(report)))
        rows *= len(facets(report))
        w, h = KNOB_PANEL_W_IN * cols + KNOB_EXTRA_W_IN, KNOB_H_IN + KNOB_ROW_H_IN * (rows - 1)
    else:
        w, h = SINGLE_SIZE_IN
    return round(w * DPI), round(h * DPI)


def knob_grid(n_panels: int) -> tuple[int, int]:
    """(columns, rows) of the knob figure's panels."""
    cols = min(n_panels, KNOB_PANELS_PER_ROW)
    return cols, -(-n_panels // cols)


def render_png(report: dict[str, Any], *, base_algorithm: str) -> bytes:
    from matplotlib.figure import Figure  # the API imports matplotlib only when drawing

    w, h = figure_size(report, base_algorithm)
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI, layout="constrained")
    algos = algorithms(report, base_algorithm)
    kind = figure_kind(report)
    if kind in ("line", "knobs"):
        parts = facets(report)
        subfigs = fig.subfigures(len(parts), 1, squeeze=False)[:, 0] if len(parts) > 1 else [fig]
        for sub, part in zip(subfigs, parts):
            _knob_figure(sub, knob_panels(part, base_algorithm))
            if "facet" in part:
                sub.suptitle(part["facet"], fontsize="medium")
    elif kind == "heatmap":
        _heatmaps(fig, report, algos, base_algorithm)
    else:
        _bars(fig, report, base_algorithm)
    fig.suptitle(_title(report))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


# -- the knob figure: its data ---------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """One algorithm's line in a panel: only the points with a finished seed, in x order."""

    algorithm: str
    x: list[float]
    accuracy: list[float]  # percent: 100 * (1 - mean test error)
    std: list[float | None]  # percent; None where fewer than 2 seeds finished
    # False when the panel's knob does not apply to the algorithm (report["not_applicable"]): x
    # then holds at most its reference point, drawn as a lone open marker, never a line or band.
    applies: bool = True

    @property
    def band(self) -> tuple[list[float], list[float]] | None:
        """(low, high) = accuracy -+ std; a point without a std pinches the band; None when no
        point has a std, or when the knob does not apply (nothing was measured along it)."""
        if not self.applies or all(s is None for s in self.std):
            return None
        return (
            [a - (s or 0.0) for a, s in zip(self.accuracy, self.std)],
            [a + (s or 0.0) for a, s in zip(self.accuracy, self.std)],
        )


@dataclass(frozen=True)
class BaselineBand:
    """The digital baseline in a panel, in percent: horizontal (x None, one mean) when the
    panel's knob does not change the task, else one value per x."""

    x: list[float] | None
    accuracy: list[float]
    std: list[float | None]

    @property
    def horizontal(self) -> bool:
        return self.x is None

    @property
    def band(self) -> tuple[list[float], list[float]]:
        return (
            [a - (s or 0.0) for a, s in zip(self.accuracy, self.std)],
            [a + (s or 0.0) for a, s in zip(self.accuracy, self.std)],
        )


@dataclass(frozen=True)
class Panel:
    knob: str  # the axis path: the x label
    values: list[Any]  # the knob's values in the grid's order (the first is the reference)
    positions: list[float]  # their x: the value when all are numbers, else the index
    numeric: bool
    series: list[Series]  # one per algorithm
    baseline: BaselineBand | None

    @property
    def empty(self) -> bool:
        return not any(s.x for s in self.series)


def knob_panels(report: dict[str, Any], base_algorithm: str) -> list[Panel]:
    """One panel per knob (axis other than algorithm): a one-axis sweep has one; in
    one_at_a_time mode each knob's panel holds the rows whose `knobs` name it (its values with
    the other knobs at their reference, the reference point included). An algorithm the knob
    does not apply to gets a Series with applies=False holding only its reference point (one
    planned point at most in grid mode)."""
    one_at_a_time = report.get("mode") == "one_at_a_time"
    algos = algorithms(report, base_algorithm)
    skipped = {(value_key(n["algorithm"]), n["knob"]) for n in report.get("not_applicable") or []}
    panels = []
    for knob in plot_axes(report):
        rows = [r for r in report["rows"] if not one_at_a_time or knob in (r.get("knobs") or [])]
        values = _unique((r["point"][knob] for r in rows), key=value_key)
        numeric = all(_is_number(v) for v in values)
        positions = [float(v) for v in values] if numeric else [float(i) for i in range(len(values))]
        series = []
        for algo in algos:
            applies = (value_key(algo), knob) not in skipped
            found = [
                (x, _find(rows, {knob: v, "algorithm": algo}, base_algorithm))
                for x, v in zip(positions, values)
                if applies or not one_at_a_time or value_key(v) == value_key(report["reference"][knob])
            ]
            done = sorted(((x, r) for x, r in found if r and r["mean_test_error"] is not None), key=lambda xr: xr[0])
            series.append(
                Series(
                    algo,
                    [x for x, _ in done],
                    [_percent_accuracy(r["mean_test_error"]) for _, r in done],
                    [_percent(r["std_test_error"]) for _, r in done],
                    applies,
                )
            )
        panels.append(
            Panel(knob, values, positions, numeric, series, _baseline_band(report, rows, knob, values, positions))
        )
    return panels


def _baseline_band(report, rows, knob: str, values: list, positions: list[float]) -> BaselineBand | None:
    baselines = report["baselines"]
    if not baselines:
        return None
    b_axes = list(baselines[0]["point"])
    at: list[tuple[float, dict[str, Any]]] = []  # the baseline each x is compared with
    for x, v in zip(positions, values):
        row = next(r for r in rows if value_key(r["point"][knob]) == value_key(v))
        match = next(
            (b for b in baselines if all(value_key(b["point"][a]) == value_key(row["point"].get(a)) for a in b_axes)),
            None,
        )
        if match is not None and match["mean_test_error"] is not None:
            at.append((x, match))
    if not at:
        return None
    if len({value_key(b["point"]) for _, b in at}) == 1:  # one baseline across the panel
        b = at[0][1]
        return BaselineBand(None, [_percent_accuracy(b["mean_test_error"])], [_percent(b["std_test_error"])])
    at.sort(key=lambda xb: xb[0])
    return BaselineBand(
        [x for x, _ in at],
        [_percent_accuracy(b["mean_test_error"]) for _, b in at],
        [_percent(b["std_test_error"]) for _, b in at],
    )


def _percent_accuracy(error: float) -> float:
    return 100.0 * (1.0 - error)


def _percent(std: float | None) -> float | None:
    return None if std is None else 100.0 * std


# -- the figures --------------------------------------------------------------------------------
def _knob_figure(fig, panels: list[Panel]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    cols, rows = knob_grid(len(panels))
    grid = fig.subplots(rows, cols, sharey=True, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels) :]:  # the last row's empty places
        ax.set_visible(False)
    algos = [s.algorithm for s in panels[0].series]
    color_of = dict(zip(algos, _colors(len(algos))))
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        if panel.baseline is not None:
            b = panel.baseline
            low, high = b.band
            if b.horizontal:
                ax.axhspan(low[0], high[0], color="black", alpha=0.12, linewidth=0)
                ax.axhline(b.accuracy[0], linestyle="--", color="black", linewidth=1.5)
            else:
                ax.fill_between(b.x, low, high, color="black", alpha=0.12, linewidth=0)
                ax.plot(b.x, b.accuracy, "--", color="black", linewidth=1.5)
        for s in panel.series:
            color = color_of[s.algorithm]
            if not s.applies:  # not run along this knob: its lone point, open, no line
                ax.plot(
                    s.x,
                    s.accuracy,
                    linestyle="none",
                    marker="o",
                    fillstyle="none",
                    markersize=9,
                    markeredgewidth=2,
                    color=color,
                )
                continue
            if s.band is not None and len(s.x) >= 2:
                ax.fill_between(s.x, *s.band, color=color, alpha=0.2, linewidth=0)
            elif s.band is not None:  # a single point: its std as an error bar
                ax.errorbar(s.x, s.accuracy, yerr=[v or 0.0 for v in s.std], color=color, capsize=4)
            ax.plot(s.x, s.accuracy, marker="o", linewidth=2, markersize=6, color=color)
        if not panel.numeric or len(panel.values) <= 12:  # the grid's own values as ticks
            ax.set_xticks(
                panel.positions, [_show(v) for v in panel.values], rotation=0 if len(panel.values) <= 6 else 45
            )
        if panel.positions:
            lo, hi = min(panel.positions), max(panel.positions)
            pad = 0.05 * (hi - lo) if panel.numeric and hi > lo else 0.5
            ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel(panel.knob)
        if i % cols == 0:
            ax.set_ylabel(ACCURACY_LABEL)
        ax.grid(True, alpha=0.3)
        if panel.empty:
            ax.text(
                0.5,
                0.5,
                "no finished jobs yet",
                transform=ax.transAxes,
                ha="center",
                va="center",
                fontsize=14,
                color="grey",
            )
    handles: list[Any] = [Line2D([], [], color=color_of[a], marker="o", linewidth=2, label=a) for a in algos]
    if any(p.baseline is not None for p in panels):
        handles.append(
            (
                Patch(color="black", alpha=0.12, linewidth=0),
                Line2D([], [], linestyle="--", color="black", linewidth=1.5),
            )
        )
    labels = algos + [LINE_BASELINE_LABEL] * (len(handles) - len(algos))
    if any(not s.applies and s.x for p in panels for s in p.series):
        handles.append(Line2D([], [], color="grey", marker="o", fillstyle="none", markeredgewidth=2, linestyle="none"))
        labels.append(NOT_APPLICABLE_LABEL)
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), frameon=False)


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
                    ax.text(
                        j,
                        i,
                        _cell_text(row),
                        ha="center",
                        va="center",
                        fontsize=font,
                        color=_text_color(grid[i][j], vmin, vmax),
                    )
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
    ax.bar(
        xs,
        [_num(r["mean_test_error"], 0.0) for r in rows],
        yerr=[_num(r["std_test_error"], 0.0) for r in rows],
        capsize=3,
        color=[color_of[r["point"].get("algorithm", base_algorithm)] for r in rows],
    )
    if report["baseline"]:
        _baseline_hline(ax, report["baseline"])
    else:  # a baseline per group of points: a dashed mark over each bar
        marks = [
            (x, r["baseline_mean_test_error"]) for x, r in zip(xs, rows) if r["baseline_mean_test_error"] is not None
        ]
        if marks:
            ax.hlines(
                [y for _, y in marks],
                [x - 0.45 for x, _ in marks],
                [x + 0.45 for x, _ in marks],
                colors="black",
                linestyles="--",
                label=BASELINE_LABEL,
            )
    few = len(rows) <= 8  # few bars: one line per axis, upright; many: one rotated line
    labels = [
        ("\n" if few else ", ").join(
            f"{a.rsplit('.', 1)[-1]}={_show(v)}" for a, v in r["point"].items() if a != "algorithm"
        )
        or "base"
        for r in rows
    ]
    step = max(1, math.ceil(len(rows) / 40))  # at most 40 tick labels
    ax.set_xticks(
        xs[::step],
        labels[::step],
        rotation=0 if few else 60,
        ha="center" if few else "right",
        fontsize=9 if few or len(rows) <= 16 else 7,
    )
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
    set_ticks(
        positions,
        [_show(v) for v in values[::step]],
        rotation=90 if rotate else 0,
        fontsize=7 if len(positions) > 12 else 10,
    )


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


def _find(rows: list[dict[str, Any]], where: dict[str, Any], base_algorithm: str) -> dict | None:
    for row in rows:
        point = {"algorithm": base_algorithm, **row["point"]}
        if all(value_key(point.get(k)) == value_key(v) for k, v in where.items()):
            return row
    return None


def _note_if_empty(ax, report: dict[str, Any]) -> None:
    if all(r["mean_test_error"] is None for r in report["rows"]):
        ax.text(
            0.5,
            0.5,
            "no finished jobs yet",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=14,
            color="grey",
        )


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

    palette = colormaps["tab10"].colors  # type: ignore[attr-defined]  # a ListedColormap
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
