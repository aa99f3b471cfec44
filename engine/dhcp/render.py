"""The DHCP configuration as text, for ISC dhcpd, Kea (JSON) and dnsmasq.

Everything rendered has been checked before it gets here (``engine.dhcp.plan``): MACs in
canonical form, addresses parsed by ``ipaddress``, host and domain names matching RFC 1123,
the boot URL and file free of quotes, white space, commas and comment characters. The
renderers check once more (``_safe``) so that a row can never add a line, a brace or an
option of its own, whatever changes upstream.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re

from engine.dhcp.settings import LEASE_SECONDS, MAX_LEASE_SECONDS

HEADER = ("QRM Cloud: generated from the resources and IP groups; do not edit, every change "
          "rewrites this file")
#: what may appear inside any value we write (quoted or not)
SAFE_RE = re.compile(r"^[A-Za-z0-9._\-:/?=&%~@!+$\[\]{}]*$")


def _safe(value: object) -> str:
    text = str(value)
    if not SAFE_RE.match(text) or text.count("{") != text.count("}"):
        raise ValueError(f"refusing to write {text!r} into a DHCP configuration")
    return text


@dataclasses.dataclass(frozen=True)
class Reservation:
    """A fixed address for one network card."""

    #: ``qrm-resource-7`` (first card) or ``qrm-resource-7-nic2``
    key: str
    mac: str
    address: ipaddress.IPv4Address
    hostname: str | None = None


@dataclasses.dataclass
class Subnet:
    """A subnet served: the boot network (``qrm.dhcp.subnet``) or an IP group's network."""

    #: stable across regenerations (Kea keeps leases by subnet id): 1 for the boot
    #: network, 1000 + the IP group's id otherwise
    id: int
    network: ipaddress.IPv4Network
    first: ipaddress.IPv4Address | None = None
    last: ipaddress.IPv4Address | None = None
    routers: tuple[ipaddress.IPv4Address, ...] = ()
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    domain: str | None = None
    reservations: list[Reservation] = dataclasses.field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"qrm-subnet-{self.id}"


@dataclasses.dataclass
class DhcpPlan:
    """What every server's configuration says, independent of its syntax."""

    ipxe_url: str
    boot_file: str
    next_server: ipaddress.IPv4Address | None = None
    interface: str | None = None
    subnets: list[Subnet] = dataclasses.field(default_factory=list)
    #: why some rows got no reservation (plain words and numbers, no row text)
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def reservation_count(self) -> int:
        return sum(len(subnet.reservations) for subnet in self.subnets)


# -- ISC dhcpd --------------------------------------------------------------------------------
def _dhcpd_string(value: object) -> str:
    return '"' + _safe(value) + '"'


def render_dhcpd(plan: DhcpPlan) -> str:
    lines = [f"# {HEADER}", *(f"# skipped: {_safe_note(note)}" for note in plan.skipped),
             "authoritative;", "ddns-update-style none;",
             f"default-lease-time {LEASE_SECONDS};", f"max-lease-time {MAX_LEASE_SECONDS};",
             "allow booting;", "allow bootp;"]
    if plan.next_server is not None:
        lines.append(f"next-server {plan.next_server};")
    lines += [
        "# iPXE (user class \"iPXE\") fetches its script over HTTP; plain PXE ROMs get the",
        "# boot file over TFTP",
        'if exists user-class and option user-class = "iPXE" {',
        f"  filename {_dhcpd_string(plan.ipxe_url)};",
        "} else {",
        f"  filename {_dhcpd_string(plan.boot_file)};",
        "}",
    ]
    for subnet in plan.subnets:
        network = subnet.network
        lines += ["", f"subnet {network.network_address} netmask {network.netmask} {{"]
        if subnet.first is not None:
            lines.append(f"  range {subnet.first} {subnet.last};")
        lines.append(f"  option subnet-mask {subnet.network.netmask};")
        lines.append(f"  option broadcast-address {subnet.network.broadcast_address};")
        if subnet.routers:
            lines.append(f"  option routers {', '.join(map(str, subnet.routers))};")
        if subnet.dns:
            lines.append(f"  option domain-name-servers {', '.join(map(str, subnet.dns))};")
        if subnet.domain:
            lines.append(f"  option domain-name {_dhcpd_string(subnet.domain)};")
        lines.append("}")
    for subnet in plan.subnets:
        for reservation in subnet.reservations:
            lines += ["", f"host {_safe(reservation.key)} {{",
                      f"  hardware ethernet {_safe(reservation.mac)};",
                      f"  fixed-address {reservation.address};"]
            if reservation.hostname:
                lines.append(f"  option host-name {_dhcpd_string(reservation.hostname)};")
            lines.append("}")
    return "\n".join(lines) + "\n"


def _safe_note(note: str) -> str:
    # notes are made of numbers, addresses and our own words; keep them on one line
    return re.sub(r"[^A-Za-z0-9 .,:/()_\-]", "_", note)


# -- Kea --------------------------------------------------------------------------------------
def _kea_options(subnet: Subnet) -> list[dict]:
    options = []
    if subnet.routers:
        options.append({"name": "routers", "data": ", ".join(map(str, subnet.routers))})
    if subnet.dns:
        options.append({"name": "domain-name-servers",
                        "data": ", ".join(map(str, subnet.dns))})
    if subnet.domain:
        options.append({"name": "domain-name", "data": _safe(subnet.domain)})
    return options


def _kea_subnet(subnet: Subnet) -> dict:
    entry: dict = {"id": subnet.id, "subnet": str(subnet.network)}
    if subnet.first is not None:
        entry["pools"] = [{"pool": f"{subnet.first} - {subnet.last}"}]
    options = _kea_options(subnet)
    if options:
        entry["option-data"] = options
    reservations = []
    for reservation in subnet.reservations:
        item = {"hw-address": _safe(reservation.mac), "ip-address": str(reservation.address)}
        if reservation.hostname:
            item["hostname"] = _safe(reservation.hostname)
        reservations.append(item)
    if reservations:
        entry["reservations"] = reservations
    return entry


def render_kea(plan: DhcpPlan) -> str:
    dhcp4: dict = {
        "interfaces-config": {"interfaces": [_safe(plan.interface) if plan.interface else "*"]},
        "lease-database": {"type": "memfile", "lfc-interval": 3600},
        "authoritative": True,
        "valid-lifetime": LEASE_SECONDS,
        "max-valid-lifetime": MAX_LEASE_SECONDS,
        "boot-file-name": _safe(plan.boot_file),
        # iPXE (user class "iPXE", option 77) fetches its script over HTTP
        "client-classes": [{"name": "ipxe", "test": "option[77].hex == 'iPXE'",
                            "boot-file-name": _safe(plan.ipxe_url)}],
        "subnet4": [_kea_subnet(subnet) for subnet in plan.subnets],
        "user-context": {"generated-by": HEADER,
                         "skipped": [_safe_note(note) for note in plan.skipped]},
    }
    if plan.next_server is not None:
        dhcp4["next-server"] = str(plan.next_server)
    return json.dumps({"Dhcp4": dhcp4}, indent=2) + "\n"


# -- dnsmasq ----------------------------------------------------------------------------------
def _dnsmasq_lease() -> str:
    return f"{LEASE_SECONDS}s"


def render_dnsmasq(plan: DhcpPlan) -> str:
    lines = [f"# {HEADER}", *(f"# skipped: {_safe_note(note)}" for note in plan.skipped),
             "# DHCP only: no DNS service", "port=0", "dhcp-authoritative", "log-dhcp"]
    if plan.interface:
        lines += [f"interface={_safe(plan.interface)}", "bind-interfaces"]
    for subnet in plan.subnets:
        mask = subnet.network.netmask
        if subnet.first is not None:
            lines.append(f"dhcp-range=set:{subnet.tag},{subnet.first},{subnet.last},{mask},"
                         f"{_dnsmasq_lease()}")
        else:  # reservations only
            lines.append(f"dhcp-range=set:{subnet.tag},{subnet.network.network_address},"
                         f"static,{mask},{_dnsmasq_lease()}")
        if subnet.routers:
            lines.append(f"dhcp-option=tag:{subnet.tag},option:router,"
                         + ",".join(map(str, subnet.routers)))
        if subnet.dns:
            lines.append(f"dhcp-option=tag:{subnet.tag},option:dns-server,"
                         + ",".join(map(str, subnet.dns)))
        if subnet.domain:
            lines.append(f"dhcp-option=tag:{subnet.tag},option:domain-name,"
                         f"{_safe(subnet.domain)}")
    server = f",,{plan.next_server}" if plan.next_server is not None else ""
    lines += [
        "# iPXE (user class \"iPXE\") fetches its script over HTTP; plain PXE ROMs get the",
        "# boot file over TFTP",
        "dhcp-userclass=set:ipxe,iPXE",
        f"dhcp-boot=tag:ipxe,{_safe(plan.ipxe_url)}",
        f"dhcp-boot=tag:!ipxe,{_safe(plan.boot_file)}{server}",
    ]
    for subnet in plan.subnets:
        for reservation in subnet.reservations:
            host = f"dhcp-host={_safe(reservation.mac)},{reservation.address}"
            if reservation.hostname:
                host += f",{_safe(reservation.hostname)}"
            lines.append(host)
    return "\n".join(lines) + "\n"


RENDERERS = {"dhcpd": render_dhcpd, "kea": render_kea, "dnsmasq": render_dnsmasq}


def render(plan: DhcpPlan, server: str) -> str:
    return RENDERERS[server](plan)
