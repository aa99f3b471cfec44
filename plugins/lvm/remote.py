"""Running the storage host's commands: over SSH, through the command queue's SSH pool
(``engine.commands.ssh``: one connection per endpoint, host keys pinned in the database).

Every command is an argument vector; the remote side receives ``shlex.join(argv)``, so each
element arrives as one argument whatever it holds. Where a command needs the shell (writing
a file, "run this only if that program exists") the script is a constant of this module and
the values are passed to it as positional parameters (``sh -c SCRIPT sh VALUE…``), never
pasted into it.

SSH failures become the engine's errors: no connection (refused, timed out, broken
handshake) or one lost while a command ran → ``HostUnreachable``; a refused host key or
login, a timeout → ``DriverError`` saying so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from engine.commands import ssh
from engine.errors import DriverError
from engine.plugins.drivers import HostUnreachable


@dataclasses.dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def message(self) -> str:
        """stderr (else stdout), trimmed, for an error message."""
        text = (self.stderr.strip() or self.stdout.strip())
        return text if len(text) <= 600 else "…" + text[-600:]


class Remote:
    """The storage host of one storage: ``run(argv)`` there as root (``sudo -n`` first if
    configured)."""

    def __init__(self, *, storage_name: str, target: ssh.SshTarget, pool: Any,
                 sudo: bool = False, timeout: float = 60) -> None:
        self.storage_name, self.target, self.pool = storage_name, target, pool
        self.sudo, self.timeout = sudo, timeout

    @property
    def where(self) -> str:
        return f"storage {self.storage_name} ({self.target.user}@{self.target.name})"

    def run(self, argv: Sequence[str], *, input: str | None = None,
            timeout: float | None = None) -> Result:
        """Run ``argv``; its exit code is the caller's to judge (127: not installed)."""
        argv = list(argv)
        if self.sudo:
            argv = ["sudo", "-n", "--", *argv]
        try:
            code, out, err = self.pool.run(self.target, argv, timeout or self.timeout,
                                           input=input)
        except (ssh.SshUnreachable, ssh.SshConnectionLost) as error:
            raise HostUnreachable(f"{self.where} does not answer: {error.message}") from error
        except ssh.SshTimeout as error:
            raise DriverError(f"{self.where}: {argv[0]} {argv[1] if len(argv) > 1 else ''} "
                              f"{error.message}".replace("  ", " ")) from error
        except ssh.SshError as error:
            raise DriverError(f"{self.where}: {error.message}") from error
        return Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def check(self, argv: Sequence[str], *, doing: str, input: str | None = None,
              timeout: float | None = None) -> Result:
        """Run ``argv`` and raise DriverError (what it was ``doing``, its output) unless it
        exits 0."""
        result = self.run(argv, input=input, timeout=timeout)
        if not result.ok:
            raise self.failure(result, doing=doing, program=argv[0])
        return result

    def failure(self, result: Result, *, doing: str, program: str) -> DriverError:
        if result.exit_code == 127:
            return DriverError(f"{self.where}: cannot {doing}: {program} is not installed "
                               f"there ({result.message})")
        return DriverError(f"{self.where}: cannot {doing} (exit {result.exit_code}): "
                           f"{result.message}")
