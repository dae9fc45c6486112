"""Four "hosts" on one machine: Linux network namespaces on a bridge, with link delay and partitions.

Each namespace gets one veth whose peer is a port of a bridge in the root namespace; the bridge holds
one more address, so the test (in the root namespace) reaches every host like an operator would.
Everything is named after the creating pid (`epc<pid>...`): a crashed run leaves names that the next run
removes (`remove_stale`) and never blocks it.

Link delay: `tc netem` on every host's interface when the kernel has sch_netem (`delay_applied` says
whether it did; some VM kernels are built without it). Partitions: blackhole routes inside the
namespaces (iproute2 only, no iptables/nft needed): packets to the other side vanish like on a cut
link, TCP connections stay open and resume when the routes go, while the bridge address stays reachable
so the test can still watch an isolated host.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "epc"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (creates network namespaces, veth pairs and a bridge)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "needs iproute2 (`ip`, `tc`)"
    probe = f"{PREFIX}{os.getpid()}probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"`ip netns add` fails here: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def remove_stale() -> list[str]:
    """Remove namespaces and bridges that an earlier, dead run of this test left behind."""
    removed = []
    names = ip("netns", "list", check=False).stdout.split()
    for ns in names:
        m = re.fullmatch(rf"{PREFIX}(\d+)n\d+", ns)
        if m and not _pid_alive(int(m.group(1))):
            _kill_inside(ns)
            ip("netns", "del", ns, check=False)
            removed.append(ns)
    for line in ip("-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(rf"\d+: ({PREFIX}(\d+)(?:br|v\d+))[@:]", line)
        if m and not _pid_alive(int(m.group(2))):
            ip("link", "del", m.group(1), check=False)
            removed.append(m.group(1))
    return removed


def _kill_inside(ns: str) -> None:
    """SIGKILL what still runs in the namespace (our node processes of a crashed run)."""
    for pid in ip("netns", "pids", ns, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _free_subnet() -> ipaddress.IPv4Network:
    used = ip("-4", "-o", "addr", "show", check=False).stdout + ip("-4", "route", "show", "table", "all",
                                                                   check=False).stdout
    for third in range(10, 250):
        net = ipaddress.IPv4Network(f"10.231.{third}.0/24")
        if f"10.231.{third}." not in used:
            return net
    raise RuntimeError("no free 10.231.x.0/24 subnet for the test bridge")


class NetnsLab:
    """`hosts` namespaces on a bridge; `ips[i]` is host i's address, `bridge_ip` the root namespace's."""

    def __init__(self, hosts: int = 4, delay_ms: int = 20):
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}br"
        self.namespaces = [f"{self.tag}n{i}" for i in range(hosts)]
        self.delay_ms = delay_ms
        self.subnet = _free_subnet()
        addrs = list(self.subnet.hosts())
        self.ips = [str(addrs[i]) for i in range(hosts)]
        self.bridge_ip = str(addrs[-1])
        self.delay_applied = False
        self.delay_reason = ""
        self.blackholes: dict[int, list[str]] = {}

    def create(self) -> "NetnsLab":
        plen = self.subnet.prefixlen
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.bridge_ip}/{plen}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, ns in enumerate(self.namespaces):
            outer, inner = f"{self.tag}v{i}", f"{self.tag}i{i}"
            ip("netns", "add", ns)
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "master", self.bridge)
            ip("link", "set", outer, "up")
            ip("-n", ns, "link", "set", inner, "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.ips[i]}/{plen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        self._delay()
        return self

    def _delay(self) -> None:
        """`tc netem delay` on every host's egress: `delay_ms` one way, 2x between two hosts."""
        if self.delay_ms <= 0:
            self.delay_reason = "no delay asked"
            return
        for ns in self.namespaces:
            res = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                                  "delay", f"{self.delay_ms}ms"], capture_output=True, text=True)
            if res.returncode != 0:
                self.delay_reason = f"tc netem unavailable on this kernel ({res.stderr.strip()})"
                return
        self.delay_applied = True

    def rtt_ms(self, a: int, b: int, port: int = 9) -> float | None:
        """Host a -> host b round trip in ms (a TCP connect to a closed port: SYN, then RST), None when cut."""
        code = ("import socket,sys,time\n"
                "s=socket.socket(); s.settimeout(2); t=time.perf_counter()\n"
                "try: s.connect((sys.argv[1], int(sys.argv[2])))\n"
                "except ConnectionRefusedError: print((time.perf_counter()-t)*1000)\n"
                "except OSError as e: print('cut', e)\n")
        out = self.exec(a, ["python3", "-c", code, self.ips[b], str(port)], timeout=30).stdout.strip()
        return None if not out or out.startswith("cut") else float(out)

    def exec(self, i: int, argv: list[str], timeout: float = 120.0, **kw) -> subprocess.CompletedProcess:
        """Run argv inside host i's namespace (its processes bind host i's address)."""
        return subprocess.run(["ip", "netns", "exec", self.namespaces[i], *argv], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def spawn(self, i: int, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.namespaces[i], *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, **kw)

    def partition(self, *groups: list[int]) -> None:
        """Cut the links between groups: hosts talk only within their own group (and to the bridge)."""
        self.heal()
        side = {h: g for g in groups for h in g}
        for i in range(len(self.namespaces)):
            mine = side.get(i, [i])
            self.blackholes[i] = [self.ips[j] for j in range(len(self.namespaces)) if j not in mine]
            for addr in self.blackholes[i]:
                ip("-n", self.namespaces[i], "route", "add", "blackhole", f"{addr}/32")

    def heal(self) -> None:
        for i, addrs in self.blackholes.items():
            for addr in addrs:
                ip("-n", self.namespaces[i], "route", "del", "blackhole", f"{addr}/32", check=False)
        self.blackholes = {}

    def destroy(self) -> None:
        """Remove everything this lab made (the caller stops its processes first; leftovers are killed)."""
        for i, ns in enumerate(self.namespaces):
            _kill_inside(ns)
            ip("link", "del", f"{self.tag}v{i}", check=False)
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(ns in ip("netns", "list", check=False).stdout
                                                  for ns in self.namespaces):
            time.sleep(0.1)
