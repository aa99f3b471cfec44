"""Errors of the command executors (shared by the SSH and the local executor)."""

from __future__ import annotations

from engine.errors import DriverError


class CommandTimeout(DriverError):
    """The command did not finish within its timeout; it was killed (or its channel closed).

    ``stdout`` and ``stderr`` hold what it wrote until then."""

    def __init__(self, timeout_s: float, *, stdout: bytes = b"", stderr: bytes = b"") -> None:
        super().__init__(f"timed out after {format_seconds(timeout_s)} s")
        self.timeout_s, self.stdout, self.stderr = timeout_s, stdout, stderr


class CommandNotRunnable(DriverError):
    """The command cannot run at all as queued (no such program, a resource without an IP
    address, an unknown executor): retrying would not help."""


def format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
