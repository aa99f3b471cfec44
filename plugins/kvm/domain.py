"""libvirt domain XML of a VM: built from a ``VmSpec`` and the host's settings, and read back.

A domain boots from the network first: its first NIC carries ``<boot order='1'/>``; a qcow2
disk, when it has one, is ``vda`` (virtio) with ``<boot order='2'/>``, so the boot face
decides what it runs (the idle ramdisk, or the appliance's kernel with its root on the disk:
``qrm.root=local``). NICs come from the host's interface template, one per persisted MAC
(``string.Template``: ``$mac``, ``$index``, ``$name``). A template is an ``<interface>``
element (a bridge, a libvirt network) or — for hosts whose NICs libvirt cannot describe,
such as QEMU user networking with a boot file — a ``<qemu:commandline>`` element whose
arguments are passed through to QEMU (it must set the MAC and the boot index itself).
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET

from engine.errors import DriverError
from engine.plugins.drivers import VmSpec
from plugins.kvm.settings import HostSettings

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)
_COMMANDLINE = f"{{{QEMU_NS}}}commandline"
_ARG = f"{{{QEMU_NS}}}arg"
_MAC_ARG = re.compile(r"(?:^|,)mac=([0-9A-Fa-f:]{17})(?:,|$)")
#: the target device of a qcow2 disk
DISK_TARGET = "vda"


def parse_xml(text: str) -> ET.Element:
    """Parse XML that libvirt wrote, or the site's own template (never a stranger's)."""
    return ET.fromstring(text)  # noqa: S314 - libvirt's own XML or the site's template


def interface_elements(template: str, *, mac: str, index: int, name: str) -> ET.Element:
    """One NIC from the host's template."""
    try:
        text = string.Template(template).substitute(mac=mac, index=index, name=name)
        element = parse_xml(text)
    except (KeyError, ValueError, ET.ParseError) as error:
        raise DriverError(f"the interface template of the host is not usable XML: {error}"
                          ) from None
    if element.tag not in ("interface", _COMMANDLINE):
        raise DriverError("the interface template must be an <interface> or a "
                          f"<qemu:commandline> element, not <{element.tag}>")
    return element


def disk_element(path: str, *, boot_order: int = 2) -> ET.Element:
    """The qcow2 file ``path`` as the domain's disk ``vda``."""
    disk = ET.Element("disk", type="file", device="disk")
    ET.SubElement(disk, "driver", name="qemu", type="qcow2")
    ET.SubElement(disk, "source", file=path)
    ET.SubElement(disk, "target", dev=DISK_TARGET, bus="virtio")
    ET.SubElement(disk, "boot", order=str(boot_order))
    return disk


def domain_xml(spec: VmSpec, host: HostSettings) -> str:
    """The persistent definition of VM ``spec.name`` on ``host``."""
    if not spec.macs:
        raise DriverError(f"VM {spec.name} needs at least one MAC")
    domain = ET.Element("domain", type=host.domain_type)
    ET.SubElement(domain, "name").text = spec.name
    ET.SubElement(domain, "memory", unit="MiB").text = str(int(spec.memory_mb))
    ET.SubElement(domain, "vcpu").text = str(int(spec.cpus))
    os_element = ET.SubElement(domain, "os")
    ET.SubElement(os_element, "type", arch="x86_64").text = "hvm"
    features = ET.SubElement(domain, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    ET.SubElement(domain, "on_poweroff").text = "destroy"
    ET.SubElement(domain, "on_reboot").text = "restart"
    ET.SubElement(domain, "on_crash").text = "destroy"
    devices = ET.SubElement(domain, "devices")
    commandline = None
    for index, mac in enumerate(spec.macs):
        element = interface_elements(host.interface_xml, mac=mac, index=index, name=spec.name)
        if element.tag == "interface":
            for old in element.findall("mac") + element.findall("boot"):
                element.remove(old)
            element.insert(0, ET.Element("mac", address=mac))
            if index == 0:
                element.append(ET.Element("boot", order="1"))
            devices.append(element)
        else:
            if commandline is None:
                commandline = ET.Element(_COMMANDLINE)
            commandline.extend(list(element))
    if spec.disk:
        devices.append(disk_element(spec.disk))
    if host.serial_dir:
        serial = ET.SubElement(devices, "serial", type="file")
        ET.SubElement(serial, "source", path=f"{host.serial_dir.rstrip('/')}/{spec.name}.log",
                      append="on")
    else:
        ET.SubElement(devices, "serial", type="pty")
    if commandline is not None:
        domain.append(commandline)
    return ET.tostring(domain, encoding="unicode")


def macs_of(xml: str) -> tuple[str, ...]:
    """The MACs of a domain, in the order of its NICs (pass-through NICs last)."""
    domain = parse_xml(xml)
    macs = [mac.get("address", "").lower()
            for mac in domain.findall("./devices/interface/mac")]
    for arg in domain.findall(f"./{_COMMANDLINE}/{_ARG}"):
        macs.extend(match.lower() for match in _MAC_ARG.findall(arg.get("value", "")))
    return tuple(mac for mac in macs if mac)


def disks_of(xml: str) -> tuple[str, ...]:
    """The files of a domain's disks."""
    domain = parse_xml(xml)
    return tuple(source.get("file", "") for source in
                 domain.findall("./devices/disk[@device='disk']/source") if source.get("file"))


def disk_xml_of(xml: str, path: str) -> str | None:
    """The ``<disk>`` element of a domain whose file is ``path``, as libvirt wrote it."""
    domain = parse_xml(xml)
    for disk in domain.findall("./devices/disk[@device='disk']"):
        source = disk.find("source")
        if source is not None and source.get("file") == path:
            return ET.tostring(disk, encoding="unicode")
    return None


def disk_on_target(xml: str, target: str = DISK_TARGET) -> str | None:
    """The file of the domain's disk on ``target`` (``vda``), if any."""
    domain = parse_xml(xml)
    for disk in domain.findall("./devices/disk[@device='disk']"):
        node = disk.find("target")
        source = disk.find("source")
        if node is not None and node.get("dev") == target:
            return source.get("file") if source is not None else ""
    return None


__all__ = ["DISK_TARGET", "QEMU_NS", "disk_element", "disk_on_target", "disk_xml_of",
           "disks_of", "domain_xml", "interface_elements", "macs_of", "parse_xml"]
