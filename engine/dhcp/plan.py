"""What the DHCP servers are told, derived from the rows: the subnets (the boot network of
the settings and the networks of the IP groups) and a reservation for every network card
with an address: a cloud appliance's assigned addresses on its resource, else the
resource's own IP.

Every value from the database is checked here; a row that does not pass gets no
reservation (and a note saying which row and why, in our own words), never a line in a
server's configuration.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.cloud.models import CloudAppliance, IpAddress, IpGroup
from engine.datacenter.models import Resource, VirtualizationKind, normalize_mac
from engine.datacenter.services import nic_macs
from engine.dhcp.render import DhcpPlan, Reservation, Subnet
from engine.dhcp.settings import DhcpSettings, dns_name

BOOT_SUBNET_ID = 1
IP_GROUP_SUBNET_BASE = 1000


def _address(value: Any) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(str(value).strip())
    except ValueError:
        return None


def _group_subnet(group: IpGroup) -> Subnet | None:
    try:
        network = ipaddress.IPv4Network(f"{group.network.strip()}/{group.netmask.strip()}",
                                        strict=True)
    except ValueError:
        return None
    routers = tuple(a for a in [_address(group.gateway)] if a is not None)
    dns = tuple(a for a in (_address(group.dns1), _address(group.dns2)) if a is not None)
    return Subnet(id=IP_GROUP_SUBNET_BASE + group.id, network=network, routers=routers,
                  dns=dns, domain=dns_name(group.domain) if group.domain else None)


def subnets(db: Session, settings: DhcpSettings, skipped: list[str]) -> list[Subnet]:
    """The boot network first, then every IP group's network (one equal to the boot
    network adds its options to it; one overlapping another is left out)."""
    result: list[Subnet] = []
    boot = settings.boot_network
    if boot is not None:
        result.append(Subnet(id=BOOT_SUBNET_ID, network=boot.network, first=boot.first,
                             last=boot.last, routers=boot.routers, dns=boot.dns,
                             domain=boot.domain))
    for group in db.scalars(select(IpGroup).order_by(IpGroup.id)):
        subnet = _group_subnet(group)
        if subnet is None:
            skipped.append(f"IP group {group.id}: its network and netmask are not an IPv4 "
                           "network")
            continue
        same = next((s for s in result if s.network == subnet.network), None)
        if same is not None:
            same.routers = same.routers or subnet.routers
            same.dns = same.dns or subnet.dns
            same.domain = same.domain or subnet.domain
            continue
        if any(s.network.overlaps(subnet.network) for s in result):
            skipped.append(f"IP group {group.id}: {subnet.network} overlaps another subnet")
            continue
        result.append(subnet)
    return result


def _assigned_addresses(db: Session) -> dict[int, list[str]]:
    """Resource id -> the addresses assigned to the cloud appliance running on it."""
    rows = db.execute(
        select(CloudAppliance.resource_id, IpAddress.address)
        .join(CloudAppliance, IpAddress.cloud_appliance_id == CloudAppliance.id)
        .where(CloudAppliance.resource_id.is_not(None))
        .order_by(IpAddress.id))
    assigned: dict[int, list[str]] = {}
    for resource_id, address in rows:
        assigned.setdefault(resource_id, []).append(address)
    return assigned


def _macs(resource: Resource) -> list[str] | None:
    try:
        mac = normalize_mac(resource.mac)
    except ValueError:
        return None
    if resource.kind is VirtualizationKind.VM:
        return list(nic_macs(mac, resource.nics or 1))  # the VM's cards, as it was made
    return [mac]


def build_plan(db: Session, settings: DhcpSettings) -> DhcpPlan:
    """The plan every renderer writes (``engine.dhcp.render``)."""
    plan = DhcpPlan(ipxe_url=settings.ipxe_url, boot_file=settings.boot_file,
                    next_server=settings.next_server, interface=settings.interface)
    plan.subnets = subnets(db, settings, plan.skipped)
    assigned = _assigned_addresses(db)
    seen_macs: set[str] = set()
    seen_addresses: set[ipaddress.IPv4Address] = set()
    seen_names: set[str] = set()
    for resource in db.scalars(select(Resource).order_by(Resource.id)):
        addresses = assigned.get(resource.id) or ([resource.ip] if resource.ip else [])
        if not addresses:
            continue
        macs = _macs(resource)
        if macs is None:
            plan.skipped.append(f"resource {resource.id}: its MAC is not a MAC address")
            continue
        hostname = dns_name(resource.hostname) or dns_name(resource.name)
        for index, (mac, value) in enumerate(zip(macs, addresses, strict=False)):
            where = f"resource {resource.id}" + (f" card {index + 1}" if index else "")
            address = _address(value)
            if address is None:
                plan.skipped.append(f"{where}: its address is not an IPv4 address")
                continue
            subnet = next((s for s in plan.subnets if address in s.network
                           and address not in (s.network.network_address,
                                               s.network.broadcast_address)), None)
            if subnet is None:
                plan.skipped.append(f"{where}: {address} is outside every subnet served")
                continue
            if mac in seen_macs or address in seen_addresses:
                plan.skipped.append(f"{where}: {mac} or {address} is reserved already")
                continue
            name = hostname if index == 0 and hostname not in seen_names else None
            seen_macs.add(mac)
            seen_addresses.add(address)
            if name:
                seen_names.add(name)
            key = f"qrm-resource-{resource.id}" + (f"-nic{index + 1}" if index else "")
            subnet.reservations.append(Reservation(key=key, mac=mac, address=address,
                                                   hostname=name))
    return plan
