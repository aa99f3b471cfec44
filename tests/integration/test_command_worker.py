"""The command worker against a real OpenSSH sshd on 127.0.0.1 (the resource's "machine"),
and the local executor. The worker runs as the scheduler runs it: claim, run and outcome each
in their own transaction."""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import signal
import sys
import threading
import time
from typing import Any

import pytest
from sqlalchemy import select

from engine.commands.executors import Outcome
from engine.commands.models import Command, CommandState, SshHostKey
from engine.commands.services import CommandService
from engine.commands.ssh import (
    SshAuthenticationFailed,
    SshTarget,
    SshUnreachable,
    fingerprint,
    run,
)
from engine.commands.worker import (
    MAX_STORED_OUTPUT,
    claim_next,
    drain_commands_job,
    record_outcome,
    stored_output,
)
from engine.datacenter.models import Resource, VirtualizationKind
from engine.datacenter.services import DatacenterService
from engine.db import utcnow
from engine.events.models import Event, EventLevel
from engine.events.services import EventService
from engine.scheduler.runner import run_in_transaction, run_job
from engine.security import Actor
from tests.conftest import commit
from tests.integration.conftest import Sshd, free_port, make_key

ADMIN = Actor.admin("alice")


# -- helpers ----------------------------------------------------------------------------------
def set_ssh_settings(registry: Any, monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setitem(registry.settings, f"qrm.ssh.{key}", value)


@pytest.fixture
def known_hosts(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "known_hosts"


@pytest.fixture
def ssh_settings(registry: Any, sshd: Sshd, known_hosts: pathlib.Path,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's SSH settings pointing at ``sshd``, its host key already known."""
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    set_ssh_settings(registry, monkeypatch, port=str(sshd.port), user=sshd.user,
                     key_file=str(sshd.client_key.private_path), known_hosts=str(known_hosts),
                     host_key_policy="reject")


def add_machine(request: Any, *, ip: str | None = "127.0.0.1",
                mac: str = "02:00:00:00:c0:01") -> Resource:
    resource = request.find_service(DatacenterService).add_resource(
        mac=mac, kind=VirtualizationKind.PHYSICAL, virtualization_type="physical", ip=ip,
        name="ssh-machine", actor=ADMIN)
    commit(request)
    return resource


@pytest.fixture
def machine(pyramid_request: Any) -> Resource:
    """A physical resource at 127.0.0.1: its "machine" is the test's sshd."""
    return add_machine(pyramid_request)


def enqueue(request: Any, resource: Resource | None, argv: list[str], **kw: Any) -> Command:
    command = request.find_service(CommandService).enqueue(resource, argv, actor=ADMIN, **kw)
    commit(request)
    return command


def work(registry: Any) -> int:
    """One run of the commands.drain job (errors raised, not logged)."""
    return run_in_transaction(registry, drain_commands_job)


def reload(request: Any, command: Command) -> Command:
    request.dbsession.expire_all()
    return request.dbsession.get(Command, command.id)


def event_names(request: Any, command: Command) -> list[str]:
    events = request.find_service(EventService).recent(object_type="command",
                                                       object_id=command.id)
    return [event.name for event in reversed(events)]


def running_processes(argv: list[str]) -> list[int]:
    """PIDs of processes on this machine whose command line is exactly ``argv``."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if cmdline.read_bytes() == wanted:
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def wait_until_gone(argv: list[str], within_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := running_processes(argv)) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a process table, bounded by the deadline
    return left


# -- running over SSH -------------------------------------------------------------------------
@pytest.mark.usefixtures("ssh_settings")
def test_ssh_command_records_exit_code_and_output(pyramid_request, registry, machine):
    command = enqueue(pyramid_request, machine,
                      ["sh", "-c", "echo to stdout; echo to stderr >&2"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert command.state is CommandState.DONE
    assert command.exit_code == 0
    assert command.output == "to stdout\nto stderr\n"
    assert command.attempts == 1
    assert command.error is None
    assert command.claimed_until is None
    assert command.started_at <= command.finished_at
    assert event_names(pyramid_request, command) == [
        "command.queued", "command.started", "command.done"]


@pytest.mark.usefixtures("ssh_settings")
def test_non_zero_exit_fails_and_is_not_retried(pyramid_request, registry, machine):
    command = enqueue(pyramid_request, machine, ["sh", "-c", "echo broken >&2; exit 3"])

    assert work(registry) == 1
    assert work(registry) == 0

    command = reload(pyramid_request, command)
    assert (command.state, command.exit_code, command.attempts) == (CommandState.FAILED, 3, 1)
    assert command.output == "broken\n"
    failed = pyramid_request.dbsession.scalars(
        select(Event).where(Event.name == "command.failed", Event.object_id == command.id)
    ).one()
    assert failed.command_id == command.id
    assert failed.actor == "system:commands"
    assert "exit 3" in failed.message


@pytest.mark.usefixtures("ssh_settings")
def test_timeout_fails_the_command_and_closes_its_channel(pyramid_request, registry, machine):
    # a command that keeps writing ends once its channel is closed (SIGPIPE); sshd refuses
    # the kill signal for root logins, so one that only sleeps would outlive the timeout
    argv = ["sh", "-c", "while echo tick; do sleep 0.1; done", "ticker-37"]
    command = enqueue(pyramid_request, machine, [*argv], timeout_s=1)

    started = time.monotonic()
    assert work(registry) == 1
    assert time.monotonic() - started < 10

    command = reload(pyramid_request, command)
    assert command.state is CommandState.FAILED
    assert command.error == "timed out after 1 s"
    assert command.exit_code is None
    assert command.attempts == 1
    assert command.output.startswith("tick\n")
    assert wait_until_gone(argv) == []
    assert "timed out after 1 s" in pyramid_request.dbsession.scalars(
        select(Event.message).where(Event.name == "command.failed")).one()


def session_processes(sshd: Sshd) -> list[int]:
    """The per-connection processes of ``sshd`` (its children)."""
    children = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == sshd.process.pid:
            children.append(int(stat.parent.name))
    return children


@pytest.mark.usefixtures("ssh_settings")
def test_connection_lost_while_running_fails_without_retry(pyramid_request, registry, machine,
                                                           sshd):
    command = enqueue(pyramid_request, machine, ["sh", "-c", "echo started; sleep 1.75"],
                      timeout_s=20)

    def kill_the_session() -> None:
        # once the remote command runs, kill the sshd process serving its connection
        deadline = time.monotonic() + 10
        while not running_processes(["sleep", "1.75"]) and time.monotonic() < deadline:
            time.sleep(0.02)  # polling the process table, bounded by the deadline
        for pid in session_processes(sshd):
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_the_session)
    killer.start()
    assert work(registry) == 1
    killer.join(timeout=15)

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert command.error.startswith(
        f"connection to [127.0.0.1]:{sshd.port} lost while the command ran")
    assert wait_until_gone(["sleep", "1.75"]) == []  # the orphan ends by itself


@pytest.mark.usefixtures("ssh_settings")
def test_argv_reaches_the_remote_side_as_separate_arguments(pyramid_request, registry,
                                                            machine, tmp_path):
    marker = tmp_path / "injected"
    arguments = ["two words", "it's", 'say "hi"', f"a; touch {marker}", f"$(touch {marker})",
                 f"`touch {marker}`", "*", "", "back\\slash", f"| touch {marker}"]
    command = enqueue(pyramid_request, machine, ["printf", "<%s>\\n", *arguments])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert command.state is CommandState.DONE
    assert command.output == "".join(f"<{argument}>\n" for argument in arguments)
    assert not marker.exists()


@pytest.mark.usefixtures("ssh_settings")
def test_resource_without_ip_fails_with_a_clear_error(pyramid_request, registry):
    resource = add_machine(pyramid_request, ip=None)
    command = enqueue(pyramid_request, resource, ["true"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert command.state is CommandState.FAILED
    assert command.error == f"resource {resource.id} (ssh-machine) has no IP address"
    assert command.attempts == 1


def test_unreachable_target_is_retried_with_back_off_then_failed(pyramid_request, registry,
                                                                 machine, monkeypatch):
    closed_port = free_port()
    set_ssh_settings(registry, monkeypatch, port=str(closed_port), host_key_policy="reject")
    command = enqueue(pyramid_request, machine, ["true"])

    for attempt, pause_s in [(1, 30), (2, 60)]:
        before = utcnow()
        assert work(registry) == 1
        after = utcnow()
        command = reload(pyramid_request, command)
        assert (command.state, command.attempts) == (CommandState.QUEUED, attempt)
        assert f"cannot reach [127.0.0.1]:{closed_port}" in command.error
        pause = dt.timedelta(seconds=pause_s)
        assert before + pause <= command.not_before <= after + pause
        assert work(registry) == 0  # not due before its pause is over
        command.not_before = utcnow() - dt.timedelta(seconds=1)
        commit(pyramid_request)

    assert work(registry) == 1
    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 3)
    assert command.error.endswith("(gave up after 3 attempts)")
    assert event_names(pyramid_request, command) == [
        "command.queued", *["command.started", "command.retry"] * 2,
        "command.started", "command.failed"]


# -- host keys --------------------------------------------------------------------------------
@pytest.fixture
def configure_ssh(registry, sshd, known_hosts, monkeypatch) -> Any:
    """Point the SSH settings at ``sshd`` with ``policy`` and a known_hosts file holding
    ``recorded`` (None: no file); returns the sshd."""

    def configure(policy: str, recorded: str | None, *,
                  known_hosts_file: pathlib.Path = known_hosts) -> Sshd:
        if recorded is not None:
            known_hosts_file.write_text(recorded)
        set_ssh_settings(registry, monkeypatch, port=str(sshd.port), user=sshd.user,
                         key_file=str(sshd.client_key.private_path),
                         known_hosts=str(known_hosts_file), host_key_policy=policy)
        return sshd

    return configure


def pinned_keys(request: Any) -> list[tuple[str, int, str, str]]:
    request.dbsession.expire_all()
    return [(row.host, row.port, row.key_type, row.key_base64) for row in
            request.dbsession.scalars(select(SshHostKey).order_by(SshHostKey.id))]


def pin(request: Any, port: int, key: Any) -> None:
    request.dbsession.add(SshHostKey(host="127.0.0.1", port=port, key_type=key.key_type,
                                     key_base64=key.base64))
    commit(request)


def test_unknown_host_key_is_refused_by_the_reject_policy(pyramid_request, registry, machine,
                                                          configure_ssh, known_hosts):
    sshd = configure_ssh("reject", recorded="")
    command = enqueue(pyramid_request, machine, ["true"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert command.error.startswith(f"unknown host key for [127.0.0.1]:{sshd.port} ")
    assert pinned_keys(pyramid_request) == []


def test_accept_new_pins_the_first_host_key_in_the_database(pyramid_request, registry,
                                                            machine, configure_ssh,
                                                            known_hosts):
    sshd = configure_ssh("accept-new", recorded=None)
    first = enqueue(pyramid_request, machine, ["echo", "first"])
    second = enqueue(pyramid_request, machine, ["echo", "second"])

    assert work(registry) == 2

    assert reload(pyramid_request, first).state is CommandState.DONE
    assert reload(pyramid_request, second).output == "second\n"
    assert pinned_keys(pyramid_request) == [
        ("127.0.0.1", sshd.port, sshd.host_key.key_type, sshd.host_key.base64)]
    assert not known_hosts.exists()  # the database is where keys are pinned
    pinned = pyramid_request.dbsession.scalars(
        select(Event).where(Event.name == "ssh.host_key_pinned")).one()
    assert fingerprint(sshd.host_key.base64) in pinned.message


def test_known_hosts_vouches_for_a_key_that_is_then_pinned(pyramid_request, registry,
                                                           machine, configure_ssh):
    sshd = configure_ssh("reject", recorded=None)
    configure_ssh("reject", recorded=sshd.known_hosts_line + "\n")
    command = enqueue(pyramid_request, machine, ["true"])

    assert work(registry) == 1

    assert reload(pyramid_request, command).state is CommandState.DONE
    assert pinned_keys(pyramid_request) == [
        ("127.0.0.1", sshd.port, sshd.host_key.key_type, sshd.host_key.base64)]


def test_changed_host_key_is_refused_even_by_accept_new(pyramid_request, registry, machine,
                                                        configure_ssh, known_hosts):
    """The key pinned in the database is not the one the host offers: refused, whatever the
    policy and whatever a known_hosts file says, with both fingerprints and an error event."""
    sshd = configure_ssh("accept-new", recorded=None)
    impostor = make_key(known_hosts.parent / "other_host_key")
    known_hosts.write_text(sshd.known_hosts_line + "\n")  # vouches for the real key: no matter
    pin(pyramid_request, sshd.port, impostor)
    command = enqueue(pyramid_request, machine, ["true"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert command.error == (
        f"host key of [127.0.0.1]:{sshd.port} changed: it offers {sshd.host_key.key_type} "
        f"{fingerprint(sshd.host_key.base64)}, the pinned key is {impostor.key_type} "
        f"{fingerprint(impostor.base64)}; refused")
    assert pinned_keys(pyramid_request) == [
        ("127.0.0.1", sshd.port, impostor.key_type, impostor.base64)]
    changed = pyramid_request.dbsession.scalars(
        select(Event).where(Event.name == "ssh.host_key_changed")).one()
    assert changed.level is EventLevel.ERROR
    assert f"[127.0.0.1]:{sshd.port}" in changed.message
    assert fingerprint(impostor.base64) in changed.message
    assert fingerprint(sshd.host_key.base64) in changed.message
    assert "Accepted publickey" not in sshd.log_text()  # refused before logging in


def test_a_known_hosts_file_disagreeing_with_the_host_is_refused(pyramid_request, registry,
                                                                  machine, configure_ssh,
                                                                  known_hosts):
    impostor = make_key(known_hosts.parent / "other_host_key")
    port = configure_ssh("accept-new", recorded=None).port
    known_hosts.write_text(f"[127.0.0.1]:{port} {impostor.key_type} {impostor.base64}\n")
    command = enqueue(pyramid_request, machine, ["true"])

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert command.error.startswith(f"host key of [127.0.0.1]:{port} changed")
    assert fingerprint(impostor.base64) in command.error
    assert pinned_keys(pyramid_request) == []


# -- the SSH module on its own ----------------------------------------------------------------
def target_for(sshd: Sshd, known_hosts: pathlib.Path, **kw: Any) -> SshTarget:
    known_hosts.write_text(sshd.known_hosts_line + "\n")
    values = {"host": "127.0.0.1", "port": sshd.port, "user": sshd.user,
              "key_file": str(sshd.client_key.private_path), "known_hosts": str(known_hosts)}
    return SshTarget(**{**values, **kw})


def test_run_sends_input_and_returns_exit_code_stdout_and_stderr(sshd, known_hosts):
    target = target_for(sshd, known_hosts)

    assert run(target, ["sh", "-c", "cat; echo oops >&2; exit 7"], 10, input="hello\n") == (
        7, b"hello\n", b"oops\n")


def test_run_with_a_key_the_host_does_not_accept_raises_authentication_failed(
        sshd, known_hosts, tmp_path):
    stranger = make_key(tmp_path / "stranger")
    target = target_for(sshd, known_hosts, key_file=str(stranger.private_path))

    with pytest.raises(SshAuthenticationFailed):
        run(target, ["true"], 10)


def test_run_against_a_closed_port_raises_unreachable():
    with pytest.raises(SshUnreachable, match=r"cannot reach \[127.0.0.1\]:\d+"):
        run(SshTarget("127.0.0.1", port=free_port()), ["true"], 5)


def test_target_from_settings_reads_the_ssh_settings():
    target = SshTarget.from_settings({"qrm.ssh.port": "2222", "qrm.ssh.user": "qrm",
                                      "qrm.ssh.key_file": "/etc/qrm/id_ed25519",
                                      "qrm.ssh.known_hosts": "/etc/qrm/known_hosts",
                                      "qrm.ssh.host_key_policy": "accept-new"}, host="10.0.0.5")

    assert target == SshTarget("10.0.0.5", 2222, "qrm", "/etc/qrm/id_ed25519",
                               "/etc/qrm/known_hosts", "accept-new")
    assert SshTarget.from_settings({}, host="10.0.0.5") == SshTarget("10.0.0.5")
    with pytest.raises(ValueError, match="unknown host key policy 'yes'"):
        SshTarget.from_settings({"qrm.ssh.host_key_policy": "yes"}, host="10.0.0.5")


# -- claims -----------------------------------------------------------------------------------
def expire_claim(request: Any, command: Command) -> None:
    command = reload(request, command)
    command.claimed_until = utcnow() - dt.timedelta(seconds=1)
    commit(request)


def test_expired_claim_of_a_crashed_worker_is_claimed_again(pyramid_request, registry):
    command = enqueue(pyramid_request, None, ["true"], executor="local")
    crashed = run_in_transaction(registry, claim_next, owner="crashed-worker")
    assert crashed.command_id == command.id

    assert work(registry) == 0  # its claim still holds
    expire_claim(pyramid_request, command)
    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.DONE, 2)
    names = event_names(pyramid_request, command)
    assert names == ["command.queued", "command.started", "command.reclaimed",
                     "command.started", "command.done"]

    # the crashed worker comes back late: its outcome no longer counts
    run_in_transaction(registry, record_outcome, claim=crashed,
                       outcome=Outcome(1, b"late", b""))
    command = reload(pyramid_request, command)
    assert (command.state, command.exit_code) == (CommandState.DONE, 0)
    assert event_names(pyramid_request, command)[-1] == "command.outcome_discarded"


def test_command_whose_claims_keep_running_out_fails_after_max_attempts(pyramid_request,
                                                                        registry):
    command = enqueue(pyramid_request, None, ["true"], executor="local")
    command = reload(pyramid_request, command)
    command.max_attempts = 1
    commit(pyramid_request)
    run_in_transaction(registry, claim_next, owner="crashed-worker")
    expire_claim(pyramid_request, command)

    assert work(registry) == 0

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert command.error.startswith("the worker running it stopped without an outcome")


LEDGER_SCRIPT = """
import os, sys, time
with open(sys.argv[1], "a") as ledger:
    ledger.write(sys.argv[2] + "\\n")
time.sleep(0.02)
"""


def test_two_workers_never_run_one_command_twice(committing_registry, tmp_path):
    ledger = tmp_path / "ledger"
    count = 24

    def enqueue_all(request: Any) -> list[int]:
        service = request.find_service(CommandService)
        return [service.enqueue(None, [sys.executable, "-c", LEDGER_SCRIPT, str(ledger), str(n)],
                                executor="local", actor=ADMIN).id for n in range(count)]

    ids = run_in_transaction(committing_registry, enqueue_all)
    start = threading.Barrier(2)
    ran: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait(timeout=10)
            ran.append(run_in_transaction(committing_registry, drain_commands_job))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=40)

    assert errors == []
    assert sum(ran) == count
    assert sorted(int(line) for line in ledger.read_text().split()) == list(range(count))

    def outcome(request: Any) -> tuple[list[Any], int]:
        rows = request.dbsession.execute(
            select(Command.state, Command.attempts).where(Command.id.in_(ids))).all()
        started = request.dbsession.scalars(
            select(Event.object_id).where(Event.name == "command.started")).all()
        return rows, len(started)

    rows, started = run_in_transaction(committing_registry, outcome)
    assert set(rows) == {(CommandState.DONE, 1)}
    assert started == count


def test_commands_drain_is_a_registered_job_of_every_scheduler_process(pyramid_request,
                                                                       registry):
    job = registry["qrm.jobs"]["commands.drain"]
    assert (job.interval_s, job.singleton) == (2.0, False)
    command = enqueue(pyramid_request, None, ["true"], executor="local")

    assert run_job(registry, job) == 1
    assert reload(pyramid_request, command).state is CommandState.DONE


def test_failed_command_can_be_queued_again(pyramid_request, registry, tmp_path):
    flag = tmp_path / "flag"
    command = enqueue(pyramid_request, None, ["test", "-e", str(flag)], executor="local")
    assert work(registry) == 1
    assert reload(pyramid_request, command).state is CommandState.FAILED
    flag.touch()

    pyramid_request.find_service(CommandService).rerun(command.id, actor=ADMIN)
    commit(pyramid_request)
    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts, command.exit_code) == (CommandState.DONE, 1, 0)
    assert "command.rerun" in event_names(pyramid_request, command)


# -- the local executor -----------------------------------------------------------------------
def test_local_command_runs_argv_without_a_shell(pyramid_request, registry):
    arguments = ["two words", "$(id)", "a; b", "'quoted'"]
    command = enqueue(pyramid_request, None,
                      [sys.executable, "-c", "import sys; print(sys.argv[1:])", *arguments],
                      executor="local")

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.exit_code) == (CommandState.DONE, 0)
    assert command.output == f"{arguments}\n"


def test_local_command_times_out_and_is_killed(pyramid_request, registry):
    argv = ["sleep", "38.25"]
    command = enqueue(pyramid_request, None, [*argv], executor="local", timeout_s=1)

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.error) == (CommandState.FAILED, "timed out after 1 s")
    assert wait_until_gone(argv) == []


def test_local_command_that_cannot_start_fails_without_retry(pyramid_request, registry):
    command = enqueue(pyramid_request, None, ["/nonexistent/program"], executor="local")

    assert work(registry) == 1

    command = reload(pyramid_request, command)
    assert (command.state, command.attempts) == (CommandState.FAILED, 1)
    assert command.error.startswith("cannot run /nonexistent/program: ")


def test_stored_output_keeps_head_and_tail_with_a_marker():
    output = stored_output(b"H" * 10000 + b"x" * 10000 + b"T" * 10000, b"")

    assert len(output) <= MAX_STORED_OUTPUT
    assert output.startswith("H" * 7000)
    assert output.endswith("T" * 7000)
    assert "characters of output left out" in output
    assert stored_output(b"out", b"err\n") == "out\nerr\n"
