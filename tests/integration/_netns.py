"""Simulated hosts for the integration tests: Linux network namespaces on a private bridge.

:func:`open_network` makes, in the root namespace, one bridge with the first address of a
private ``10.x.y.0/24`` that no route or address of this machine covers, and per host one
network namespace joined to the bridge by a veth pair, with its own address on that /24 and
its loopback up. :meth:`Host.command` runs a program inside the host's network namespace
and in a UTS namespace of its own whose hostname is the host's name, so the program finds
its host name (``socket.gethostname()``) and its addresses as on a machine of its own.

It needs root (``ip netns add``), ``ip`` and ``unshare``; it probes by trying: where
anything fails, it takes back what it made and says why, and a test falls back to
simulating hosts some other way. ``TEST_NETNS=0`` forces that fallback (to test
it as root).

Every name carries :data:`PREFIX` and the pid of the test process (``ttf1234b``,
``ttf1234n0``, ...; at most 15 characters, the kernel's limit for interface names), so
concurrent runs keep apart; :func:`remove_stale` deletes those of this pid and of pids that
are gone, so a run killed midway leaves nothing that troubles the next one.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple

__all__ = ["PREFIX", "Host", "Network", "open_network", "remove_stale"]

#: The start of every interface and namespace name this module makes.
PREFIX = "ttf"

#: The names this module makes: PREFIX, a pid, then b (bridge), nN (namespace), hN (the
#: veth end on the bridge) or pN (its peer inside namespace N).
_NAME = re.compile(rf"^{PREFIX}(\d+)(b|[nhp]\d+)$")

#: Set to 0 to take the fallback path even where namespaces could be made. (Not named
#: ``TASKTRACE_*``: the tests' conftest clears those before every test.)
ENV_SWITCH = "TEST_NETNS"


def _tool(name: str) -> Optional[str]:
    """``name`` on PATH or in the sbin folders that a non-login PATH often lacks."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def _run(*argv: str) -> str:
    """Run a command; its stdout, or :class:`RuntimeError` with its stderr."""
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


@dataclass(frozen=True)
class Host:
    """One simulated host: its name (the hostname its programs see), namespace, address."""

    name: str
    netns: str
    address: str
    ip: str
    unshare: str

    def command(self, argv: Iterable[str]) -> List[str]:
        """``argv`` run inside this host's network namespace and a new UTS namespace whose
        hostname is :attr:`name`. The program replaces each wrapper in turn (``ip netns
        exec``, ``unshare`` and ``sh`` all exec it), so the process started is the program's
        own: signalling it signals the program."""
        return [
            self.ip,
            "netns",
            "exec",
            self.netns,
            self.unshare,
            "--uts",
            "/bin/sh",
            "-c",
            'hostname "$0" && exec "$@"',
            self.name,
            *argv,
        ]


@dataclass
class Network:
    """A bridge in the root namespace and the hosts joined to it; :meth:`close` removes all."""

    bridge: str
    #: The bridge's address: where a server in the root namespace listens for the hosts.
    gateway: str
    hosts: List[Host] = field(default_factory=list)
    ip: str = "ip"

    def close(self) -> None:
        """Delete the veths (each takes its peer along), the namespaces and the bridge.
        Deleting a namespace ends no process: the caller stops its own first."""
        # A veth goes with either end: deleted here, it goes even from a namespace that a
        # leftover process still holds (where deleting the name alone would keep it).
        for index in range(len(self.hosts)):
            _quiet(self.ip, "link", "delete", self._veth(index))
        for host in self.hosts:
            _quiet(self.ip, "netns", "delete", host.netns)
        _quiet(self.ip, "link", "delete", self.bridge)

    def _veth(self, index: int) -> str:
        return f"{self.bridge[:-1]}h{index}"

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _quiet(*argv: str) -> None:
    """Run a clean-up command whose failure (already gone) does not matter."""
    subprocess.run(argv, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(ip: str, pid: int) -> None:
    """Delete the namespaces and links of this module's names whose pid is ``pid`` or a
    process that is gone: what a run killed before its clean-up left behind."""

    def stale(name: str) -> bool:
        match = _NAME.match(name)
        if match is None:
            return False
        owner = int(match.group(1))
        return owner == pid or not _alive(owner)

    for entry in json.loads(_run(ip, "-j", "netns", "list") or "[]"):
        if stale(entry.get("name", "")):
            _quiet(ip, "netns", "delete", entry["name"])
    for entry in json.loads(_run(ip, "-j", "link", "show") or "[]"):
        if stale(entry.get("ifname", "")):
            _quiet(ip, "link", "delete", entry["ifname"])


def _taken(ip: str) -> List[ipaddress.IPv4Network]:
    """Every IPv4 network a route (any table, the default route aside) or address covers."""
    nets: List[ipaddress.IPv4Network] = []
    for entry in json.loads(_run(ip, "-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = entry.get("dst", "default")
        if dst != "default":
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(_run(ip, "-j", "-4", "addr", "show") or "[]"):
        for info in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", False))
    return nets


def _free_subnet(ip: str, pid: int) -> ipaddress.IPv4Network:
    """A ``10.x.y.0/24`` that overlaps nothing here; where the search starts depends on the
    pid, so that concurrent runs are unlikely to reach for the same one."""
    taken = _taken(ip)
    start = pid % (200 * 256)
    for step in range(200 * 256):
        n = (start + step) % (200 * 256)
        candidate = ipaddress.IPv4Network(f"10.{50 + n // 256}.{n % 256}.0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24")


def _unavailable() -> Optional[str]:
    """Why namespaces cannot be tried at all here (None: try)."""
    if os.environ.get(ENV_SWITCH) == "0":
        return f"{ENV_SWITCH}=0"
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "unshare"):
        if _tool(tool) is None:
            return f"no {tool} command"
    if not os.path.exists("/bin/sh"):
        return "no /bin/sh"
    return None


def _reachable(network: Network) -> None:
    """Check, from inside each host, that a TCP server on the gateway accepts connections
    and that the host sees its own name; :class:`RuntimeError` if not."""
    with socket.socket() as server:
        server.bind((network.gateway, 0))
        server.listen(len(network.hosts))
        port = server.getsockname()[1]
        for host in network.hosts:
            probe = (
                "import socket, sys; "
                f"socket.create_connection(({network.gateway!r}, {port}), timeout=5).close(); "
                "sys.stdout.write(socket.gethostname())"
            )
            seen = _run(*host.command([sys.executable, "-I", "-c", probe]))
            if seen != host.name:
                raise RuntimeError(f"{host.netns} sees hostname {seen!r}, not {host.name!r}")
            server.accept()[0].close()


def open_network(names: List[str]) -> Tuple[Optional[Network], str]:
    """A bridge and one namespace per name in ``names``, each host reachable to the gateway.

    Returns:
        ``(network, "")``, or ``(None, why)`` where namespaces cannot be made here; whatever
        was made on the way is taken back. The caller closes the network.
    """
    why = _unavailable()
    if why:
        return None, why
    ip, unshare = _tool("ip"), _tool("unshare")
    assert ip is not None and unshare is not None
    pid = os.getpid()
    base = f"{PREFIX}{pid}"
    network: Optional[Network] = None
    try:
        remove_stale(ip, pid)
        subnet = _free_subnet(ip, pid)
        addresses = list(subnet.hosts())
        network = Network(bridge=f"{base}b", gateway=str(addresses[0]), ip=ip)
        _run(ip, "link", "add", network.bridge, "type", "bridge")
        _run(ip, "addr", "add", f"{network.gateway}/{subnet.prefixlen}", "dev", network.bridge)
        _run(ip, "link", "set", network.bridge, "up")
        for index, name in enumerate(names):
            host = Host(name, f"{base}n{index}", str(addresses[10 + index]), ip, unshare)
            outside, inside = f"{base}h{index}", f"{base}p{index}"
            _run(ip, "netns", "add", host.netns)
            network.hosts.append(host)
            _run(ip, "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run(ip, "link", "set", inside, "netns", host.netns)
            _run(ip, "link", "set", outside, "master", network.bridge)
            _run(ip, "link", "set", outside, "up")
            _run(ip, "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", inside)
            _run(ip, "-n", host.netns, "link", "set", inside, "up")
            _run(ip, "-n", host.netns, "link", "set", "lo", "up")
        _reachable(network)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        if network is not None:
            network.close()
        return None, f"{type(exc).__name__}: {exc}"
    return network, ""
