"""The DHCP settings (ini ``qrm.dhcp.*``), checked once: a value that would not fit the
generated file is refused here, with the setting's name, instead of breaking the server."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import shlex
from collections.abc import Mapping
from typing import Any

from engine.errors import ValidationError
from engine.i18n import _

SERVERS = ("dhcpd", "kea", "dnsmasq")
#: the iPXE script of a booting machine, relative to the boot URL; iPXE expands
#: ``${net0/mac}`` itself before it fetches the URL
IPXE_SCRIPT = "/boot/ipxe?mac=${net0/mac}"
DEFAULT_BOOT_FILE = "pxelinux.0"
#: leases of the dynamic range of the boot network (reservations are fixed anyway)
LEASE_SECONDS = 21600
MAX_LEASE_SECONDS = 43200
#: a URL that every server's syntax carries unquoted or in a plain string: no white space,
#: quotes, backslashes, commas (dnsmasq's separator), ``#`` (a comment), ``;`` or braces
URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/\-+=&?@!:]*)?$")
FILE_RE = re.compile(r"^[A-Za-z0-9._/\-]{1,128}$")
INTERFACE_RE = re.compile(r"^[A-Za-z0-9._\-]{1,15}$")
LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
#: host and domain names (RFC 1123), lower case
DNS_NAME_RE = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")


def dns_name(value: Any) -> str | None:
    """``value`` as a lower-case host or domain name, or None when it is not one."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower().rstrip(".")
    return name if DNS_NAME_RE.match(name) else None


def _invalid(setting: str, value: Any, message: Any) -> ValidationError:
    return ValidationError(message, field=setting)


def _address(settings: Mapping[str, Any], key: str) -> ipaddress.IPv4Address | None:
    value = str(settings.get(key) or "").strip()
    if not value:
        return None
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise _invalid(key, value, _("${setting} is not an IPv4 address: ${value}",
                                     mapping={"setting": key, "value": repr(value)})) from None


def _addresses(settings: Mapping[str, Any], key: str) -> tuple[ipaddress.IPv4Address, ...]:
    values = str(settings.get(key) or "").replace(",", " ").split()
    result = []
    for value in values:
        try:
            result.append(ipaddress.IPv4Address(value))
        except ValueError:
            raise _invalid(key, value, _("${setting} is not an IPv4 address: ${value}",
                                         mapping={"setting": key,
                                                  "value": repr(value)})) from None
    return tuple(result)


@dataclasses.dataclass(frozen=True)
class BootNetwork:
    """The network machines boot on (``qrm.dhcp.subnet``), with its dynamic range."""

    network: ipaddress.IPv4Network
    first: ipaddress.IPv4Address | None = None
    last: ipaddress.IPv4Address | None = None
    routers: tuple[ipaddress.IPv4Address, ...] = ()
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    domain: str | None = None


def _boot_network(settings: Mapping[str, Any]) -> BootNetwork | None:
    value = str(settings.get("qrm.dhcp.subnet") or "").strip()
    if not value:
        return None
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise _invalid("qrm.dhcp.subnet", value, _(
            "${setting} is not an IPv4 network (such as 10.0.0.0/24): ${value}",
            mapping={"setting": "qrm.dhcp.subnet", "value": repr(value)})) from None
    first = last = None
    span = str(settings.get("qrm.dhcp.range") or "").strip()
    if span:
        parts = span.replace(" ", "-").split("-")
        parts = [part for part in parts if part]
        try:
            first, last = (ipaddress.IPv4Address(part) for part in parts)
            valid = first <= last and first in network and last in network and (
                first != network.network_address and last != network.broadcast_address)
        except ValueError:
            valid = False
        if not valid:
            raise _invalid("qrm.dhcp.range", span, _(
                "${setting} must be two addresses of ${subnet} (first-last): ${value}",
                mapping={"setting": "qrm.dhcp.range", "subnet": str(network),
                         "value": repr(span)}))
    domain_value = str(settings.get("qrm.dhcp.domain") or "").strip()
    domain = dns_name(domain_value) if domain_value else None
    if domain_value and domain is None:
        raise _invalid("qrm.dhcp.domain", domain_value, _(
            "${setting} is not a domain name: ${value}",
            mapping={"setting": "qrm.dhcp.domain", "value": repr(domain_value)}))
    gateway = _address(settings, "qrm.dhcp.gateway")
    return BootNetwork(network=network, first=first, last=last,
                       routers=(gateway,) if gateway else (),
                       dns=_addresses(settings, "qrm.dhcp.dns"), domain=domain)


def _boot_url(settings: Mapping[str, Any]) -> str:
    key = "qrm.boot.url" if settings.get("qrm.boot.url") else "qrm.public_url"
    value = str(settings.get(key) or "").strip().rstrip("/")
    if not value:
        raise _invalid("qrm.boot.url", value, _(
            "no boot URL: set qrm.boot.url (or qrm.public_url) to the URL booting machines "
            "reach QRM Cloud at"))
    if not URL_RE.match(value):
        raise _invalid(key, value, _(
            "${setting} must be an http or https URL without spaces, quotes, commas or '#': "
            "${value}", mapping={"setting": key, "value": repr(value)}))
    return value + IPXE_SCRIPT


@dataclasses.dataclass(frozen=True)
class DhcpSettings:
    """What the generated configuration needs from the ini file."""

    server: str = "none"
    config_path: str = ""
    reload_argv: tuple[str, ...] = ()
    reload_timeout_s: int = 30
    ipxe_url: str = ""
    boot_file: str = DEFAULT_BOOT_FILE
    next_server: ipaddress.IPv4Address | None = None
    boot_network: BootNetwork | None = None
    interface: str | None = None

    @property
    def writes(self) -> bool:
        """Whether the ``dhcp.write`` job keeps a file up to date."""
        return self.server in SERVERS and bool(self.config_path)

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, server: str | None = None
                      ) -> DhcpSettings:
        """Read and check the settings; ``server`` overrides ``qrm.dhcp.server``. Raises
        ``ValidationError`` naming the setting at fault."""
        server = (server or str(settings.get("qrm.dhcp.server") or "none")).strip().lower()
        if server not in ("none", *SERVERS):
            raise _invalid("qrm.dhcp.server", server, _(
                "${setting} must be one of ${choices}",
                mapping={"setting": "qrm.dhcp.server", "choices": "none, " + ", ".join(SERVERS)}))
        boot_file = str(settings.get("qrm.dhcp.boot_file") or DEFAULT_BOOT_FILE).strip()
        if not FILE_RE.match(boot_file):
            raise _invalid("qrm.dhcp.boot_file", boot_file, _(
                "${setting} is not a file name: ${value}",
                mapping={"setting": "qrm.dhcp.boot_file", "value": repr(boot_file)}))
        interface = str(settings.get("qrm.dhcp.interface") or "").strip() or None
        if interface is not None and not INTERFACE_RE.match(interface):
            raise _invalid("qrm.dhcp.interface", interface, _(
                "${setting} is not a network interface name: ${value}",
                mapping={"setting": "qrm.dhcp.interface", "value": repr(interface)}))
        reload_command = str(settings.get("qrm.dhcp.reload_command") or "").strip()
        return cls(
            server=server, config_path=str(settings.get("qrm.dhcp.config_path") or "").strip(),
            reload_argv=tuple(shlex.split(reload_command)),
            reload_timeout_s=int(settings.get("qrm.dhcp.reload_timeout") or 30),
            ipxe_url=_boot_url(settings) if server != "none" else "",
            boot_file=boot_file, next_server=_address(settings, "qrm.dhcp.next_server"),
            boot_network=_boot_network(settings), interface=interface)


def writes_config(settings: Mapping[str, Any]) -> bool:
    """Cheap check (no validation) for the change trigger: is a file kept up to date?"""
    server = str(settings.get("qrm.dhcp.server") or "none").strip().lower()
    return server in SERVERS and bool(str(settings.get("qrm.dhcp.config_path") or "").strip())
