"""One chaos run: network, servers, stack, workload, nemesis, drain, checker, report.

    python -m chaos            the long run (20 minutes of load, a random seed)
    python -m chaos --ci       the short run (under 3 minutes in all, seed 29)

Steps:
1. Namespaces and the bridge; PostgreSQL and Redis on their own addresses; migrations.
2. The stack, each group in its namespace: web, two workers, beat + scheduler, a second beat,
   and the webhook receiver. Then the tenants and their triggers, through the API.
3. The nemesis carries out the seed's schedule while the cap sampler reads PostgreSQL every
   100 ms. The faults end before the load does (`settle`).
4. After the load, wait until every run of the window is final, for at most one lease plus
   a drain allowance; then read the history and check it.
5. Report (bench/results/chaos/), print the detail and the final line; exit 1 when the
   checker found a violation. Everything the run made is removed, on failure and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import requests

from chaos import checker, delay, history, nemesis, net, report, sampler, servers, stack, workload

logger = logging.getLogger("chaos")

ROOT = Path(__file__).resolve().parent.parent
CI_SEED = 29
SMALL_TENANTS = ("small-a", "small-b", "small-c", "small-d")
NOISY = "noisy"
SETTINGS = {
    "DISPATCH_INTERVAL_SECONDS": "2",
    "SLOT_LEASE_SECONDS": "10",
    "HEARTBEAT_SECONDS": "2",
    "HEARTBEAT_TIMEOUT_SECONDS": "8",
    "MAX_RUNNING": "6",
    "MAX_RUNNING_PER_TENANT": "2",
    "WORKER_CONCURRENCY": "3",
    "WEB_CONCURRENCY": "2",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "3",
    "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
    "API_RATE_LIMIT": "100000/minute",
    # The workload's handler actions run the demo handler, which a deployment registers only
    # when asked to.
    "ENABLE_ECHO_HANDLER": "true",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--ci", action="store_true", help="the short run (seed 29 by default)")
    parser.add_argument(
        "--seed", type=int, help="the nemesis's seed (default: random; 29 with --ci)"
    )
    parser.add_argument(
        "--load-seconds", type=float, help="length of the load (1200; 105 with --ci)"
    )
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "chaos")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/chaos-run"))  # noqa: S108 (root-only harness)
    return parser.parse_args(argv)


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s chaos %(message)s")
    if os.geteuid() != 0:
        print("chaos: must run as root (network namespaces, iptables)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else (CI_SEED if args.ci else random.randrange(10**6))
    # Ctrl-C and SIGTERM both end the run through the cleanup below (a shell that starts
    # the harness in the background leaves SIGINT ignored, hence set explicitly).
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    harness = Harness(args, seed)
    try:
        return harness.run()
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        harness.cleanup()


class Harness:
    def __init__(self, args: argparse.Namespace, seed: int) -> None:
        self.args, self.seed = args, seed
        self.mode = "ci" if args.ci else "long"
        self.load_seconds = args.load_seconds or (105.0 if args.ci else 1200.0)
        self.work: Path = args.workdir
        self.logs = self.work / "logs"
        self.pg = servers.Postgres(self.work)
        self.redis = servers.Redis(self.work)
        self.procs: dict[str, stack.Proc] = {}
        self.sampler: sampler.Sampler | None = None
        self.nemesis: nemesis.Nemesis | None = None
        self.frozen_runs: dict[str, list[str]] = {}
        self.delay_controls: dict[str, Path] = {}  # host: its chaos.delay control file

    # 1-2. Network, servers, stack, workload.
    def start(self) -> dict[str, str]:
        shutil.rmtree(self.work, ignore_errors=True)
        self.logs.mkdir(parents=True)
        net.setup()
        self.pg.start()
        self.redis.start()
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "RELEASE_ID")}  # fmt: skip
        env.update(SETTINGS)
        env.update(DATABASE_URL=self.pg.url, REDIS_URL=self.redis.url, RELEASE_ID="chaos",
                   LOG_FORMAT="json", LOG_LEVEL="INFO", PYTHONUNBUFFERED="1",
                   PORT=str(stack.WEB_PORT), SECRET_KEY=secrets.token_urlsafe(48),
                   SECRETS_ENCRYPTION_KEY=secrets.token_hex(32))  # fmt: skip
        subprocess.run([str(Path(sys.executable).parent / "alembic"), "upgrade", "head"],
                       cwd=ROOT, env=env, check=True, capture_output=True)  # fmt: skip
        self.procs = stack.make(self.logs, env)
        if not net.has_netem("w1"):  # the link's delay from chaos.delay instead
            self.procs = {**self.delay_procs(self.procs["worker1"].env), **self.procs}
        for proc in self.procs.values():
            proc.start()
            if proc.name.startswith("delay-"):
                _wait_for_file(self.work / f"{proc.name}.ready")
        self.wait_for_web()
        return env

    def delay_procs(self, env: dict[str, str]) -> dict[str, stack.Proc]:
        """A chaos.delay forwarder per worker host, its connections to PostgreSQL, Redis and
        the receiver routed through it (no delay until a `lossy` fault writes its control)."""
        forwards = [(net.PG_ADDR, servers.PG_PORT), (net.REDIS_ADDR, servers.REDIS_PORT),
                    (net.HOSTS["recv"], stack.RECEIVER_PORT)]  # fmt: skip
        procs = {}
        for host in ("w1", "w2"):
            name = f"delay-{host}"
            control = self.delay_controls[host] = self.work / name
            control.write_text("0\n")
            net.route_through_delay(host, forwards, delay.MARK)
            command = (
                f"{sys.executable} -m chaos.delay --control {control} "
                f"--ready {self.work / f'{name}.ready'} "
                + " ".join(f"--forward {port}:{addr}:{port}" for addr, port in forwards)
            )
            procs[name] = stack.Proc(name, host, command, env, self.logs)
        return procs

    def wait_for_web(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{net.HOSTS['web']}:{stack.WEB_PORT}/healthz"
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError("the web process never answered")

    def workload(self, rng: random.Random, load_end: datetime, burst_at: datetime) -> list:
        api_keys = workload.make_keys(self.pg.url, [*SMALL_TENANTS, NOISY])
        base = f"http://{net.HOSTS['web']}:{stack.WEB_PORT}"
        specs = []
        for i, tenant in enumerate(SMALL_TENANTS):
            client = workload.Client(base, api_keys[tenant], tenant)
            one_time = 3 if self.args.ci else 12
            specs += workload.small_tenant(client, i, rng, load_end=load_end, one_time=one_time)
        noisy = workload.Client(base, api_keys[NOISY], NOISY)
        specs += workload.noisy_burst(noisy, at=burst_at, count=40 if self.args.ci else 150)
        return specs

    # 3. Faults.
    def apply(self, fault: nemesis.Fault) -> str:
        if fault.kind == "partition_pg":
            net.partition(fault.target, net.PG_ADDR)
            return f"iptables DROP to/from {net.PG_ADDR} in {net.ns(fault.target)}"
        if fault.kind == "partition_broker":
            net.partition(fault.target, net.REDIS_ADDR)
            return f"iptables DROP to/from {net.REDIS_ADDR} in {net.ns(fault.target)}"
        if fault.kind == "partition_beat":
            net.partition(fault.target, net.PG_ADDR)
            net.partition(fault.target, net.REDIS_ADDR)
            return f"iptables DROP to/from PostgreSQL and Redis in {net.ns('beat')} (beat2 runs)"
        if fault.kind == "lossy":
            return net.lossy(fault.target, control=self.delay_controls.get(fault.target))
        if fault.kind == "kill_pg_connections":
            return f"pg_terminate_backend: {self.pg.terminate_backends()} backends"
        if fault.kind == "broker_restart":
            self.redis.restart(down_seconds=2)
            return "redis-server killed (no persistence: its messages lost), restarted after 2 s"
        proc = self.procs[_worker_proc(fault.target)]
        if fault.kind == "freeze":
            # Freeze it while it holds a run (within a few seconds), the zombie case.
            deadline = time.monotonic() + 6
            held = self.running_of(proc)
            while not held and time.monotonic() < deadline:
                time.sleep(0.2)
                held = self.running_of(proc)
            self.frozen_runs[f"{fault.target}@{fault.start}"] = held
            proc.signal(nemesis.FREEZE)
            return f"SIGSTOP to the worker's process group; runs in progress: {len(held)}"
        if fault.kind == "skew":
            proc.stop()
            proc.start(stack.faketime_env(fault.skew_seconds))
            return f"restarted under libfaketime FAKETIME={fault.skew_seconds:+d}s"
        raise ValueError(fault.kind)

    def revert(self, fault: nemesis.Fault) -> None:
        if fault.kind in ("partition_pg", "partition_broker"):
            peer = net.PG_ADDR if fault.kind == "partition_pg" else net.REDIS_ADDR
            net.heal(fault.target, peer)
        elif fault.kind == "partition_beat":
            net.heal(fault.target, net.PG_ADDR)
            net.heal(fault.target, net.REDIS_ADDR)
        elif fault.kind == "lossy":
            net.clear_lossy(fault.target, control=self.delay_controls.get(fault.target))
        elif fault.kind == "freeze":
            self.procs[_worker_proc(fault.target)].signal(nemesis.THAW)
        elif fault.kind == "skew":
            proc = self.procs[_worker_proc(fault.target)]
            proc.stop()
            proc.start()

    def running_of(self, proc: stack.Proc) -> list[str]:
        """Ids of the runs the worker process holds (running, by its Celery node name)."""
        assert proc.popen is not None
        conn = psycopg2.connect(self.pg.url, application_name="chaos-nemesis")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id::text FROM runs WHERE status = 'running' AND worker LIKE %s",
                            (f"worker.{proc.popen.pid}@%",))  # fmt: skip
                return [row[0] for row in cur.fetchall()]
        finally:
            conn.close()

    # 4. Drain.
    def drain(self, specs: list, window_end: datetime, timeout: float) -> None:
        ids = [spec.id for spec in specs]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            conn = psycopg2.connect(self.pg.url, application_name="chaos-drain")
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM runs WHERE trigger_id::text = ANY(%s) "
                        "AND scheduled_for <= %s AND status IN ('pending', 'admitted', 'running')",
                        (ids, window_end),
                    )
                    left = cur.fetchone()[0]
            finally:
                conn.close()
            if left == 0:
                return
            time.sleep(1)

    def run(self) -> int:
        started = time.time()
        rng = random.Random(self.seed)
        print(f"chaos: mode={self.mode} seed={self.seed} load={self.load_seconds:.0f}s", flush=True)
        self.start()
        t0 = time.time()
        load_start = datetime.fromtimestamp(t0, UTC)
        load_end = load_start + timedelta(seconds=self.load_seconds)
        short = bool(self.args.ci)
        timings = nemesis.Timings(
            fault_start=15 if short else 60,
            fault_end=self.load_seconds - (20 if short else 90),
            burst_at=self.load_seconds * (0.4 if short else 0.35),
            lease_seconds=int(SETTINGS["SLOT_LEASE_SECONDS"]),
            heartbeat_timeout_seconds=int(SETTINGS["HEARTBEAT_TIMEOUT_SECONDS"]),
            tick_seconds=int(SETTINGS["DISPATCH_INTERVAL_SECONDS"]),
            short=short,
        )
        burst_at = load_start + timedelta(seconds=timings.burst_at)
        specs = self.workload(rng, load_end, burst_at)
        print(f"chaos: {len(specs)} triggers created in {time.time() - t0:.1f}s", flush=True)
        faults = nemesis.plan(self.seed, timings)
        self.sampler = sampler.Sampler(self.pg.url)
        self.sampler.start()
        self.nemesis = nemesis.Nemesis(faults, t0, self.apply, self.revert)
        self.nemesis.start()
        time.sleep(max(0.0, t0 + self.load_seconds - time.time()))
        self.nemesis.stop()
        faults_end = datetime.fromtimestamp(
            max([a.ended or a.began for a in self.nemesis.applied], default=t0), UTC
        )
        # Fires due by the window's end have been dispatched within a tick or two of it.
        window_end = load_end - timedelta(seconds=5)
        lease = int(SETTINGS["SLOT_LEASE_SECONDS"])
        self.drain(specs, window_end, timeout=lease + (25 if short else 120))
        # No run may be stuck once the faults have ended plus one lease.
        time.sleep(max(0.0, (faults_end + timedelta(seconds=lease)).timestamp() - time.time()))
        self.sampler.stop()
        runs = history.runs(self.pg.url)
        deliveries = history.deliveries(self.logs / "deliveries.jsonl")
        faults_start = load_start + timedelta(seconds=timings.fault_start)
        window = checker.Window(end=window_end, faults_start=faults_start, faults_end=faults_end)
        verdict = checker.check(
            specs, runs, deliveries, self.sampler.samples, window=window,
            max_running=int(SETTINGS["MAX_RUNNING"]),
            max_per_tenant=int(SETTINGS["MAX_RUNNING_PER_TENANT"]),
            small_tenants=frozenset(SMALL_TENANTS),
        )  # fmt: skip
        fenced = self.fenced(runs)
        final = verdict.final_line(self.seed)
        facts = report.Facts(
            seed=self.seed, mode=self.mode, load_seconds=self.load_seconds,
            wall_seconds=time.time() - started, t0=t0, settings=SETTINGS,
            applied=self.nemesis.applied, nemesis_errors=self.nemesis.errors, verdict=verdict,
            runs=runs, small_tenants=frozenset(SMALL_TENANTS), deliveries=len(deliveries),
            samples=len(self.sampler.samples), fenced=fenced, final_line=final,
        )  # fmt: skip
        path = report.write(facts, self.args.report)
        for line in verdict.details[:40]:
            print(f"chaos: {line}")
        print(f"chaos: fires checked {verdict.fires_checked}, wrong status {verdict.wrong_status}, "
              f"conflicting payloads {verdict.conflicting_payloads}, lag p50 {verdict.lag_p50} "
              f"p99 {verdict.lag_p99}, fenced finishes {len(fenced)}, "
              f"nemesis errors {len(self.nemesis.errors)}; report {path}; "
              f"logs {self.logs}")  # fmt: skip
        print(final, flush=True)
        return 0 if verdict.ok and not self.nemesis.errors else 1

    def fenced(self, runs: list[checker.RunRecord]) -> list[str]:
        """Every attempt a worker finished after the sweep had handed its run on, with the
        run's final state: the late finish refused, the newer attempt's outcome standing."""
        by_id = {run.id: run for run in runs}
        found = []
        for name in ("worker1", "worker2"):
            events = history.log_events(self.procs[name].log_path, {"run_lost"})
            for event in events:
                run = by_id.get(str(event.get("run_id")))
                if run is None or "taken over" not in str(event.get("message", "")):
                    continue
                found.append(
                    f"{name}: run {run.id} attempt {event.get('attempt')} finished late and "
                    f"was refused; the run ended {run.status} at attempt {run.attempt}"
                )
        frozen = sorted({rid for ids in self.frozen_runs.values() for rid in ids})
        for rid in frozen:
            run = by_id.get(rid)
            if run is not None:
                found.append(f"frozen with the worker: run {rid}, ended {run.status} "
                             f"at attempt {run.attempt}")  # fmt: skip
        return found

    # 5. Cleanup.
    def cleanup(self) -> None:
        if self.nemesis is not None and self.nemesis.is_alive():
            self.nemesis.stop()
        if self.sampler is not None:
            self.sampler.stop()
        for proc in self.procs.values():
            try:
                proc.stop(timeout=10)
            except Exception:
                logger.exception("stopping %s failed", proc.name)
        self.redis.stop()
        self.pg.stop()
        net.teardown()
        shutil.rmtree(self.work / "pg", ignore_errors=True)
        left = net.leftovers()
        if left:
            print(f"chaos: left behind: {left}", file=sys.stderr)


def _wait_for_file(path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path.name} never appeared")
        time.sleep(0.05)


def _worker_proc(host: str) -> str:
    return {"w1": "worker1", "w2": "worker2"}[host]
