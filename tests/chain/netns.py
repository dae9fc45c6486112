"""Four "hosts" on one machine: Linux network namespaces on one link, with link delay and partitions.

Each namespace gets one veth whose peer is a port of a bridge in the root namespace; the bridge holds
one more address, so the test (in the root namespace) reaches every host like an operator would.
Everything is named after the creating pid (`epc<pid>...`): a crashed run leaves names that the next run
removes (`remove_stale`) and never blocks it.

Link delay: `tc netem delay` on every host's interface when the kernel has sch_netem. Kernels built
without it (the VM this was written and measured on) get the same link from a user-space switch
instead of the bridge: each host's interface is a TAP device whose frames a small switch process
(`DelaySwitch`, MAC learning, `python -m tests.chain.netns switch ...`) forwards after the delay; the
root namespace has its own port. `delay_how` says which was used.

Partitions: blackhole routes inside the namespaces (iproute2 only; no iptables/nft needed): packets
to the other side are discarded like on a cut link, TCP connections stay open and resume when the
routes go, while the root namespace's address stays reachable so the test can still watch an
isolated host.
"""

from __future__ import annotations

import fcntl
import heapq
import ipaddress
import os
import re
import shutil
import signal
import selectors
import struct
import subprocess
import sys
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
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`)"
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
        m = re.match(rf"\d+: ({PREFIX}(\d+)(?:br|v\d+|t\d+))[@:]", line)
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
    start = os.getpid() % 240  # concurrent runs start from different subnets
    for k in range(240):
        third = 10 + (start + k) % 240
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
        self.delay_how = ""
        self.switch: subprocess.Popen | None = None
        self.blackholes: dict[int, list[str]] = {}

    def create(self) -> "NetnsLab":
        if self.delay_ms > 0 and not netem_available():
            return self._create_switched()
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

    def _create_switched(self) -> "NetnsLab":
        """Hosts on TAP devices joined by a user-space switch that delays every host's frames by delay_ms."""
        plen = self.subnet.prefixlen
        taps = [f"{self.tag}t{i}" for i in range(len(self.namespaces))]
        root_tap = f"{self.tag}br"  # the root namespace's port (the test's address), named like the bridge
        for t in [*taps, root_tap]:
            ip("tuntap", "add", "dev", t, "mode", "tap")
        self.switch = subprocess.Popen([sys.executable, "-m", "tests.chain.netns", "switch", str(self.delay_ms),
                                        root_tap, *taps], stdout=subprocess.PIPE, text=True,
                                       cwd=Path(__file__).resolve().parents[2])
        line = self.switch.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"delay switch did not start: {line!r}")
        ip("addr", "add", f"{self.bridge_ip}/{plen}", "dev", root_tap)
        ip("link", "set", root_tap, "up")
        for i, ns in enumerate(self.namespaces):
            ip("netns", "add", ns)
            ip("link", "set", taps[i], "netns", ns)
            ip("-n", ns, "link", "set", taps[i], "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.ips[i]}/{plen}", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        self.delay_applied = True
        self.delay_how = f"user-space delay switch ({self.delay_ms} ms per host egress; kernel has no sch_netem)"
        return self

    def _delay(self) -> None:
        """`tc netem delay` on every host's egress: `delay_ms` one way, 2x between two hosts."""
        if self.delay_ms <= 0:
            self.delay_how = "none asked"
            return
        for ns in self.namespaces:
            res = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                                  "delay", f"{self.delay_ms}ms"], capture_output=True, text=True)
            if res.returncode != 0:
                self.delay_how = f"none: tc netem failed ({res.stderr.strip()})"
                return
        self.delay_applied = True
        self.delay_how = f"tc netem delay {self.delay_ms}ms on every host's eth0"

    def rtt_ms(self, a: int, b: int, port: int = 9) -> float | None:
        """Host a -> host b round trip in ms (a TCP connect to a closed port: SYN, then RST), None when cut."""
        code = ("import socket,sys,time\n"
                "for _ in range(2):  # the first also resolves the neighbour's MAC (ARP)\n"
                "    s=socket.socket(); s.settimeout(2); t=time.perf_counter()\n"
                "    try: s.connect((sys.argv[1], int(sys.argv[2]))); out='open'\n"
                "    except ConnectionRefusedError: out=(time.perf_counter()-t)*1000\n"
                "    except OSError as e: out='cut %s' % e\n"
                "    s.close()\n"
                "print(out)\n")
        out = self.exec(a, [sys.executable, "-c", code, self.ips[b], str(port)], timeout=30).stdout.strip()
        try:
            return float(out)
        except ValueError:  # cut (or an open port: not a measure)
            return None

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
        if self.switch is not None:
            self.switch.kill()
            self.switch.wait()
            self.switch = None
        for i, ns in enumerate(self.namespaces):
            _kill_inside(ns)
            ip("link", "del", f"{self.tag}v{i}", check=False)
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(ns in ip("netns", "list", check=False).stdout
                                                  for ns in self.namespaces):
            time.sleep(0.1)


def netem_available() -> bool:
    """Does this kernel have sch_netem (and is `tc` installed)? Tried on a throwaway veth pair."""
    if shutil.which("tc") is None:
        return False
    a, b = f"{PREFIX}{os.getpid()}qa", f"{PREFIX}{os.getpid()}qb"
    if ip("link", "add", a, "type", "veth", "peer", "name", b, check=False).returncode != 0:
        return False
    try:
        return subprocess.run(["tc", "qdisc", "add", "dev", a, "root", "netem", "delay", "1ms"],
                              capture_output=True).returncode == 0
    finally:
        ip("link", "del", a, check=False)


TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


class DelaySwitch:
    """A learning Ethernet switch over TAP devices: a frame from port p leaves delay[p] seconds later,
    in order, like `tc netem delay` on that host's egress (a full output queue drops, like a link)."""

    def __init__(self, taps: list[str], delays: list[float]):
        self.fds = []
        for name in taps:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
            self.fds.append(fd)
        self.delays = delays
        self.where: dict[bytes, int] = {}  # MAC -> port
        self.due: list[tuple[float, int, int, bytes]] = []  # (time, seq, in port, frame)
        self.seq = 0

    def _forward(self, port: int, frame: bytes) -> None:
        dst, src = frame[0:6], frame[6:12]
        self.where[src] = port
        out = self.where.get(dst)
        targets = [out] if out is not None and not dst[0] & 1 else [p for p in range(len(self.fds)) if p != port]
        for p in targets:
            if p != port:
                try:
                    os.write(self.fds[p], frame)
                except OSError:  # queue full or the interface is down: dropped, as on a wire
                    pass

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        for port, fd in enumerate(self.fds):
            sel.register(fd, selectors.EVENT_READ, port)
        parent = os.getppid()
        while sel.get_map() and os.getppid() == parent:  # ends with its ports, or when the test dies
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, _, port, frame = heapq.heappop(self.due)
                self._forward(port, frame)
            timeout = min(1.0, max(0.0, self.due[0][0] - time.monotonic())) if self.due else 1.0
            for key, _ in sel.select(timeout):
                port = key.data
                for _ in range(64):
                    try:
                        frame = os.read(key.fd, 65536)
                    except BlockingIOError:
                        break
                    except OSError:  # the interface went away with its namespace
                        sel.unregister(key.fd)
                        break
                    if len(frame) < 14:
                        continue
                    if self.delays[port] <= 0:
                        self._forward(port, frame)
                    else:
                        self.seq += 1
                        heapq.heappush(self.due, (time.monotonic() + self.delays[port], self.seq, port, frame))


if __name__ == "__main__" and sys.argv[1:2] == ["switch"]:
    # python -m tests.chain.netns switch DELAY_MS ROOT_TAP HOST_TAP...: the root port forwards at once
    ms, root, *hosts = sys.argv[2:]
    switch = DelaySwitch([root, *hosts], [0.0] + [float(ms) / 1000] * len(hosts))
    print("ready", flush=True)
    switch.run()
