"""SSH targets, key references, fingerprints and the pool's host-key pinning (no network)."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import pytest

from engine.commands.ssh import (
    MemoryHostKeyStore,
    SshHostKeyChanged,
    SshHostKeyRefused,
    SshTarget,
    _PinningPolicy,
    check_key_reference,
    fingerprint,
    resolve_key,
)
from engine.commands.targets import ssh_target
from engine.commands.worker import output_tail
from engine.datacenter.models import Resource, Storage

SETTINGS = {"qrm.ssh.port": "2222", "qrm.ssh.user": "qrm", "qrm.ssh.key_dir": "/etc/qrm/ssh",
            "qrm.ssh.key_file": "/etc/qrm/ssh/default"}


def test_key_references_resolve_to_files():
    assert resolve_key(SETTINGS, None) == "/etc/qrm/ssh/default"
    assert resolve_key(SETTINGS, "kvm-hosts_ed25519") == "/etc/qrm/ssh/kvm-hosts_ed25519"
    assert resolve_key(SETTINGS, "/srv/keys/lvm") == "/srv/keys/lvm"
    assert resolve_key({}, None) is None
    with pytest.raises(ValueError, match=r"qrm\.ssh\.key_dir, which is not set"):
        resolve_key({}, "lvm")
    for bad in ("../shadow", "keys/lvm", ".hidden", "-----BEGIN OPENSSH PRIVATE KEY-----"):
        with pytest.raises(ValueError, match="neither a key file's name"):
            resolve_key(SETTINGS, bad)
        with pytest.raises(ValueError, match="neither a key file's name"):
            check_key_reference(bad)
    assert check_key_reference("") is None
    assert check_key_reference("lvm") == "lvm"


def test_a_machine_s_target_falls_back_to_its_address_and_the_settings():
    resource = Resource(id=3, name="kvm-1", mac="02:00:00:00:00:03", ip="10.0.0.3")
    assert ssh_target(SETTINGS, resource) == SshTarget(
        "10.0.0.3", 2222, "qrm", "/etc/qrm/ssh/default")
    resource.ssh_host, resource.ssh_port, resource.ssh_user, resource.ssh_key = (
        "kvm-1.mgmt", 22, "root", "kvm")
    assert ssh_target(SETTINGS, resource) == SshTarget(
        "kvm-1.mgmt", 22, "root", "/etc/qrm/ssh/kvm")

    storage = Storage(id=4, name="lvm-1", storage_type="lvm")
    storage.resource = Resource(id=5, mac="02:00:00:00:00:05", ip="10.0.0.5")
    assert ssh_target(SETTINGS, storage).host == "10.0.0.5"
    storage.resource = None
    with pytest.raises(ValueError, match=r"storage 4 \(lvm-1\) has no SSH host"):
        ssh_target(SETTINGS, storage)
    with pytest.raises(ValueError, match=r"resource 6 \(.*\) has no IP address"):
        ssh_target(SETTINGS, Resource(id=6, mac="02:00:00:00:00:06"))


def test_fingerprint_is_openssh_s_sha256():
    blob = b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)
    expected = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert fingerprint(base64.b64encode(blob).decode()) == f"SHA256:{expected}"


class FakeKey:
    def __init__(self, blob: bytes) -> None:
        self.blob = base64.b64encode(blob).decode()

    def get_name(self) -> str:
        return "ssh-ed25519"

    def get_base64(self) -> str:
        return self.blob


class RecordingStore(MemoryHostKeyStore):
    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[tuple] = []

    def refused(self, target, offered, pinned) -> None:
        self.refusals.append((target.name, offered, pinned))


def test_pinning_policy_pins_the_first_key_and_refuses_another():
    store = RecordingStore()
    target = SshTarget("10.0.0.9", 2200, policy="accept-new")
    policy = _PinningPolicy(target, store)
    first, other = FakeKey(b"first-key"), FakeKey(b"other-key")

    policy.missing_host_key(SimpleNamespace(), "[10.0.0.9]:2200", first)
    policy.missing_host_key(SimpleNamespace(), "[10.0.0.9]:2200", first)
    assert store.keys == {("10.0.0.9", 2200): ("ssh-ed25519", first.blob)}

    with pytest.raises(SshHostKeyChanged) as changed:
        policy.missing_host_key(SimpleNamespace(), "[10.0.0.9]:2200", other)
    assert fingerprint(first.blob) in changed.value.message
    assert fingerprint(other.blob) in changed.value.message
    assert store.refusals == [("[10.0.0.9]:2200", ("ssh-ed25519", other.blob),
                               ("ssh-ed25519", first.blob))]


def test_reject_policy_refuses_a_host_not_pinned_yet():
    store = MemoryHostKeyStore()
    policy = _PinningPolicy(SshTarget("10.0.0.9"), store)
    with pytest.raises(SshHostKeyRefused, match=r"unknown host key for 10\.0\.0\.9"):
        policy.missing_host_key(SimpleNamespace(), "10.0.0.9", FakeKey(b"k"))
    assert store.keys == {}


def test_output_tail_keeps_the_end():
    assert output_tail("  short\n") == "short"
    assert output_tail("x" * 600 + "END", length=10) == "…xxxxxxxEND"
