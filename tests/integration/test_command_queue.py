"""The command queue end to end against a real sshd: machines name their SSH target in the
database, one pooled connection per endpoint, retries exhausted → error event → an admin
re-runs the command from the console → done; and the CLI."""

from __future__ import annotations

import importlib
import os
import pathlib
import signal
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.commands.models import Command, CommandState
from engine.commands.services import CommandService
from engine.commands.ssh import SshPool, SshTarget, SshTimeout
from engine.commands.targets import POOL_KEY, worker_pool
from engine.datacenter.models import Storage
from engine.errors import ValidationError
from engine.events.models import Event, EventLevel
from tests.conftest import commit
from tests.functional.test_admin_support import admin_login
from tests.integration.conftest import Sshd, free_port
from tests.integration.test_command_worker import (
    ADMIN,
    add_machine,
    enqueue,
    event_names,
    reload,
    session_processes,
    set_ssh_settings,
    work,
)

cli = importlib.import_module("engine.cli.main")  # engine.cli.main is also the click group


def accepted_logins(sshd: Sshd) -> int:
    return sshd.log_text().count("Accepted publickey")


@pytest.fixture
def settings_at_a_closed_port(registry: Any, sshd: Sshd, monkeypatch: pytest.MonkeyPatch,
                              tmp_path: pathlib.Path) -> None:
    """The ``qrm.ssh.*`` defaults lead nowhere (a closed port, no key): only a machine's own
    SSH target reaches the sshd. Key references are names under ``key_dir``; host keys are
    pinned at first contact."""
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    (key_dir / "engine_ed25519").write_bytes(sshd.client_key.private_path.read_bytes())
    (key_dir / "engine_ed25519").chmod(0o600)
    set_ssh_settings(registry, monkeypatch, port=str(free_port()), user="nobody-here",
                     key_dir=str(key_dir), key_file="", known_hosts="",
                     host_key_policy="accept-new")


def point_at(request: Any, machine: Any, sshd: Sshd, **kw: Any) -> None:
    values = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
              "key": "engine_ed25519", **kw}
    machine = request.dbsession.get(type(machine), machine.id)
    request.find_service(CommandService).set_ssh_target(machine, actor=ADMIN, **values)
    commit(request)


# -- SSH targets in the database --------------------------------------------------------------
@pytest.mark.usefixtures("settings_at_a_closed_port")
def test_a_resource_s_own_ssh_target_is_used(pyramid_request, registry, sshd):
    machine = add_machine(pyramid_request, ip="192.0.2.1")  # its IP is not where sshd is
    point_at(pyramid_request, machine, sshd)
    command = enqueue(pyramid_request, machine, ["id", "-un"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.output) == (CommandState.DONE, f"{sshd.user}\n")
    started = next(event for event in pyramid_request.dbsession.scalars(
        select(Event).where(Event.name == "command.started", Event.object_id == command.id)))
    assert f"{sshd.user}@[127.0.0.1]:{sshd.port}" in started.message


@pytest.mark.usefixtures("settings_at_a_closed_port")
def test_a_storage_host_runs_commands_at_its_ssh_target(pyramid_request, registry, sshd):
    storage = Storage(name="lvm-1", storage_type="lvm")
    pyramid_request.dbsession.add(storage)
    pyramid_request.dbsession.flush()
    point_at(pyramid_request, storage, sshd)
    command = pyramid_request.find_service(CommandService).enqueue(
        None, ["echo", "vg0"], actor=ADMIN, storage=storage)
    commit(pyramid_request)

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.output) == (CommandState.DONE, "vg0\n")


def test_storage_without_an_address_fails_clearly(pyramid_request, registry):
    storage = Storage(name="nowhere", storage_type="lvm")
    pyramid_request.dbsession.add(storage)
    pyramid_request.dbsession.flush()
    command = pyramid_request.find_service(CommandService).enqueue(
        None, ["true"], actor=ADMIN, storage=storage)
    commit(pyramid_request)

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert command.state is CommandState.FAILED
    assert command.error == (f"storage {storage.id} (nowhere) has no SSH host and no "
                             "resource with an IP address")


@pytest.mark.parametrize("key", ["-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn…",
                                 "../etc/shadow", "keys/id_ed25519"])
def test_key_material_and_relative_paths_are_no_key_reference(pyramid_request, key):
    machine = add_machine(pyramid_request)

    with pytest.raises(ValidationError, match="neither a key file's name") as refused:
        pyramid_request.find_service(CommandService).set_ssh_target(machine, key=key,
                                                                    actor=ADMIN)
    assert refused.value.field == "ssh_key"
    assert "PRIVATE KEY-----\nb3" not in refused.value.message


def test_a_key_name_without_key_dir_is_refused_at_run_time(pyramid_request, registry,
                                                           monkeypatch):
    set_ssh_settings(registry, monkeypatch, key_dir="")
    machine = add_machine(pyramid_request)
    machine = pyramid_request.dbsession.get(type(machine), machine.id)
    pyramid_request.find_service(CommandService).set_ssh_target(machine, key="engine_key",
                                                                actor=ADMIN)
    command = enqueue(pyramid_request, machine, ["true"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert command.state is CommandState.FAILED
    assert command.error == ("SSH key 'engine_key' names a file under qrm.ssh.key_dir, "
                             "which is not set")


# -- one connection per endpoint --------------------------------------------------------------
@pytest.mark.usefixtures("settings_at_a_closed_port")
def test_commands_to_one_host_share_one_connection(pyramid_request, registry, sshd):
    machine = add_machine(pyramid_request)
    point_at(pyramid_request, machine, sshd)
    commands = [enqueue(pyramid_request, machine, ["echo", str(n)]) for n in range(3)]

    assert work(registry) == 3
    pool = registry[POOL_KEY]
    first_connection = pool.connection(SshTarget("127.0.0.1", sshd.port, sshd.user))
    later = enqueue(pyramid_request, machine, ["echo", "later"])
    assert work(registry) == 1

    assert [reload(pyramid_request, c).output for c in commands] == ["0\n", "1\n", "2\n"]
    assert reload(pyramid_request, later).state is CommandState.DONE
    assert pool.connects == 1
    assert accepted_logins(sshd) == 1
    assert pool.connection(SshTarget("127.0.0.1", sshd.port, sshd.user)) is first_connection


@pytest.mark.usefixtures("settings_at_a_closed_port")
def test_a_broken_connection_is_dropped_and_opened_again(pyramid_request, registry, sshd):
    machine = add_machine(pyramid_request)
    point_at(pyramid_request, machine, sshd)
    first = enqueue(pyramid_request, machine, ["echo", "one"])
    assert work(registry) == 1
    for pid in session_processes(sshd):  # the pooled connection's sshd process
        os.kill(pid, signal.SIGKILL)

    second = enqueue(pyramid_request, machine, ["echo", "two"])
    assert work(registry) == 1

    assert reload(pyramid_request, first).output == "one\n"
    second = reload(pyramid_request, second)
    assert (second.state, second.attempts, second.output) == (CommandState.DONE, 1, "two\n")
    assert worker_pool(registry).connects == 2
    assert accepted_logins(sshd) == 2


def test_pool_run_times_out_and_keeps_the_connection_usable(sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    target = SshTarget("127.0.0.1", sshd.port, sshd.user, str(sshd.client_key.private_path),
                       str(known_hosts))
    pool = SshPool()
    try:
        with pytest.raises(SshTimeout, match=r"timed out after 0\.5 s"):
            pool.run(target, ["sh", "-c", "while echo tick; do sleep 0.1; done"], 0.5)
        assert pool.run(target, ["sh", "-c", "cat; exit 4"], 10, input="back\n") == (
            4, b"back\n", b"")
        assert pool.connects == 1
    finally:
        pool.close()


def test_threads_share_the_pool_s_one_connection(sshd, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    target = SshTarget("127.0.0.1", sshd.port, sshd.user, str(sshd.client_key.private_path),
                       str(known_hosts))
    pool = SshPool()
    results: dict[int, Any] = {}

    def run_some(first: int) -> None:
        for n in range(first, first + 5):
            try:
                results[n] = pool.run(target, ["echo", str(n)], 10)
            except Exception as error:  # reported below
                results[n] = error

    threads = [threading.Thread(target=run_some, args=(first,)) for first in (0, 5, 10)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert results == {n: (0, f"{n}\n".encode(), b"") for n in range(15)}
        assert pool.connects == 1
        assert accepted_logins(sshd) == 1
    finally:
        pool.close()


# -- the "done when": retries exhausted → error event → re-run from the console → done ---------
@pytest.mark.usefixtures("settings_at_a_closed_port")
def test_exhausted_command_is_re_run_from_the_console_and_succeeds(
        pyramid_request, registry, sshd, testapp, demo_cloud):
    machine = add_machine(pyramid_request, mac="02:00:00:00:c0:99")
    closed = free_port()
    point_at(pyramid_request, machine, sshd, port=closed)  # a wrong port: unreachable
    command = enqueue(pyramid_request, machine, ["sh", "-c", "echo deployed; hostname >&2"])

    for attempt in (1, 2, 3):
        assert work(registry) == 1
        command = reload(pyramid_request, command)
        assert command.attempts == attempt
        if attempt < 3:
            assert command.state is CommandState.QUEUED
            command.not_before = command.created_at  # skip the back-off pause
            commit(pyramid_request)
    assert command.state is CommandState.FAILED
    assert f"cannot reach [127.0.0.1]:{closed}" in command.error
    failed = pyramid_request.dbsession.scalars(
        select(Event).where(Event.name == "command.failed", Event.object_id == command.id)
    ).one()
    assert (failed.level, failed.command_id) == (EventLevel.ERROR, command.id)
    assert failed.message.startswith(f"command {command.id} failed after 3 of 3 attempts: ")

    # the admin finds it in the event log, fixes the machine's target, re-runs it
    admin_login(testapp)
    events = testapp.get("/admin/events", params={"errors": "1"})
    link = events.html.find("tr", attrs={"data-event": str(failed.id)}).find(
        "a", class_="command-link")
    detail = testapp.get(link["href"])
    assert "cannot reach" in detail.html.find(id="command-error").get_text()
    point_at(pyramid_request, machine, sshd)
    (form,) = [form for form in detail.forms.values() if form.action.endswith("/rerun")]
    rerun = form.submit().follow()
    assert f"Command {command.id} is queued again." in rerun
    assert reload(pyramid_request, command).state is CommandState.QUEUED

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts, command.exit_code) == (CommandState.DONE, 1, 0)
    assert command.output.startswith("deployed\n")
    names = event_names(pyramid_request, command)
    assert names[-4:] == ["command.failed", "command.rerun", "command.started", "command.done"]
    page = testapp.get(f"/admin/commands/{command.id}")
    assert "deployed" in page.html.find(id="command-output").get_text()


# -- the CLI ----------------------------------------------------------------------------------
@pytest.fixture
def cli_on_test_db(registry: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(cli.Context, "registry", property(lambda self: registry))
    monkeypatch.setattr(cli, "setup_logging", lambda _uri: None)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli.main, ["-c", "development.ini", *args])

    return invoke


def test_cli_lists_commands_and_re_runs_a_failed_one(pyramid_request, registry, tmp_path,
                                                     cli_on_test_db):
    flag = tmp_path / "flag"
    failing = enqueue(pyramid_request, None, ["test", "-e", str(flag)], executor="local")
    assert work(registry) == 1
    done = enqueue(pyramid_request, None, ["true"], executor="local")
    assert work(registry) == 1
    queued = enqueue(pyramid_request, None, ["echo", "two words"], executor="local")

    listing = cli_on_test_db("commands", "list")
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].split() == ["ID", "STATE", "TARGET", "ARGV", "ATTEMPTS", "EXIT", "WHEN",
                                "(UTC)"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [str(queued.id), "queued"], [str(done.id), "done"], [str(failing.id), "failed"]]
    assert "echo 'two words'" in lines[1]
    assert lines[3].split()[2] == "local"
    assert " 1/3 " in lines[3]

    only_failed = cli_on_test_db("commands", "list", "--state", "failed")
    assert [line.split()[0] for line in only_failed.output.splitlines()[1:]] == [
        str(failing.id)]

    refused = cli_on_test_db("commands", "rerun", str(done.id))
    assert refused.exit_code == 1
    assert f"command {done.id} is done, not failed" in refused.output

    flag.touch()
    rerun = cli_on_test_db("commands", "rerun", str(failing.id))
    assert (rerun.exit_code, rerun.output) == (0, f"command {failing.id} queued again\n")
    assert work(registry) == 2
    assert reload(pyramid_request, failing).state is CommandState.DONE
    assert reload(pyramid_request, failing).actor == ADMIN.label
    assert "system:cli" in [event.actor for event in pyramid_request.dbsession.scalars(
        select(Event).where(Event.name == "command.rerun", Event.object_id == failing.id))]
    assert reload(pyramid_request, queued).state is CommandState.DONE
    assert isinstance(pyramid_request.dbsession.get(Command, failing.id), Command)
