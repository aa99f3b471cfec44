"""Fixtures of the DHCP tests: settings for a boot network and a few resources."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from engine.datacenter.models import VirtualizationKind
from engine.datacenter.services import DatacenterService
from engine.security import Actor

ACTOR = Actor.admin("root-admin")
BOOT_SETTINGS = {
    "qrm.boot.url": "http://10.77.0.1:6543",
    "qrm.dhcp.subnet": "10.77.0.0/24",
    "qrm.dhcp.range": "10.77.0.100-10.77.0.199",
    "qrm.dhcp.gateway": "10.77.0.1",
    "qrm.dhcp.dns": "10.77.0.1, 10.77.0.2",
    "qrm.dhcp.domain": "boot.example.org",
    "qrm.dhcp.next_server": "10.77.0.1",
}


def tool(name: str) -> str:
    """The path of a server's binary; installed by scripts/install-system-deps.sh (never
    skipped: a missing tool is a failure)."""
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        path = shutil.which(name, path=directory)
        if path:
            return path
    path = shutil.which(name)
    assert path, f"{name} is missing: run scripts/install-system-deps.sh as root"
    return path


def add_resource(request: Any, mac: str, *, ip: str | None = None, name: str = "",
                 hostname: str = "", kind: VirtualizationKind = VirtualizationKind.PHYSICAL):
    resource = request.find_service(DatacenterService).add_resource(
        mac=mac, kind=kind, virtualization_type="physical", actor=ACTOR, name=name, ip=ip)
    resource.hostname = hostname
    request.dbsession.flush()
    return resource


@pytest.fixture
def dhcp_settings() -> dict[str, str]:
    return dict(BOOT_SETTINGS)
