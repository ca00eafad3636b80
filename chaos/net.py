"""Network namespaces on one bridge, and the faults that act on their links.

    root namespace: bridge chbr0  10.77.0.1 (harness), 10.77.0.2 (PostgreSQL), 10.77.0.3 (Redis)
      |-- veth --> ch-web    10.77.0.10   gunicorn
      |-- veth --> ch-w1     10.77.0.11   worker 1
      |-- veth --> ch-w2     10.77.0.12   worker 2
      |-- veth --> ch-beat   10.77.0.13   beat + scheduler
      |-- veth --> ch-beat2  10.77.0.14   the second beat
      '-- veth --> ch-recv   10.77.0.20   webhook receiver

PostgreSQL and Redis have their own addresses, so a namespace can lose one and keep the other.
A partition is a pair of iptables DROP rules in the namespace (packets to and from the peer
vanish: connections hang as on a real partition, rather than failing fast as a blackhole
route's EINVAL would). Every name carries the `ch` prefix; teardown removes what exists.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

logger = logging.getLogger(__name__)

BRIDGE = "chbr0"
SUBNET_PREFIX = "10.77.0"
HARNESS_ADDR = f"{SUBNET_PREFIX}.1"
PG_ADDR = f"{SUBNET_PREFIX}.2"
REDIS_ADDR = f"{SUBNET_PREFIX}.3"
HOSTS = {
    "web": f"{SUBNET_PREFIX}.10",
    "w1": f"{SUBNET_PREFIX}.11",
    "w2": f"{SUBNET_PREFIX}.12",
    "beat": f"{SUBNET_PREFIX}.13",
    "beat2": f"{SUBNET_PREFIX}.14",
    "recv": f"{SUBNET_PREFIX}.20",
}


def ns(host: str) -> str:
    return f"ch-{host}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its stderr when `check` and it fails."""
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr.strip()}")
    return proc


def in_ns(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns(host), *args, check=check)


def setup() -> None:
    """Create the bridge, the server addresses and one namespace per host (after a teardown
    of anything a killed earlier run left)."""
    teardown()
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    for addr in (HARNESS_ADDR, PG_ADDR, REDIS_ADDR):
        sh("ip", "addr", "add", f"{addr}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    for host, addr in HOSTS.items():
        name = ns(host)
        sh("ip", "netns", "add", name)
        sh("ip", "link", "add", f"chv-{host}", "type", "veth", "peer", "name", "eth0",
           "netns", name)  # fmt: skip
        sh("ip", "link", "set", f"chv-{host}", "master", BRIDGE, "up")
        in_ns(host, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
        in_ns(host, "ip", "link", "set", "eth0", "up")
        in_ns(host, "ip", "link", "set", "lo", "up")


def teardown() -> None:
    """Remove every namespace (their veths, rules and qdiscs go with them) and the bridge."""
    for host in HOSTS:
        sh("ip", "netns", "del", ns(host), check=False)
        sh("ip", "link", "del", f"chv-{host}", check=False)
    sh("ip", "link", "del", BRIDGE, check=False)


def partition(host: str, peer: str) -> None:
    """Drop every packet between `host` and the address `peer`, both ways."""
    in_ns(host, "iptables", "-w", "-A", "OUTPUT", "-d", peer, "-j", "DROP")
    in_ns(host, "iptables", "-w", "-A", "INPUT", "-s", peer, "-j", "DROP")


def heal(host: str, peer: str) -> None:
    in_ns(host, "iptables", "-w", "-D", "OUTPUT", "-d", peer, "-j", "DROP", check=False)
    in_ns(host, "iptables", "-w", "-D", "INPUT", "-s", peer, "-j", "DROP", check=False)


def has_netem(host: str) -> bool:
    """Whether the kernel has sch_netem (tried on the host's loopback, then removed)."""
    tried = in_ns(host, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                  check=False)  # fmt: skip
    in_ns(host, "tc", "qdisc", "del", "dev", "lo", "root", check=False)
    return tried.returncode == 0


def route_through_delay(host: str, forwards: list[tuple[str, int]], mark: int) -> None:
    """Send the host's TCP connections to each (address, port) to 127.0.0.1 on the same port,
    where chaos.delay listens in its namespace; its own connections (marked `mark`) pass."""
    in_ns(host, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1")
    for addr, port in forwards:
        in_ns(host, "iptables", "-w", "-t", "nat", "-A", "OUTPUT", "-d", addr, "-p", "tcp",
              "--dport", str(port), "-m", "mark", "!", "--mark", hex(mark), "-j", "DNAT",
              "--to-destination", f"127.0.0.1:{port}")  # fmt: skip


def lossy(
    host: str, *, loss_percent: int = 5, delay_ms: int = 200, control: Path | None = None
) -> str:
    """Packet loss and delay on the host's link (egress of its end of the veth); return how.

    `tc qdisc ... netem` when the kernel has sch_netem. A kernel without it gets the loss
    from iptables' `statistic` match on the link, both ways, and the delay from chaos.delay,
    through which the host's connections are routed (`control`: its file); the return value
    says which, and the report prints it.
    """
    tried = in_ns(host, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                  "loss", f"{loss_percent}%", "delay", f"{delay_ms}ms", check=False)  # fmt: skip
    if tried.returncode == 0:
        return f"netem loss {loss_percent}% delay {delay_ms}ms"
    for chain, side in (("INPUT", "-i"), ("OUTPUT", "-o")):
        in_ns(host, "iptables", "-w", "-A", chain, side, "eth0", *_loss_rule(loss_percent))
    if control is None:
        return f"iptables statistic loss {loss_percent}% each way (no sch_netem: no delay)"
    control.write_text(f"{delay_ms}\n")
    return (
        f"iptables statistic loss {loss_percent}% each way, and {delay_ms} ms on what the "
        "worker sends (chaos.delay: no sch_netem)"
    )


def clear_lossy(host: str, *, loss_percent: int = 5, control: Path | None = None) -> None:
    in_ns(host, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
    for chain, side in (("INPUT", "-i"), ("OUTPUT", "-o")):
        in_ns(host, "iptables", "-w", "-D", chain, side, "eth0", *_loss_rule(loss_percent),
              check=False)  # fmt: skip
    if control is not None:
        control.write_text("0\n")


def _loss_rule(loss_percent: int) -> tuple[str, ...]:
    return ("-m", "statistic", "--mode", "random", "--probability",
            f"{loss_percent / 100:.2f}", "-j", "DROP")  # fmt: skip


def leftovers() -> list[str]:
    """Names of harness namespaces and links that still exist (empty after teardown)."""
    names = sh("ip", "netns", "list").stdout.split()
    links = sh("ip", "-o", "link").stdout
    found = [n for n in names if n.startswith("ch-")]
    found += [f"chv-{h}" for h in HOSTS if f"chv-{h}@" in links or f"chv-{h}:" in links]
    if f" {BRIDGE}:" in links:
        found.append(BRIDGE)
    return found
