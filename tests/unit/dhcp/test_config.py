"""The generated DHCP configurations: reservations, the iPXE chain, escaping, and each
server's own parser."""

from __future__ import annotations

import json
import subprocess

import pytest

from engine.cloud.models import CloudRequest, IpGroup
from engine.cloud.services import CloudRequestService
from engine.dhcp.plan import build_plan
from engine.dhcp.render import render
from engine.dhcp.settings import DhcpSettings
from engine.errors import ValidationError
from engine.security import Actor
from tests.conftest import commit, run_jobs
from tests.functional.test_admin_support import submit_demo_request
from tests.unit.dhcp.conftest import add_resource, tool

IPXE_URL = "http://10.77.0.1:6543/boot/ipxe?mac=${net0/mac}"


def config(request, settings: dict, server: str) -> str:
    plan = build_plan(request.dbsession, DhcpSettings.from_settings(settings, server=server))
    return render(plan, server)


@pytest.fixture
def two_nodes(pyramid_request):
    node1 = add_resource(pyramid_request, "52:54:00:00:00:01", ip="10.77.0.11",
                         hostname="node1")
    add_resource(pyramid_request, "52-54-00-00-00-02", ip="10.77.0.12", name="Node2")
    add_resource(pyramid_request, "52:54:00:00:00:03")  # no address: dynamic range
    pyramid_request.node1_id = node1.id
    return pyramid_request


def test_dnsmasq_reserves_each_address_with_its_host_name(two_nodes, dhcp_settings):
    text = config(two_nodes, dhcp_settings, "dnsmasq")
    assert "dhcp-host=52:54:00:00:00:01,10.77.0.11,node1\n" in text
    assert "dhcp-host=52:54:00:00:00:02,10.77.0.12,node2\n" in text
    assert "52:54:00:00:00:03" not in text
    assert "dhcp-range=set:qrm-subnet-1,10.77.0.100,10.77.0.199,255.255.255.0,21600s" in text
    assert "dhcp-option=tag:qrm-subnet-1,option:router,10.77.0.1" in text


def test_dhcpd_declares_hosts_and_the_boot_subnet(two_nodes, dhcp_settings):
    text = config(two_nodes, dhcp_settings, "dhcpd")
    assert (f"host qrm-resource-{two_nodes.node1_id} {{\n  hardware ethernet 52:54:00:00:00:01;\n"
            "  fixed-address 10.77.0.11;\n  option host-name \"node1\";\n}") in text
    assert "subnet 10.77.0.0 netmask 255.255.255.0 {\n  range 10.77.0.100 10.77.0.199;" in text
    assert "option domain-name-servers 10.77.0.1, 10.77.0.2;" in text
    assert 'option domain-name "boot.example.org";' in text


def test_kea_puts_reservations_into_their_subnet(two_nodes, dhcp_settings):
    dhcp4 = json.loads(config(two_nodes, dhcp_settings, "kea"))["Dhcp4"]
    (subnet,) = dhcp4["subnet4"]
    assert subnet["subnet"] == "10.77.0.0/24"
    assert subnet["id"] == 1
    assert subnet["pools"] == [{"pool": "10.77.0.100 - 10.77.0.199"}]
    assert [(r["hw-address"], r["ip-address"], r.get("hostname"))
            for r in subnet["reservations"]] == [
        ("52:54:00:00:00:01", "10.77.0.11", "node1"), ("52:54:00:00:00:02", "10.77.0.12", "node2")]


def test_ipxe_is_chained_to_the_boot_script_and_pxe_gets_the_boot_file(pyramid_request,
                                                                        dhcp_settings):
    dnsmasq = config(pyramid_request, dhcp_settings, "dnsmasq")
    assert "dhcp-userclass=set:ipxe,iPXE\n" in dnsmasq
    assert f"dhcp-boot=tag:ipxe,{IPXE_URL}\n" in dnsmasq
    assert "dhcp-boot=tag:!ipxe,pxelinux.0,,10.77.0.1\n" in dnsmasq
    dhcpd = config(pyramid_request, dhcp_settings, "dhcpd")
    assert ('if exists user-class and option user-class = "iPXE" {\n'
            f'  filename "{IPXE_URL}";\n}} else {{\n  filename "pxelinux.0";\n}}') in dhcpd
    assert "next-server 10.77.0.1;" in dhcpd
    dhcp4 = json.loads(config(pyramid_request, dhcp_settings, "kea"))["Dhcp4"]
    assert dhcp4["client-classes"] == [{"name": "ipxe", "test": "option[77].hex == 'iPXE'",
                                        "boot-file-name": IPXE_URL}]
    assert (dhcp4["boot-file-name"], dhcp4["next-server"]) == ("pxelinux.0", "10.77.0.1")


def test_boot_url_falls_back_to_the_public_url(pyramid_request, dhcp_settings):
    del dhcp_settings["qrm.boot.url"]
    dhcp_settings["qrm.public_url"] = "https://cloud.example.org/qrm/"
    assert ("dhcp-boot=tag:ipxe,https://cloud.example.org/qrm/boot/ipxe?mac=${net0/mac}"
            in config(pyramid_request, dhcp_settings, "dnsmasq"))


HOSTILE = [
    'evil"; option domain-name-servers 6.6.6.6; "',
    "evil\ndhcp-boot=http://attacker/",
    "evil}\nhost x {",
    "a,b",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_no_row_can_add_configuration(pyramid_request, dhcp_settings, hostile):
    """Host names, names, MACs, addresses and IP group fields are checked; what does not
    pass is left out, never written."""
    resource = add_resource(pyramid_request, "52:54:00:00:00:21", ip="10.77.0.21",
                            hostname=hostile, name=hostile)
    bad_mac = add_resource(pyramid_request, "52:54:00:00:00:22", ip="10.77.0.22")
    bad_mac.mac = "52:54:00:00:00:zz"
    add_resource(pyramid_request, "52:54:00:00:00:23", ip=hostile)
    pyramid_request.dbsession.add(IpGroup(name="hostile", network="10.88.0.0",
                                          netmask="255.255.255.0", gateway=hostile,
                                          dns1=hostile, domain=hostile))
    pyramid_request.dbsession.flush()
    for server in ("dnsmasq", "dhcpd", "kea"):
        text = config(pyramid_request, dhcp_settings, server)
        assert "evil" not in text
        assert "6.6.6.6" not in text
        assert "attacker" not in text
        assert "a,b" not in text
        assert "zz" not in text
        assert "10.77.0.21" in text  # the resource keeps its address, without a name
        assert f"resource {bad_mac.id}: its MAC is not a MAC address" in text
    assert f"qrm-resource-{resource.id}" in config(pyramid_request, dhcp_settings, "dhcpd")


def test_addresses_outside_the_subnets_and_duplicates_are_left_out(pyramid_request,
                                                                   dhcp_settings):
    outside = add_resource(pyramid_request, "52:54:00:00:00:31", ip="10.99.0.5")
    add_resource(pyramid_request, "52:54:00:00:00:32", ip="10.77.0.40")
    twice = add_resource(pyramid_request, "52:54:00:00:00:33", ip="10.77.0.40")
    text = config(pyramid_request, dhcp_settings, "dnsmasq")
    assert f"# skipped: resource {outside.id}: 10.99.0.5 is outside every subnet served" in text
    assert f"resource {twice.id}: 52:54:00:00:00:33 or 10.77.0.40 is reserved already" in text
    assert text.count("10.77.0.40") == 2  # the reservation and the note


@pytest.mark.parametrize(("key", "value"), [
    ("qrm.dhcp.subnet", "10.77.0.1/24"), ("qrm.dhcp.range", "10.77.0.100-10.78.0.1"),
    ("qrm.dhcp.next_server", "nowhere"), ("qrm.boot.url", 'http://x/"; evil'),
    ("qrm.boot.url", "http://a,b/"), ("qrm.dhcp.boot_file", "pxe linux.0"),
    ("qrm.dhcp.domain", "-bad-"), ("qrm.dhcp.server", "bind"),
])
def test_bad_settings_are_refused_naming_the_setting(dhcp_settings, key, value):
    dhcp_settings.update({key: value, "qrm.dhcp.server": dhcp_settings.get(
        "qrm.dhcp.server", "dnsmasq") if key != "qrm.dhcp.server" else value})
    with pytest.raises(ValidationError) as refused:
        DhcpSettings.from_settings(dhcp_settings)
    assert refused.value.field == key


def test_cloud_appliance_addresses_are_reserved_on_its_resource(testapp, demo_cloud,
                                                                pyramid_request, registry,
                                                                dhcp_settings):
    """An active cloud appliance's VM gets the address its request was given, in the IP
    group's subnet with the group's options."""
    request_id = submit_demo_request(pyramid_request)
    pyramid_request.find_service(CloudRequestService).approve(request_id,
                                                              actor=Actor.admin("admin"))
    commit(pyramid_request)
    run_jobs(registry)
    pyramid_request.dbsession.expire_all()
    (cloud_appliance,) = pyramid_request.dbsession.get(CloudRequest, request_id).appliances
    resource = cloud_appliance.appliance.resource
    address = cloud_appliance_address(pyramid_request, cloud_appliance.id)
    dhcp4 = json.loads(config(pyramid_request, dhcp_settings, "kea"))["Dhcp4"]
    group = next(s for s in dhcp4["subnet4"] if s["subnet"] == "192.0.2.0/24")
    assert {"hw-address": resource.mac, "ip-address": address}.items() <= \
        group["reservations"][0].items()
    assert group["id"] > 1000


def cloud_appliance_address(request, cloud_appliance_id: int) -> str:
    from sqlalchemy import select

    from engine.cloud.models import IpAddress

    return request.dbsession.scalar(select(IpAddress.address).where(
        IpAddress.cloud_appliance_id == cloud_appliance_id))


# -- each server's own parser -----------------------------------------------------------------
def checked(argv: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def full_datacenter(two_nodes, dhcp_settings):
    """The boot network with reservations, plus an IP group with one of its own."""
    two_nodes.dbsession.add(IpGroup(name="lan", network="10.20.0.0", netmask="255.255.255.0",
                                    gateway="10.20.0.1", dns1="10.20.0.2",
                                    domain="lan.example.org"))
    add_resource(two_nodes, "52:54:00:00:00:41", ip="10.20.0.41", hostname="lan-node")
    return two_nodes


def test_dhcpd_accepts_the_generated_configuration(full_datacenter, dhcp_settings, tmp_path):
    path = tmp_path / "dhcpd.conf"
    path.write_text(config(full_datacenter, dhcp_settings, "dhcpd"))
    checked([tool("dhcpd"), "-t", "-4", "-cf", str(path)])


def test_kea_accepts_the_generated_configuration(full_datacenter, dhcp_settings, tmp_path):
    path = tmp_path / "kea-dhcp4.json"
    path.write_text(config(full_datacenter, dhcp_settings, "kea"))
    checked([tool("kea-dhcp4"), "-t", str(path)])


def test_dnsmasq_accepts_the_generated_configuration(full_datacenter, dhcp_settings, tmp_path):
    path = tmp_path / "dnsmasq.conf"
    dhcp_settings["qrm.dhcp.interface"] = "qd-test0"
    path.write_text(config(full_datacenter, dhcp_settings, "dnsmasq"))
    result = checked([tool("dnsmasq"), "--test", f"--conf-file={path}"])
    assert "syntax check OK" in result.stdout + result.stderr
