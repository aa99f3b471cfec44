"""What kicks ``dhcp.write``: a commit that changed a row the configuration is made of.

The rows are watched where they change, in the ORM's flush (``after_flush``), so every path
that adds, removes or readdresses a resource or assigns an address (the console, the APIs,
provisioning, agent reports, registration) is covered without any of those services
knowing about DHCP. A flush with such a change registers one after-commit hook per
transaction; the hook kicks the job (``engine.scheduler.kick``). A transaction that rolls
back kicks nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from engine.cloud.models import CloudAppliance, IpAddress, IpGroup
from engine.datacenter.models import Resource
from engine.dhcp.settings import writes_config

log = logging.getLogger(__name__)

JOB_ID = "dhcp.write"
#: the columns the configuration is made of, per model (None: every column)
WATCHED: dict[type, frozenset[str] | None] = {
    Resource: frozenset({"mac", "ip", "hostname", "name", "nics", "kind"}),
    IpAddress: frozenset({"address", "cloud_appliance_id"}),
    IpGroup: None,
    CloudAppliance: frozenset({"resource_id"}),
}
_KICKED = "qrm.dhcp.kicked"


def _changed(obj: Any) -> bool:
    columns = WATCHED.get(type(obj), frozenset())
    state = inspect(obj)
    attributes = state.attrs if columns is None else (state.attrs[c] for c in columns)
    return any(attribute.history.has_changes() for attribute in attributes)


def touches_dhcp(session: Session) -> bool:
    """Whether the flush under way adds, removes or changes a watched row."""
    for obj in (*session.new, *session.deleted):
        if type(obj) in WATCHED:
            return True
    return any(type(obj) in WATCHED and _changed(obj) for obj in session.dirty)


def _kick(success: bool, registry: Any) -> None:
    if not success:
        return
    kicker = registry.get("qrm.kicker")
    try:
        in_transaction = getattr(kicker, "kick_in_transaction", None)
        if in_transaction is not None:
            from engine.scheduler.runner import run_in_transaction

            # the committed transaction cannot carry the wake-up any more: a small one does
            run_in_transaction(registry, lambda request: in_transaction(request, JOB_ID))
        elif kicker is not None:
            kicker.kick(JOB_ID)
    except Exception:
        log.exception("kick of %s failed; its interval will pick the change up", JOB_ID)


def _after_flush(session: Session, _flush_context: Any) -> None:
    request = session.info.get("request")
    tm = getattr(request, "tm", None) if request is not None else None
    if tm is None or not writes_config(request.registry.settings):
        return
    transaction = tm.get()
    if session.info.get(_KICKED) is transaction or not touches_dhcp(session):
        return
    session.info[_KICKED] = transaction
    transaction.addAfterCommitHook(_kick, args=(request.registry,))


def install() -> None:
    """Listen to every session's flushes (once per process; idempotent)."""
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
