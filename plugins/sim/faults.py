"""Fault injection and the call log of the simulated datacenter, for tests.

The switches live in the state file (``plugins.sim.store``), so they reach every process and
thread that uses it: a test can make the scheduler's fifth ``clone_volume`` fail, or a host stop
answering, without mocking anything of ours.

* ``fail(op, nth=1, times=1, when="before", error="driver")``: calls ``nth`` … ``nth+times-1``
  of ``op`` (counted from now) raise. ``when="before"``: nothing happens; ``when="after"``: the
  effect happens and then the call raises (a crash or a timeout after the effect: the engine
  must find out by asking again). ``error``: ``driver`` (``DriverError``), ``capacity``
  (``CapacityError``), ``unreachable`` (``HostUnreachable``).
* ``unreachable(target)`` / ``reachable(target)``: every call on a host (by MAC), a storage (by
  name) or a physical machine (by MAC) raises ``HostUnreachable``, lists included.
* ``calls(op=None)``: every driver call made, oldest first, with its outcome.
* ``clear()``: no faults, everything reachable, an empty call log.

Every function takes ``where=`` (see ``plugins.sim.store.state_path``); by default the file
named by ``QRM_SIM_STATE`` (the tests' ``sim_state`` fixture sets it per test).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from engine.datacenter.models import normalize_mac
from engine.errors import CapacityError, DriverError, QrmError
from engine.plugins.drivers import HostUnreachable
from plugins.sim.store import Store, now, open_store

T = TypeVar("T")

#: the operations a fault may be set on (driver methods and the physical power switch)
OPERATIONS = frozenset({
    "create_vm", "start_vm", "stop_vm", "reboot_vm", "remove_vm", "list_vms",
    "create_volume", "clone_volume", "snapshot_volume", "resize_volume", "remove_volume",
    "authenticate", "list_volumes",
    "reboot_machine", "halt_machine",
})
ERRORS: dict[str, type[DriverError] | type[CapacityError]] = {
    "driver": DriverError, "capacity": CapacityError, "unreachable": HostUnreachable,
}
PHASES = ("before", "after")
#: how many driver calls the log keeps
CALL_LOG_SIZE = 10_000


@dataclasses.dataclass(frozen=True)
class Call:
    """One driver call as the simulated datacenter saw it."""

    op: str
    #: the host's or machine's MAC, or the storage's name
    target: str
    args: dict[str, Any]
    #: ``ok``, the name of the error it raised, or None while it runs
    outcome: str | None


# -- the switches -------------------------------------------------------------------------------
def fail(op: str, nth: int = 1, times: int = 1, when: str = "before", error: str = "driver",
         *, target: Any = None, where: Any = None) -> None:
    """Make calls ``nth`` to ``nth + times - 1`` of ``op`` (counted from now; on ``target``
    only, if given) raise ``error``, before or after their effect."""
    if op not in OPERATIONS:
        raise ValueError(f"no simulated operation {op!r}; one of {sorted(OPERATIONS)}")
    if when not in PHASES:
        raise ValueError(f"when must be 'before' or 'after', not {when!r}")
    if error not in ERRORS:
        raise ValueError(f"error must be one of {sorted(ERRORS)}, not {error!r}")
    if nth < 1 or times < 1:
        raise ValueError("nth and times count from 1")
    with open_store(where).write() as db:
        db.execute("INSERT INTO fault (op, target, nth, times, phase, error) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (op, None if target is None else target_key(target), nth, times, when,
                    error))


def unreachable(target: Any, *, where: Any = None) -> None:
    """Make a host, a storage or a physical machine stop answering."""
    with open_store(where).write() as db:
        db.execute("INSERT OR IGNORE INTO unreachable (target) VALUES (?)",
                   (target_key(target),))


def reachable(target: Any, *, where: Any = None) -> None:
    """Make it answer again."""
    with open_store(where).write() as db:
        db.execute("DELETE FROM unreachable WHERE target = ?", (target_key(target),))


def clear(*, where: Any = None) -> None:
    """Remove every fault and unreachable mark and empty the call log."""
    with open_store(where).write() as db:
        for table in ("fault", "unreachable", "call"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608  (our own table names)


def calls(op: str | None = None, *, where: Any = None) -> list[Call]:
    """The driver calls made (of ``op`` only, if given), oldest first."""
    query = "SELECT op, target, args, outcome FROM call"
    params: tuple[Any, ...] = ()
    if op is not None:
        query, params = query + " WHERE op = ?", (op,)
    with open_store(where).read() as db:
        rows = db.execute(query + " ORDER BY id", params).fetchall()
    return [Call(row["op"], row["target"], json.loads(row["args"]), row["outcome"])
            for row in rows]


def target_key(target: Any) -> str:
    """How a target is named in the store: a MAC (normalised) for hosts and machines, the
    name for storages (``StorageRef``) and anything else that is not a MAC."""
    if hasattr(target, "storage_type"):
        return str(target.name)
    if hasattr(target, "mac"):
        return normalize_mac(target.mac)
    text = str(target)
    try:
        return normalize_mac(text)
    except ValueError:
        return text


# -- used by the drivers ------------------------------------------------------------------------
def perform(store: Store, op: str, target: str, args: dict[str, Any],
            effect: Callable[[sqlite3.Connection], T]) -> T:
    """Make one simulated call: log it, honour the switches, run ``effect`` in a write
    transaction of its own, record the outcome. Trouble with the state file itself (locked
    for too long, unreadable) is a ``DriverError``, as a backend's own trouble would be."""
    try:
        return _perform(store, op, target, args, effect)
    except sqlite3.Error as error:
        raise DriverError(f"simulated datacenter state {store.path}: {error}") from error


def _perform(store: Store, op: str, target: str, args: dict[str, Any],
             effect: Callable[[sqlite3.Connection], T]) -> T:
    with store.write() as db:
        call_id = db.execute(
            "INSERT INTO call (op, target, args, at) VALUES (?, ?, ?, ?)",
            (op, target, json.dumps(args, default=str, sort_keys=True), now())).lastrowid
        # a long-running instance keeps only the newest calls
        db.execute("DELETE FROM call WHERE id <= ?", (call_id - CALL_LOG_SIZE,))
        blocked = db.execute("SELECT 1 FROM unreachable WHERE target = ?",
                             (target,)).fetchone() is not None
        fault = None if blocked else _due_fault(db, op, target)
    if blocked:
        _finish(store, call_id, HostUnreachable.__name__)
        raise HostUnreachable(f"{target} does not answer (simulated)")
    if fault is not None and fault["phase"] == "before":
        raise _fault_error(store, call_id, fault, op, target)
    try:
        with store.write() as db:
            result = effect(db)
            if fault is None:
                _set_outcome(db, call_id, "ok")
    except QrmError as error:
        _finish(store, call_id, type(error).__name__)
        raise
    if fault is not None:
        raise _fault_error(store, call_id, fault, op, target)
    return result


def _due_fault(db: sqlite3.Connection, op: str, target: str) -> sqlite3.Row | None:
    due = None
    for fault in db.execute("SELECT * FROM fault WHERE op = ? AND (target IS NULL OR "
                            "target = ?) ORDER BY id", (op, target)).fetchall():
        seen = fault["seen"] + 1
        db.execute("UPDATE fault SET seen = ? WHERE id = ?", (seen, fault["id"]))
        if due is None and fault["nth"] <= seen < fault["nth"] + fault["times"]:
            due = fault
    return due


def _fault_error(store: Store, call_id: int, fault: sqlite3.Row, op: str,
                 target: str) -> QrmError:
    error_class = ERRORS[fault["error"]]
    _finish(store, call_id, error_class.__name__)
    effect = "after its effect" if fault["phase"] == "after" else "before its effect"
    return error_class(f"simulated {fault['error']} failure of {op} on {target} ({effect})")


def _finish(store: Store, call_id: int, outcome: str) -> None:
    with store.write() as db:
        _set_outcome(db, call_id, outcome)


def _set_outcome(db: sqlite3.Connection, call_id: int, outcome: str) -> None:
    db.execute("UPDATE call SET outcome = ? WHERE id = ?", (outcome, call_id))


__all__ = ["Call", "calls", "clear", "fail", "reachable", "target_key", "unreachable"]
