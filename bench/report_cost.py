"""The report's section on what PostgreSQL pays per run (bench.per_run_cost) and on
admission's ceiling (bench.finishers): issue 27."""

from __future__ import annotations

from typing import Any

# bench.per_run_cost on the product before migration 0015 (commit 11de5cf), two drains of
# 10,000 runs on the 2-core development host (bench/results/issue27.md): the side the
# figures of each run are set against.
BEFORE_COMMIT = "11de5cf"
BEFORE = {
    "wal_bytes_per_run": 4713,
    "index_entries_per_run": 27.0,
    "hot_share": 0.005,
    "statements_per_run": 7.04,
    "buffers_per_run": 249,
    "pg_exec_ms_per_run": 2.73,
    "pg_cpu_ms_per_run": 3.27,
}
ROWS = (
    ("WAL bytes", "wal_bytes_per_run", "{:,.0f}"),
    ("index entries written (B-tree insert records)", "index_entries_per_run", "{:.1f}"),
    ("HOT share of updates", "hot_share", "{:.1%}"),
    ("statements (top level)", "statements_per_run", "{:.2f}"),
    ("buffer accesses of those statements", "buffers_per_run", "{:.0f}"),
    ("statement time, ms", "pg_exec_ms_per_run", "{:.2f}"),
    ("PostgreSQL CPU, ms (every process)", "pg_cpu_ms_per_run", "{:.2f}"),
)


def _cell(value: Any, form: str) -> str:
    return "-" if value is None else form.format(value)


def sections(results: dict[str, Any]) -> list[str]:
    cost, finishers = results.get("cost"), results.get("finishers")
    lines: list[str] = []
    if cost:
        commit = results.get("code", {}).get("commit", "this commit")
        lines += [
            "## What PostgreSQL pays per run (`bench.per_run_cost`)",
            "",
            f"{cost['runs']:,} one-time `echo` triggers due at once: the real tick inserts "
            "their runs, the real worker (prefork, concurrency 8, MAX_RUNNING = 8) drains "
            "them, on a private PostgreSQL cluster (pg_stat_statements loaded, a checkpoint "
            "just before). Counters from PostgreSQL itself, per run. Time figures move with "
            "the machine's load; the counts do not.",
            "",
            f"| per run | before ({BEFORE_COMMIT}, 10,000 runs) | {commit} |",
            "|---|---|---|",
        ]
        for label, key, form in ROWS:
            lines.append(f"| {label} | {_cell(BEFORE.get(key), form)} | "
                         f"{_cell(cost.get(key), form)} |")  # fmt: skip
        lines.append("")
    if finishers:
        lines += [
            "## Admission's ceiling (`bench.finishers`)",
            "",
            "Threads calling `finish_and_admit` directly, as many slots as threads, no "
            "Celery, no handler (docs/design.md section 19).",
            "",
            "| finishers | runs/s |",
            "|---|---|",
            *[f"| {row['finishers']} | {row['runs_per_second']:.0f} |" for row in finishers],
            "",
        ]
    return lines
