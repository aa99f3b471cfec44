"""Executors: where a queued command runs. ``ssh`` runs it on its resource (see
:mod:`engine.commands.ssh`), ``local`` on the engine's own machine. Neither uses a shell."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import Sequence

from engine.commands import ssh
from engine.commands.errors import CommandNotRunnable, CommandTimeout

EXECUTORS = ("ssh", "local")
#: commands the resource agent fetches with its reports (engine.boot): never run by the
#: worker; the agent reports their outcome
AGENT_EXECUTOR = "agent"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one attempt: an exit code (the command ran) or an error (it did not
    run, or not to its end). ``retry``: the error was the target being unreachable."""

    exit_code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None
    retry: bool = False

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.exit_code == 0


def run_local(argv: Sequence[str], timeout: float,
              input: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run ``argv`` on this machine (no shell) and return ``(exit_code, stdout, stderr)``.

    On timeout the whole process group is killed and :class:`CommandTimeout` raised; a
    program that cannot be started raises :class:`CommandNotRunnable`. A negative exit code
    is the signal that ended the command."""
    try:
        process = subprocess.Popen(  # noqa: S603 - an argument vector, never a shell string
            list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as error:
        raise CommandNotRunnable(f"cannot run {argv[0]}: {error.strerror or error}") from error
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            stdout, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a child left the group and holds the pipes
            process.kill()
            stdout, stderr = b"", b""
        raise CommandTimeout(timeout, stdout=stdout or b"", stderr=stderr or b"") from None
    return process.returncode, stdout, stderr


def execute(executor: str, argv: Sequence[str], timeout: float, *,
            target: ssh.SshTarget | None = None, pool: ssh.SshPool | None = None) -> Outcome:
    """Run one attempt and describe what happened; never raises for the command's own
    failures (only for programming errors). ``ssh`` runs through ``pool`` (one connection
    per endpoint), or over a connection of its own without one."""
    try:
        if executor == "local":
            exit_code, stdout, stderr = run_local(argv, timeout)
        elif executor == "ssh" and target is not None:
            if pool is not None:
                exit_code, stdout, stderr = pool.run(target, argv, timeout)
            else:
                exit_code, stdout, stderr = ssh.run(target, argv, timeout)
        else:
            raise CommandNotRunnable(f"no target for executor {executor!r}")
    except ssh.SshUnreachable as error:
        return Outcome(None, error=error.message, retry=True)
    except CommandTimeout as error:
        return Outcome(None, error.stdout, error.stderr, error=error.message)
    except (ssh.SshError, CommandNotRunnable) as error:
        return Outcome(None, error=error.message)
    return Outcome(exit_code, stdout, stderr)
