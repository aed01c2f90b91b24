"""A study's tables (markdown) from its per-job curves (jobs.jsonl, written by study_cpu.py).

    .venv/bin/python scripts/study_tables.py docs/study/jobs.jsonl > docs/study/tables.md

Every accuracy is the mean +- sample std over seeds of the final test accuracy (the analog model,
read with its noise, on all 224 held-out images); "last 3" is the mean over seeds of each run's
mean of its last three evaluations, "spread" the largest (max - min) of a run's last three;
"perfect read" the same trained weights read without noise or converters (where recorded). The
knobs are the sweep's (its reference point's keys), the algorithms those that ran.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

# The order of the algorithms in the tables; any other that ran comes after them.
ALGORITHM_ORDER = ("c-ttv2", "ttv2", "sgd")


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.1f} (n=1)"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def _key(value: Any) -> str:
    return json.dumps(value)


def tables(jobs: list[dict[str, Any]]) -> str:
    done = [j for j in jobs if j.get("curve")]
    digital = [j["curve"][-1] for j in done if j["is_baseline"]]
    d_mean = statistics.fmean(digital) if digital else None
    reference = dict(done[0]["reference"]) if done and done[0].get("reference") else {}
    knobs = list(reference)
    ran = {j["algorithm"] for j in done if not j["is_baseline"]}
    algorithms = [a for a in ALGORITHM_ORDER if a in ran] + sorted(ran - set(ALGORITHM_ORDER))

    def gap(runs: list[dict[str, Any]]) -> str:
        finals = [r["curve"][-1] for r in runs]
        return "-" if not finals or d_mean is None else f"{100 * (statistics.fmean(finals) - d_mean):+.1f}"

    def at(algorithm: str, point: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            j
            for j in done
            if not j["is_baseline"]
            and j["algorithm"] == algorithm
            and all(_key(j["point"].get(k)) == _key(v) for k, v in point.items())
        ]

    out = [
        "## At the reference device",
        "",
        "| algorithm | final accuracy (%) | last 3 (%) | largest last-3 spread (points) | "
        "minus digital (points) | seeds | perfect read (%) |",
        "|---|---|---|---|---|---|---|",
    ]
    digital_last3 = [statistics.fmean(j["curve"][-3:]) for j in done if j["is_baseline"]]
    out.append(
        f"| digital (fp, baseline) | {_pm(digital)} | {_pm(digital_last3)} | "
        f"{_spread([j for j in done if j['is_baseline']])} | 0 | {len(digital)} | - |"
    )
    for algorithm in algorithms:
        runs = at(algorithm, reference)
        finals = [r["curve"][-1] for r in runs]
        perfect = [r["perfect_read"] for r in runs if r.get("perfect_read") is not None]
        out.append(
            f"| {algorithm} | {_pm(finals)} | {_pm([statistics.fmean(r['curve'][-3:]) for r in runs])} | "
            f"{_spread(runs)} | {gap(runs)} | {len(runs)} | {_pm(perfect)} |"
        )
    changes = []
    for knob in knobs:
        values: list[Any] = []
        for j in done:
            v = j["point"].get(knob)
            if not j["is_baseline"] and v is not None and _key(v) not in map(_key, values):
                values.append(v)
        values.sort()
        out += [
            "",
            f"## {knob} (others at the reference)",
            "",
            "| value | " + " | ".join(algorithms) + " | c-ttv2 minus digital |",
            "|---|" + "---|" * (len(algorithms) + 1),
        ]
        for v in values:
            point = {**reference, knob: v}
            cells = [_pm([r["curve"][-1] for r in at(a, point)]) for a in algorithms]
            out.append(f"| {v} | " + " | ".join(cells) + f" | {gap(at('c-ttv2', point))} |")
        far = max(values, key=lambda v: abs(float(v) - float(reference[knob]))) if values else None
        changes.append(
            (
                knob,
                reference[knob],
                far,
                [_change(at(a, reference), at(a, {**reference, knob: far})) for a in algorithms],
            )
        )
    out += [
        "",
        "## Each knob's effect: the change from the reference to the knob's farthest value (points)",
        "",
        "| knob | reference | farthest | " + " | ".join(algorithms) + " |",
        "|---|---|---|" + "---|" * len(algorithms),
    ]
    for knob, ref, far, cells in changes:
        out.append(f"| {knob} | {ref} | {far} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def _change(at_reference: list[dict[str, Any]], at_far: list[dict[str, Any]]) -> str:
    if not at_reference or not at_far or at_far == at_reference:
        return "-"
    ref = statistics.fmean(r["curve"][-1] for r in at_reference)
    return f"{100 * (statistics.fmean(r['curve'][-1] for r in at_far) - ref):+.1f}"


def _spread(runs: list[dict[str, Any]]) -> str:
    spreads = [100 * (max(r["curve"][-3:]) - min(r["curve"][-3:])) for r in runs if len(r["curve"]) >= 3]
    return f"{max(spreads):.1f}" if spreads else "-"


def main() -> None:
    sys.stdout.write(tables(load(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
