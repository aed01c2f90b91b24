"""The study's tables (markdown) from its per-job curves (jobs.jsonl, written by study_cpu.py).

    .venv/bin/python scripts/study_tables.py docs/study/jobs.jsonl > docs/study/tables.md

Every accuracy is the mean +- sample std over seeds of the final test accuracy (the analog model,
read with its noise, on all 224 held-out images); "last 3" is the mean over seeds of each run's
mean of its last three evaluations, "spread" the largest (max - min) of a run's last three.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

KNOBS = ("device.transfer_noise", "device.sp_skew", "device.sp_variability")
ALGORITHMS = ("c-ttv2", "ttv2", "sgd")


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
    reference = {k: done[0]["reference"][k] for k in KNOBS} if done and done[0].get("reference") else {}

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
        "minus digital (points) | seeds |",
        "|---|---|---|---|---|---|",
    ]
    digital_last3 = [statistics.fmean(j["curve"][-3:]) for j in done if j["is_baseline"]]
    out.append(
        f"| digital (fp, baseline) | {_pm(digital)} | {_pm(digital_last3)} | "
        f"{_spread([j for j in done if j['is_baseline']])} | 0 | {len(digital)} |"
    )
    for algorithm in ALGORITHMS:
        runs = at(algorithm, reference)
        finals = [r["curve"][-1] for r in runs]
        gap = "-" if not finals or d_mean is None else f"{100 * (statistics.fmean(finals) - d_mean):+.1f}"
        out.append(
            f"| {algorithm} | {_pm(finals)} | {_pm([statistics.fmean(r['curve'][-3:]) for r in runs])} | "
            f"{_spread(runs)} | {gap} | {len(runs)} |"
        )
    for knob in KNOBS:
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
            "| value | " + " | ".join(ALGORITHMS) + " | c-ttv2 minus digital |",
            "|---|" + "---|" * (len(ALGORITHMS) + 1),
        ]
        for v in values:
            point = {**reference, knob: v}
            cells = [_pm([r["curve"][-1] for r in at(a, point)]) for a in ALGORITHMS]
            c = [r["curve"][-1] for r in at("c-ttv2", point)]
            gap = "-" if not c or d_mean is None else f"{100 * (statistics.fmean(c) - d_mean):+.1f}"
            out.append(f"| {v} | " + " | ".join(cells) + f" | {gap} |")
    return "\n".join(out) + "\n"


def _spread(runs: list[dict[str, Any]]) -> str:
    spreads = [100 * (max(r["curve"][-3:]) - min(r["curve"][-3:])) for r in runs if len(r["curve"]) >= 3]
    return f"{max(spreads):.1f}" if spreads else "-"


def main() -> None:
    sys.stdout.write(tables(load(Path(sys.argv[1]))))


if __name__ == "__main__":
    main()
