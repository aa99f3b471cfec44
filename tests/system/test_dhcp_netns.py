"""The generated DHCP configuration served for real: two network namespaces of the test's
own joined by a veth pair, the engine's configuration (a resource with a reservation, an IP
pool on the boot network) for dnsmasq and for ISC dhcpd, the server in the foreground in one
namespace, and busybox's ``udhcpc`` in the other: the resource's card gets its reserved
address, its host name, the pool's router, DNS servers and domain and the boot file (iPXE:
the boot script's URL); an unknown card gets an address of the dynamic range.

Nothing leaves the namespaces (the addresses are private and exist only there); the
namespaces and the server are removed in teardown, also when the test fails, and the
server's log is attached to a failure."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.cloud.models import IpGroup
from engine.dhcp.services import DhcpService
from tests.unit.dhcp.conftest import add_resource

pytestmark = pytest.mark.heavy

RESERVED_MAC, UNKNOWN_MAC = "52:54:00:77:00:11", "52:54:00:77:00:99"
SERVER_ADDRESS = "10.77.0.1"
SETTINGS = {
    "qrm.boot.url": "http://10.77.0.1:6543",
    "qrm.dhcp.subnet": "10.77.0.0/24",
    "qrm.dhcp.range": "10.77.0.100-10.77.0.199",
    "qrm.dhcp.next_server": SERVER_ADDRESS,
}
IPXE_URL = "http://10.77.0.1:6543/boot/ipxe?mac=${net0/mac}"
#: option 77 (user class) as iPXE sends it: the bytes "iPXE"
IPXE_USER_CLASS = "0x4d:" + b"iPXE".hex()
#: udhcpc's event script: the variables of a lease, one per line
PRINT_ENV = """#!{busybox} sh
case "$1" in
    bound|renew)
        for name in ip subnet router dns domain hostname siaddr boot_file serverid; do
            eval "echo $name=\\$$name"
        done > "{out}" ;;
esac
exit 0
"""


def tools() -> dict[str, str]:
    found = {name: shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
             for name in ("ip", "busybox", "dnsmasq", "dhcpd")}
    problems = [f"{name} is missing" for name, path in found.items() if path is None]
    if os.geteuid() != 0:
        problems.append("network namespaces need root (CAP_NET_ADMIN)")
    if problems:
        message = ("; ".join(problems) + ": install the packages with "
                   "scripts/install-system-deps.sh and run as root")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return {name: str(path) for name, path in found.items()}


def run(*argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, check=False, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}{result.stdout}"
    return result


@dataclasses.dataclass
class Link:
    """Two namespaces of this test run joined by a veth pair."""

    server_ns: str
    client_ns: str
    server_dev: str
    client_dev: str
    ip: str

    def client(self, *argv: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.ip, "netns", "exec", self.client_ns, *argv], check=False,
                              capture_output=True, text=True, timeout=timeout)

    def set_client_mac(self, mac: str) -> None:
        run(self.ip, "-n", self.client_ns, "link", "set", self.client_dev, "down")
        run(self.ip, "-n", self.client_ns, "link", "set", self.client_dev, "address", mac)
        run(self.ip, "-n", self.client_ns, "link", "set", self.client_dev, "up")


@pytest.fixture
def link() -> Iterator[Link]:
    ip = tools()["ip"]
    tag = f"{os.getpid() % 10000:04d}{secrets.token_hex(2)}"
    link = Link(server_ns=f"qrm-dhcp-{tag}-srv", client_ns=f"qrm-dhcp-{tag}-cli",
                server_dev=f"qd{tag}s", client_dev=f"qd{tag}c", ip=ip)
    try:
        run(ip, "netns", "add", link.server_ns)
        run(ip, "netns", "add", link.client_ns)
        run(ip, "link", "add", link.server_dev, "type", "veth", "peer", "name", link.client_dev)
        run(ip, "link", "set", link.server_dev, "netns", link.server_ns)
        run(ip, "link", "set", link.client_dev, "netns", link.client_ns)
        run(ip, "-n", link.server_ns, "addr", "add", f"{SERVER_ADDRESS}/24", "dev",
            link.server_dev)
        run(ip, "-n", link.server_ns, "link", "set", link.server_dev, "up")
        run(ip, "-n", link.server_ns, "link", "set", "lo", "up")
        link.set_client_mac(RESERVED_MAC)
        yield link
    finally:
        # a namespace's removal takes its end of the veth pair (and so both ends) with it
        subprocess.run([ip, "link", "del", link.server_dev], check=False, capture_output=True)
        for namespace in (link.server_ns, link.client_ns):
            subprocess.run([ip, "netns", "del", namespace], check=False, capture_output=True)
        left = subprocess.run([ip, "netns", "list"], check=False, capture_output=True,
                              text=True).stdout
        assert link.server_ns not in left, left
        assert link.client_ns not in left, left


@pytest.fixture
def datacenter(pyramid_request: Any) -> Any:
    """A resource with an address on the boot network (a reservation), and an IP pool of
    that network giving its router, DNS servers and domain."""
    pyramid_request.dbsession.add(IpGroup(name="boot-lan", network="10.77.0.0",
                                          netmask="255.255.255.0", gateway=SERVER_ADDRESS,
                                          dns1="10.77.0.2", dns2="10.77.0.3",
                                          domain="boot.example.org"))
    add_resource(pyramid_request, RESERVED_MAC, ip="10.77.0.11", hostname="node11")
    add_resource(pyramid_request, "52:54:00:77:00:12", ip="10.77.0.12", hostname="node12")
    pyramid_request.dbsession.flush()
    return pyramid_request


class Server:
    """A DHCP server in the foreground in the server namespace, a child of the test."""

    def __init__(self, link: Link, argv: list[str], log: pathlib.Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen([link.ip, "netns", "exec", link.server_ns, *argv],
                                            stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT)

    def wait_ready(self, marker: str, within: float = 10) -> None:
        deadline = time.monotonic() + within
        while marker not in self.text():
            assert self.process.poll() is None, f"the DHCP server ended:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {marker!r} in its log:\n{self.text()}"
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_dnsmasq(link: Link, config: pathlib.Path, tmp: pathlib.Path) -> Server:
    server = Server(link, [tools()["dnsmasq"], "--keep-in-foreground", "--log-facility=-",
                           f"--conf-file={config}", f"--dhcp-leasefile={tmp / 'leases'}",
                           f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root",
                           # no ping of a free address before it is offered (3 s of waiting
                           # for the unknown card; a site's dnsmasq keeps it)
                           "--no-ping"],
                    tmp / "dnsmasq.log")
    server.wait_ready("DHCP, IP range")
    return server


def start_dhcpd(link: Link, config: pathlib.Path, tmp: pathlib.Path) -> Server:
    leases = tmp / "dhcpd.leases"
    leases.touch()
    server = Server(link, [tools()["dhcpd"], "-4", "-f", "-d", "-cf", str(config),
                           "-lf", str(leases), "-pf", str(tmp / "dhcpd.pid"), link.server_dev],
                    tmp / "dhcpd.log")
    server.wait_ready("Sending on   LPF/")
    return server


SERVERS = {"dnsmasq": start_dnsmasq, "dhcpd": start_dhcpd}


def lease(link: Link, tmp: pathlib.Path, name: str, *options: str) -> dict[str, str]:
    """Run udhcpc once in the client namespace; the lease's variables."""
    busybox = tools()["busybox"]
    out = tmp / f"{name}.env"
    script = tmp / f"{name}.sh"
    script.write_text(PRINT_ENV.format(busybox=busybox, out=out))
    script.chmod(0o755)
    result = link.client(busybox, "udhcpc", "-i", link.client_dev, "-f", "-q", "-n",
                         "-t", "5", "-T", "1", "-s", str(script), *options)
    assert result.returncode == 0, f"udhcpc got no lease:\n{result.stderr}{result.stdout}"
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_a_client_gets_its_reservation_and_boot_file_in_a_namespace(
        request, datacenter, link, tmp_path, server):
    config = tmp_path / f"{server}.conf"
    settings = dict(SETTINGS, **{"qrm.dhcp.interface": link.server_dev})
    config.write_text(DhcpService(datacenter.dbsession, settings=settings).config_text(server))
    started = time.monotonic()
    dhcp = SERVERS[server](link, config, tmp_path)
    try:
        plain = lease(link, tmp_path, "pxe")
        assert plain == {
            "ip": "10.77.0.11", "subnet": "255.255.255.0", "router": SERVER_ADDRESS,
            "dns": "10.77.0.2 10.77.0.3", "domain": "boot.example.org", "hostname": "node11",
            "siaddr": SERVER_ADDRESS, "boot_file": "pxelinux.0", "serverid": SERVER_ADDRESS}
        ipxe = lease(link, tmp_path, "ipxe", "-x", IPXE_USER_CLASS)
        assert (ipxe["ip"], ipxe["hostname"], ipxe["boot_file"]) == (
            "10.77.0.11", "node11", IPXE_URL)
        link.set_client_mac(UNKNOWN_MAC)
        unknown = lease(link, tmp_path, "unknown")
        last = int(unknown["ip"].rsplit(".", 1)[1])
        assert unknown["ip"].startswith("10.77.0.")
        assert 100 <= last <= 199, unknown
        assert unknown["hostname"] != "node11"
        assert unknown["boot_file"] == "pxelinux.0"
        print(f"{server}: three leases in {time.monotonic() - started:.2f} s")
    except BaseException:
        request.node.add_report_section("call", f"{server} log", dhcp.text())
        request.node.add_report_section("call", f"{server} configuration", config.read_text())
        raise
    finally:
        dhcp.stop()
