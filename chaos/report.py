"""The report of one run: a Markdown file and a timeline plot (faults as bands, runs per second
and small-tenant lag as lines)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from chaos.checker import RunRecord, Verdict
from chaos.nemesis import Applied, Fault

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
    bin_seconds = 5
    finished = Counter(
        int(run.finished_at.timestamp() - facts.t0) // bin_seconds
        for run in facts.runs
        if run.finished_at is not None and run.finished_at.timestamp() >= facts.t0
    )
    last = max(finished, default=0)
    xs = list(range(last + 1))
    lines.plot([x * bin_seconds for x in xs], [finished[x] / bin_seconds for x in xs],
               label=f"runs finished / s ({bin_seconds} s bins)")  # fmt: skip
    for record in facts.applied:
        lines.axvspan(record.began - facts.t0, (record.ended or record.began) - facts.t0 + 0.5,
                      color=COLOURS.get(record.fault.kind, "grey"), alpha=0.08)  # fmt: skip
    worst: dict[int, float] = {}
    for run in facts.runs:
        if run.tenant in facts.small_tenants and run.started_at is not None:
            x = int(run.scheduled_for.timestamp() - facts.t0) // bin_seconds
            lag = (run.started_at - run.scheduled_for).total_seconds()
            worst[x] = max(worst.get(x, 0.0), lag)
    twin = lines.twinx()
    if worst:
        keys = sorted(k for k in worst if k >= 0)
        twin.plot([k * bin_seconds for k in keys], [worst[k] for k in keys], "-", color="tab:red",
                  marker=".", markersize=3, linewidth=0.8,
                  label="small-tenant lag, worst per bin (s)")  # fmt: skip
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
        f"Seed **{facts.seed}** (replay: `python -m chaos{' --ci' if facts.mode == 'ci' else ''} "
        f"--seed {facts.seed}`). "
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
    """The report, its plot, and the facts as JSON (`python -m chaos.report FILE` redraws)."""
    directory.mkdir(parents=True, exist_ok=True)
    plot_name = f"timeline-{facts.mode}.png"
    plot(facts, directory / plot_name)
    path = directory / f"REPORT-{facts.mode}.md"
    path.write_text(markdown(facts, plot_name))
    (directory / f"facts-{facts.mode}.json").write_text(json.dumps(_dump(facts), default=str))
    return path


def _dump(facts: Facts) -> dict:
    data = asdict(facts)
    data["small_tenants"] = sorted(facts.small_tenants)
    return data


def load(path: Path) -> Facts:
    """Facts written by `write`."""
    data = json.loads(path.read_text())
    when = datetime.fromisoformat
    data["runs"] = [
        RunRecord(**{**r, **{k: when(r[k]) if r[k] else None
                             for k in ("scheduled_for", "started_at", "finished_at")}})
        for r in data["runs"]
    ]  # fmt: skip
    data["applied"] = [Applied(**{**a, "fault": Fault(**a["fault"])}) for a in data["applied"]]
    data["verdict"] = Verdict(**data["verdict"])
    data["small_tenants"] = frozenset(data["small_tenants"])
    return Facts(**data)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    print(write(load(source), source.parent))
