"""The kvm virtualization driver against libvirt's test driver (``test:///<node file>``):
real libvirt, real domain definitions, no hypervisor."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

import libvirt
import pytest

from engine.errors import CapacityError, DriverError
from engine.plugins.drivers import HostRef, HostUnreachable, VirtualizationDriver, VmSpec
from plugins.kvm import drivers as kvm_drivers
from plugins.kvm.drivers import KvmDriver
from tests.unit.kvm.conftest import new_mac, spec


def domain(driver: KvmDriver, host: HostRef, name: str, *, inactive: bool = False) -> ET.Element:
    """The domain's definition as libvirt holds it."""
    connection = driver.pool.get(host.settings["uri"])
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return ET.fromstring(connection.lookupByName(name).XMLDesc(flags))  # noqa: S314


def names(driver: KvmDriver, host: HostRef) -> list[str]:
    return [vm.name for vm in driver.list_vms(host)]


def test_the_driver_implements_the_protocol(driver):
    assert isinstance(driver, VirtualizationDriver)
    assert driver.vm_type == "kvm-vm"


def test_create_defines_and_starts_a_domain_with_the_spec(driver, host):
    macs = (new_mac(), new_mac())
    driver.create_vm(host, spec("qrm-vm-7", cpus=2, memory_mb=1024, macs=macs))

    [listed] = driver.list_vms(host)
    assert (listed.name, listed.state, listed.cpus, listed.memory_mb, listed.macs) == (
        "qrm-vm-7", "running", 2, 1024, macs)
    xml = domain(driver, host, "qrm-vm-7")
    assert xml.get("type") == "test"
    assert xml.findtext("vcpu") == "2"
    assert int(xml.findtext("memory")) == 1024 * 1024  # KiB
    interfaces = xml.findall("./devices/interface")
    assert [nic.find("mac").get("address") for nic in interfaces] == list(macs)
    # network boot first, and only the first NIC boots
    assert [nic.find("boot").get("order") if nic.find("boot") is not None else None
            for nic in interfaces] == ["1", None]
    assert xml.findall("./devices/disk") == []
    assert xml.find("./os/boot") is None  # per-device boot order, no <os><boot>


def test_a_spec_with_a_disk_gets_it_as_vda_booting_after_the_network(driver, host):
    driver.create_vm(host, spec(disk="/srv/qcow2/qrm-img-3.qcow2"))

    xml = domain(driver, host, "qrm-vm-1")
    [disk] = xml.findall("./devices/disk")
    assert disk.find("source").get("file") == "/srv/qcow2/qrm-img-3.qcow2"
    assert disk.find("driver").get("type") == "qcow2"
    assert (disk.find("target").get("dev"), disk.find("target").get("bus")) == (
        "vda", "virtio")
    assert disk.find("boot").get("order") == "2"
    assert xml.find("./devices/interface/boot").get("order") == "1"


def test_a_relative_disk_path_is_refused(driver, host):
    with pytest.raises(DriverError, match="absolute path"):
        driver.create_vm(host, spec(disk="qrm-img-3.qcow2"))
    assert names(driver, host) == []


def test_creating_an_existing_domain_does_nothing(driver, host):
    first = spec("qrm-vm-1", cpus=4, memory_mb=4096)  # a second one would not fit
    driver.create_vm(host, first)
    driver.stop_vm(host, first.name)

    driver.create_vm(host, first)
    driver.create_vm(host, VmSpec(name=first.name, cpus=1, memory_mb=256, macs=(new_mac(),)))

    [listed] = driver.list_vms(host)
    assert (listed.state, listed.cpus, listed.macs) == ("stopped", 4, first.macs)


def test_a_domain_defined_but_never_started_is_started_by_the_repeated_create(driver, host):
    # what a crash between defineXML and create leaves behind
    vm = spec()
    xml = kvm_drivers.domains.domain_xml(vm, driver.settings(host))
    dom = driver.pool.get(host.settings["uri"]).defineXML(xml)
    kvm_drivers._set_started(libvirt, dom, started=False)

    driver.create_vm(host, vm)

    assert [(info.name, info.state) for info in driver.list_vms(host)] == [
        (vm.name, "running")]


def test_a_domain_someone_else_defined_is_left_as_it_is(driver, host):
    vm = spec()
    xml = kvm_drivers.domains.domain_xml(vm, driver.settings(host))
    driver.pool.get(host.settings["uri"]).defineXML(xml)  # no metadata of ours

    driver.create_vm(host, vm)

    assert [info.state for info in driver.list_vms(host)] == ["stopped"]


def test_no_room_raises_capacity_error_and_defines_nothing(driver, make_host):
    host = make_host(cpus=2, memory_mb=2048)
    driver.create_vm(host, spec("qrm-vm-1", cpus=1, memory_mb=1536))

    with pytest.raises(CapacityError, match="1 CPU\\(s\\) and 512 MB free"):
        driver.create_vm(host, spec("qrm-vm-2", cpus=1, memory_mb=1024))
    with pytest.raises(CapacityError):
        driver.create_vm(host, spec("qrm-vm-3", cpus=2, memory_mb=256))

    assert names(driver, host) == ["qrm-vm-1"]


def test_only_running_domains_take_room(driver, make_host):
    host = make_host(cpus=2, memory_mb=2048)
    driver.create_vm(host, spec("qrm-vm-1", cpus=2, memory_mb=2048))
    driver.stop_vm(host, "qrm-vm-1")

    driver.create_vm(host, spec("qrm-vm-2", cpus=2, memory_mb=2048))

    with pytest.raises(CapacityError):
        driver.start_vm(host, "qrm-vm-1")
    assert driver.capacity(host) == (2, 2048, 2, 2048)
    assert [(vm.name, vm.state) for vm in driver.list_vms(host)] == [
        ("qrm-vm-1", "stopped"), ("qrm-vm-2", "running")]


def test_stop_start_reboot_and_remove(driver, host):
    driver.create_vm(host, spec())

    driver.stop_vm(host, "qrm-vm-1")
    driver.stop_vm(host, "qrm-vm-1")
    assert [vm.state for vm in driver.list_vms(host)] == ["stopped"]
    driver.start_vm(host, "qrm-vm-1")
    driver.start_vm(host, "qrm-vm-1")
    assert [vm.state for vm in driver.list_vms(host)] == ["running"]
    driver.stop_vm(host, "qrm-vm-1")
    driver.reboot_vm(host, "qrm-vm-1")  # a stopped VM is powered on
    assert [vm.state for vm in driver.list_vms(host)] == ["running"]

    driver.remove_vm(host, "qrm-vm-1")
    driver.remove_vm(host, "qrm-vm-1")
    assert names(driver, host) == []
    with pytest.raises(libvirt.libvirtError):
        driver.pool.get(host.settings["uri"]).lookupByName("qrm-vm-1")


def test_a_missing_domain_is_fine_to_stop_and_remove_but_not_to_start(driver, host):
    driver.stop_vm(host, "qrm-vm-9")
    driver.remove_vm(host, "qrm-vm-9")
    with pytest.raises(DriverError, match="no VM qrm-vm-9"):
        driver.start_vm(host, "qrm-vm-9")
    with pytest.raises(DriverError, match="no VM qrm-vm-9"):
        driver.reboot_vm(host, "qrm-vm-9")


def test_a_disk_attached_is_in_the_definition_and_running_after_the_reboot(driver, host):
    driver.create_vm(host, spec())

    driver.attach_disk(host, "qrm-vm-1", "/srv/qcow2/qrm-img-4.qcow2")
    driver.attach_disk(host, "qrm-vm-1", "/srv/qcow2/qrm-img-4.qcow2")

    assert domain(driver, host, "qrm-vm-1").findall("./devices/disk") == []  # not live yet
    driver.reboot_vm(host, "qrm-vm-1")
    [disk] = domain(driver, host, "qrm-vm-1").findall("./devices/disk")
    assert disk.find("source").get("file") == "/srv/qcow2/qrm-img-4.qcow2"
    assert driver.disk_users(host, "/srv/qcow2/qrm-img-4.qcow2") == ["qrm-vm-1"]

    driver.attach_disk(host, "qrm-vm-1", "/srv/qcow2/qrm-img-5.qcow2")  # replaces vda
    assert [d.find("source").get("file") for d in domain(
        driver, host, "qrm-vm-1", inactive=True).findall("./devices/disk")] == [
        "/srv/qcow2/qrm-img-5.qcow2"]
    assert driver.detach_disk(host, "/srv/qcow2/qrm-img-5.qcow2") == ["qrm-vm-1"]
    assert domain(driver, host, "qrm-vm-1", inactive=True).findall("./devices/disk") == []


def test_an_interface_template_of_the_host_makes_each_nic(driver, make_host):
    host = make_host(interface_xml="<interface type='bridge'><source bridge='br$index'/>"
                                   "<model type='e1000'/></interface>")
    macs = (new_mac(), new_mac())
    driver.create_vm(host, spec(macs=macs))

    interfaces = domain(driver, host, "qrm-vm-1").findall("./devices/interface")
    assert [(nic.get("type"), nic.find("source").get("bridge"), nic.find("mac").get("address"))
            for nic in interfaces] == [("bridge", "br0", macs[0]), ("bridge", "br1", macs[1])]


def test_a_pass_through_template_puts_the_nic_on_the_qemu_command_line(driver, make_host):
    host = make_host(interface_xml=(
        "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
        "<qemu:arg value='-netdev'/><qemu:arg value='user,id=n$index'/>"
        "<qemu:arg value='-device'/>"
        "<qemu:arg value='virtio-net-pci,netdev=n$index,mac=$mac,bootindex=1'/>"
        "</qemu:commandline>"))
    mac = new_mac()

    xml = kvm_drivers.domains.domain_xml(spec(macs=(mac,)), driver.settings(host))

    parsed = ET.fromstring(xml)  # noqa: S314
    args = [arg.get("value") for arg in parsed.iter(
        "{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert args == ["-netdev", "user,id=n0", "-device",
                    f"virtio-net-pci,netdev=n0,mac={mac},bootindex=1"]
    assert parsed.findall("./devices/interface") == []
    assert kvm_drivers.domains.macs_of(xml) == (mac,)


@pytest.mark.parametrize("template", ["<interface type='bridge'>", "<disk/>",
                                      "<interface type='$unknown'/>"])
def test_an_unusable_interface_template_is_a_driver_error(driver, make_host, template):
    host = make_host(interface_xml=template)
    with pytest.raises(DriverError, match="interface template"):
        driver.create_vm(host, spec())


def test_remove_takes_the_serial_log_of_a_local_host(driver, make_host, tmp_path):
    host = make_host(serial_dir=str(tmp_path))
    driver.create_vm(host, spec())
    serial = domain(driver, host, "qrm-vm-1").find("./devices/serial")
    assert serial.get("type") == "file"
    log = tmp_path / "qrm-vm-1.log"
    assert serial.find("source").get("path") == str(log)
    log.write_text("console output")  # what qemu would have written

    driver.remove_vm(host, "qrm-vm-1")

    assert not log.exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_host_nobody_answers_on_raises_host_unreachable(driver):
    host = HostRef(id=1, name="down", mac=new_mac(),
                   settings={"uri": f"qemu+tcp://127.0.0.1:{free_port()}/system"})

    for call in (lambda: driver.list_vms(host), lambda: driver.create_vm(host, spec()),
                 lambda: driver.remove_vm(host, "qrm-vm-1"),
                 lambda: driver.stop_vm(host, "qrm-vm-1")):
        with pytest.raises(HostUnreachable, match="cannot connect to libvirt"):
            call()


def test_a_host_gone_after_its_connection_broke_raises_host_unreachable(driver, host):
    driver.create_vm(host, spec())
    node = host.settings["uri"][len("test://"):]
    driver.pool.drop(host.settings["uri"])  # the connection broke
    import os

    os.rename(node, node + ".away")

    with pytest.raises(HostUnreachable):
        driver.list_vms(host)


def test_a_host_without_settings_and_no_database_is_a_driver_error(driver):
    with pytest.raises(DriverError, match="no database"):
        driver.list_vms(HostRef(id=1, name="bare", mac=new_mac()))


def test_an_unknown_domain_type_is_refused(driver, make_host):
    with pytest.raises(DriverError, match="domain type"):
        driver.create_vm(make_host(domain_type="xen"), spec())


def test_a_disk_attached_to_a_vm_with_a_pass_through_nic_boots_after_it(driver, make_host):
    host = make_host(interface_xml=(
        "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
        "<qemu:arg value='-device'/><qemu:arg value='virtio-net-pci,mac=$mac,bootindex=1'/>"
        "</qemu:commandline>"))
    driver.create_vm(host, spec())
    # what libvirt's QEMU driver puts into a definition whose devices carry no boot order
    connection = driver.pool.get(host.settings["uri"])
    xml = connection.lookupByName("qrm-vm-1").XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    connection.defineXML(xml.replace("</os>", "<boot dev='hd'/></os>"))

    driver.attach_disk(host, "qrm-vm-1", "/srv/qcow2/qrm-img-4.qcow2")

    defined = domain(driver, host, "qrm-vm-1", inactive=True)
    assert defined.find("./os/boot") is None
    assert defined.find("./devices/disk/boot").get("order") == "2"
