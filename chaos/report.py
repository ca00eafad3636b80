"""The report of one run: a Markdown file and a timeline plot (faults as bands, runs per second
and small-tenant lag as lines)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from chaos.checker import RunRecord, Verdict
from chaos.nemesis import Applied

COLOURS = {
    "partition_pg": "tab:red",
    "partition_broker": "tab:orange",
    "freeze": "tab:purple",
    "lossy": "tab:olive",
    "skew": "tab:cyan",
    "partition_beat": "tab:brown",
    "kill_pg_connections": "black",
    "broker_restart": "tab:pink",
}


@dataclass
class Facts:
    seed: int
    mode: str
    load_seconds: float
    wall_seconds: float
    t0: float
    settings: dict[str, str]
    applied: list[Applied]
    nemesis_errors: list[str]
    verdict: Verdict
    runs: list[RunRecord]
    small_tenants: frozenset[str]
    deliveries: int
    samples: int
    fenced: list[str] = field(default_factory=list)
    final_line: str = ""


def plot(facts: Facts, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bands, lines) = plt.subplots(2, 1, figsize=(12, 6), sharex=True,
                                       gridspec_kw={"height_ratios": [1, 2]})  # fmt: skip
    rows = sorted({f"{a.fault.kind} {a.fault.target}" for a in facts.applied})
    for record in facts.applied:
        y = rows.index(f"{record.fault.kind} {record.fault.target}")
        start = record.began - facts.t0
        width = max(1.0, (record.ended or record.began) - record.began)
        bands.broken_barh([(start, width)], (y - 0.4, 0.8),
                          color=COLOURS.get(record.fault.kind, "grey"))  # fmt: skip
    bands.set_yticks(range(len(rows)), rows, fontsize=7)
    bands.set_title(f"chaos ({facts.mode}), seed {facts.seed}: faults")
    finished = Counter(
        int(run.finished_at.timestamp() - facts.t0) // 5
        for run in facts.runs
        if run.finished_at is not None
    )
    if finished:
        xs = sorted(finished)
        lines.plot([x * 5 for x in xs], [finished[x] / 5 for x in xs], label="runs finished / s")
    lag = sorted(
        (
            run.scheduled_for.timestamp() - facts.t0,
            (run.started_at - run.scheduled_for).total_seconds(),
        )
        for run in facts.runs
        if run.tenant in facts.small_tenants
        and run.started_at is not None
        and run.kind == "scheduled"
    )
    twin = lines.twinx()
    if lag:
        twin.plot([x for x, _ in lag], [y for _, y in lag], ".", color="tab:red", markersize=3,
                  label="small-tenant lag (s)")  # fmt: skip
    twin.set_ylabel("small-tenant lag, s (started - scheduled)")
    lines.set_ylabel("runs finished per second")
    lines.set_xlabel("seconds since the load started")
    lines.legend(loc="upper left")
    twin.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(facts: Facts, plot_name: str) -> str:
    v = facts.verdict
    statuses = Counter(run.status for run in facts.runs)
    lines = [
        f"# Chaos run ({facts.mode})",
        "",
        f"Seed **{facts.seed}** (replay: `python -m chaos --{facts.mode} --seed {facts.seed}`). "
        f"Load {facts.load_seconds:.0f} s, whole run {facts.wall_seconds:.0f} s.",
        "",
        "```",
        facts.final_line,
        "```",
        "",
        f"![timeline]({plot_name})",
        "",
        "## Checker",
        "",
        "| check | count |",
        "|---|---|",
        f"| nominal fires checked | {v.fires_checked} |",
        f"| lost (a fire without a run) | {v.lost} |",
        f"| doubled (a fire with two runs, or a run at no nominal instant) | {v.doubled} |",
        f"| final status other than the script's | {v.wrong_status} |",
        f"| cap violations (samples over MAX_RUNNING or MAX_RUNNING_PER_TENANT) | "
        f"{v.cap_violations} of {facts.samples} samples |",
        f"| stuck (not final after the faults ended plus one lease) | {v.stuck} |",
        f"| duplicate deliveries (a key accepted twice; allowed, at-least-once) | "
        f"{v.duplicate_deliveries} of {facts.deliveries} deliveries |",
        f"| one key delivered with two payloads | {v.conflicting_payloads} |",
        f"| small-tenant lag while faults were active, p50 / p99 | "
        f"{_s(v.lag_p50)} / {_s(v.lag_p99)} |",
        "",
        "Runs by final status: " + ", ".join(f"{k} {n}" for k, n in sorted(statuses.items())),
        "",
        "## Fenced finishes (a frozen or cut-off attempt that ended after the sweep took its run)",
        "",
    ]
    lines += [f"- {item}" for item in facts.fenced] or ["- none observed"]
    lines += ["", "## Faults", "", "| start (s) | length (s) | fault | target | how |",
              "|---|---|---|---|---|"]  # fmt: skip
    for record in facts.applied:
        length = (record.ended or record.began) - record.began
        how = record.how + ("; " + "; ".join(record.notes) if record.notes else "")
        lines.append(
            f"| {record.began - facts.t0:.1f} | {length:.1f} | {record.fault.kind} | "
            f"{record.fault.target} | {how} |"
        )
    if facts.nemesis_errors:
        lines += ["", "Faults that failed to apply:", ""]
        lines += [f"- {e}" for e in facts.nemesis_errors]
    lines += ["", "## Settings", "", "| variable | value |", "|---|---|"]
    lines += [f"| `{k}` | {val} |" for k, val in sorted(facts.settings.items())]
    if v.details:
        lines += ["", "## Details", ""]
        lines += [f"- {d}" for d in v.details[:200]]
    return "\n".join(lines) + "\n"


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def write(facts: Facts, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    plot_name = f"timeline-{facts.mode}.png"
    plot(facts, directory / plot_name)
    path = directory / f"REPORT-{facts.mode}.md"
    path.write_text(markdown(facts, plot_name))
    return path
