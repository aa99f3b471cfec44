"""The admin's host key confirmation (``CommandService.fetch_host_key`` /
``confirm_host_key``) against a real sshd: the key offered is fetched without logging in,
shown by its SHA256 fingerprint, pinned once confirmed, and then the worker's pool (policy
``reject``) connects to it; a confirmation that does not match what the host offers pins
nothing."""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import select

from engine.commands.models import SshHostKey
from engine.commands.services import CommandService
from engine.commands.ssh import SshHostKeyRefused, SshPool, SshTarget
from engine.commands.targets import DbHostKeyStore
from engine.errors import DriverError, InvalidState
from engine.events.models import Event
from tests.conftest import commit
from tests.integration.conftest import free_port


def ssh_keygen_fingerprint(public_path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_path)], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return out.split()[1]


def test_fetch_shows_the_key_sshd_offers_with_its_fingerprint(pyramid_request, sshd):
    offer = pyramid_request.find_service(CommandService).fetch_host_key("127.0.0.1",
                                                                        sshd.port)
    assert (offer.key_type, offer.key_base64) == (sshd.host_key.key_type,
                                                  sshd.host_key.base64)
    assert offer.fingerprint == ssh_keygen_fingerprint(
        sshd.host_key.private_path.with_suffix(".pub"))
    assert offer.fingerprint.startswith("SHA256:")
    assert offer.status == "new"
    assert "Accepted publickey" not in sshd.log_text()  # nobody logged in


def test_a_confirmed_key_is_pinned_and_the_pool_then_connects(pyramid_request, sshd,
                                                              admin_actor):
    target = SshTarget(host="127.0.0.1", port=sshd.port, user=sshd.user,
                       key_file=str(sshd.client_key.private_path), policy="reject")
    pool = SshPool(DbHostKeyStore(pyramid_request.registry))
    try:
        with pytest.raises(SshHostKeyRefused):
            pool.run(target, ["true"], timeout=20)

        commands = pyramid_request.find_service(CommandService)
        offer = commands.fetch_host_key("127.0.0.1", sshd.port)
        row = commands.confirm_host_key("127.0.0.1", sshd.port,
                                        confirmed_fingerprint=offer.fingerprint,
                                        actor=admin_actor)
        assert (row.key_type, row.key_base64) == (sshd.host_key.key_type,
                                                  sshd.host_key.base64)
        (event,) = pyramid_request.dbsession.scalars(select(Event).where(
            Event.name == "ssh.host_key_pinned"))
        assert event.actor == admin_actor.label
        assert offer.fingerprint in event.message
        commit(pyramid_request)

        assert pool.run(target, ["echo", "hello"], timeout=20)[:2] == (0, b"hello\n")
        assert commands.fetch_host_key("127.0.0.1", sshd.port).status == "pinned"
        # confirming again is fine and pins nothing new
        commands.confirm_host_key("127.0.0.1", sshd.port,
                                  confirmed_fingerprint=offer.fingerprint, actor=admin_actor)
        assert len(list(pyramid_request.dbsession.scalars(select(SshHostKey)))) == 1
    finally:
        pool.close()


def test_a_fingerprint_that_is_not_the_offered_one_pins_nothing(pyramid_request, sshd,
                                                                admin_actor):
    commands = pyramid_request.find_service(CommandService)
    with pytest.raises(InvalidState, match="different key") as raised:
        commands.confirm_host_key("127.0.0.1", sshd.port,
                                  confirmed_fingerprint="SHA256:" + "A" * 43,
                                  actor=admin_actor)
    assert raised.value.field == "fingerprint"
    assert commands.pinned_host_key("127.0.0.1", sshd.port) is None


def test_another_pinned_key_is_not_replaced(pyramid_request, sshd, admin_actor):
    pyramid_request.dbsession.add(SshHostKey(host="127.0.0.1", port=sshd.port,
                                             key_type="ssh-ed25519",
                                             key_base64=sshd.client_key.base64))
    pyramid_request.dbsession.flush()
    commands = pyramid_request.find_service(CommandService)
    offer = commands.fetch_host_key("127.0.0.1", sshd.port)
    assert offer.status == "changed"
    with pytest.raises(InvalidState, match="another key is pinned"):
        commands.confirm_host_key("127.0.0.1", sshd.port,
                                  confirmed_fingerprint=offer.fingerprint, actor=admin_actor)
    assert commands.pinned_host_key("127.0.0.1", sshd.port).key_base64 == (
        sshd.client_key.base64)


def test_a_host_that_does_not_answer_is_a_clear_error(pyramid_request):
    port = free_port()
    with pytest.raises(DriverError, match=f"cannot reach 127.0.0.1:{port}"):
        pyramid_request.find_service(CommandService).fetch_host_key("127.0.0.1", port)
