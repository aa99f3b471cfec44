"""Writing the configuration file and reloading the server: outside work, done with no
transaction open, idempotent because the file is derived from the rows.

* The file is rewritten only when its content differs from what the rows say, atomically
  (a temporary file in the same directory, then ``rename``): a server never reads half a
  file.
* The reload hook runs when the server has not been reloaded with this content yet. That
  is recorded beside the file (``.NAME.qrm-state``: the digest of the content the server
  was last reloaded with), after the hook succeeded. A crash between writing and
  recording leaves the old digest there, so the next run reloads: it converges.

The state lives beside the file rather than in the database because it is about this
machine's file and this machine's server; the database learns the outcome from the events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile

from engine.commands.errors import CommandNotRunnable, CommandTimeout
from engine.commands.executors import run_local

#: a failing reload hook is tried this often for one content, then left until it changes
MAX_RELOAD_ATTEMPTS = 5
#: the event quotes this much of the hook's output
OUTPUT_TAIL = 500


@dataclasses.dataclass(frozen=True)
class ReloadOutcome:
    argv: tuple[str, ...]
    attempt: int
    exit_code: int | None
    output: str
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.exit_code == 0


@dataclasses.dataclass(frozen=True)
class WriteOutcome:
    path: str
    digest: str
    written: bool
    reload: ReloadOutcome | None = None
    #: the hook failed MAX_RELOAD_ATTEMPTS times for this content: not tried again
    gave_up: bool = False


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def state_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.qrm-state")


def read_state(path: pathlib.Path) -> dict:
    try:
        state = json.loads(state_path(path).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def atomic_write(path: pathlib.Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` by ``data`` in one step (rename within the directory)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _reload(argv: tuple[str, ...], timeout_s: int, attempt: int) -> ReloadOutcome:
    try:
        exit_code, stdout, stderr = run_local(argv, timeout_s)
    except (CommandTimeout, CommandNotRunnable) as error:
        return ReloadOutcome(argv, attempt, None, "", error=error.message)
    output = (stdout + stderr).decode(errors="replace")[-OUTPUT_TAIL:]
    return ReloadOutcome(argv, attempt, exit_code, output)


def write_config(path: str | pathlib.Path, text: str, *, reload_argv: tuple[str, ...] = (),
                 reload_timeout_s: int = 30) -> WriteOutcome:
    """Bring ``path`` and its server to ``text`` (see the module docstring)."""
    path = pathlib.Path(path)
    data, digest = text.encode(), digest_of(text)
    try:
        written = path.read_bytes() != data
    except FileNotFoundError:
        written = True
    if written:
        atomic_write(path, data)
    state = read_state(path)
    if state.get("reloaded") == digest:
        return WriteOutcome(str(path), digest, written)
    attempts = state.get("attempts", 0) if state.get("digest") == digest else 0
    if not reload_argv:
        outcome = None
        new_state = {"digest": digest, "reloaded": digest, "attempts": 0}
    elif attempts >= MAX_RELOAD_ATTEMPTS:
        return WriteOutcome(str(path), digest, written, gave_up=True)
    else:
        outcome = _reload(reload_argv, reload_timeout_s, attempts + 1)
        new_state = {"digest": digest, "attempts": attempts + 1,
                     "reloaded": digest if outcome.succeeded else state.get("reloaded")}
    atomic_write(state_path(path), json.dumps(new_state).encode(), mode=0o600)
    return WriteOutcome(str(path), digest, written, outcome)
