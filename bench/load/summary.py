"""A locust run's results from its CSV files: requests, failures, percentiles per row.

    python -m bench.load.summary artifacts/load/light-20261129-101500

Locust rounds its percentiles (to 10 ms above 100 ms, to 100 ms above 1 s).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

PERCENTILES = ("50%", "90%", "95%", "99%")


def is_measurement(kind: str, name: str) -> bool:
    """Rows that time part of a request counted elsewhere: a voice turn's V2V and stage
    timings (the turn is `WS turn`), the load generator's own lateness, a chat stream's
    time to [DONE]."""
    return name == "v2v" or name.startswith(("stage:", "client:")) or kind == "SSE"


@dataclass(frozen=True)
class Row:
    kind: str
    name: str
    requests: int
    failures: int
    percentiles: dict[str, float | None]  # "50%" -> ms (None: no sample)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}".strip()


def _ms(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None  # "N/A"


def read_stats(prefix: Path | str) -> list[Row]:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return [
            Row(
                r["Type"],
                r["Name"],
                int(r["Request Count"]),
                int(r["Failure Count"]),
                {p: _ms(r[p]) for p in PERCENTILES},
            )
            for r in csv.DictReader(f)
        ]


def read_failures(prefix: Path | str) -> list[tuple[str, str, int]]:
    """(row, error, occurrences), most frequent first."""
    with open(f"{prefix}_failures.csv", newline="") as f:
        rows = [
            (f"{r['Method']} {r['Name']}", r["Error"], int(r["Occurrences"]))
            for r in csv.DictReader(f)
        ]
    return sorted(rows, key=lambda r: -r[2])


def table(rows: list[Row]) -> str:
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.0f}"

    lines = [
        "| row | requests | failures | P50 | P90 | P95 | P99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ps = " | ".join(cell(r.percentiles[p]) for p in PERCENTILES)
        lines.append(f"| {r.label} | {r.requests} | {r.failures} | {ps} |")
    return "\n".join(lines)


def summary(prefix: Path | str) -> str:
    rows = read_stats(prefix)
    total = next((r for r in rows if r.name == "Aggregated"), None)
    v2v = next((r for r in rows if r.kind == "WS" and r.name == "v2v"), None)
    counted = [r for r in rows if r.name != "Aggregated" and not is_measurement(r.kind, r.name)]
    out = [table(rows), ""]
    if total is not None:
        requests = sum(r.requests for r in counted)
        out.append(
            f"requests {requests} (voice turns, connects, HTTP; V2V and stage rows not counted), "
            f"failures {total.failures}"
        )
    if v2v is not None:
        ps = " / ".join("-" if v is None else f"{v:.0f}" for v in v2v.percentiles.values())
        out.append(f"voice-to-voice P50 / P90 / P95 / P99 ms: {ps} ({v2v.requests} answered turns)")
    for row, error, count in read_failures(prefix)[:5]:
        out.append(f"failure x{count}: {row}: {error}")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
