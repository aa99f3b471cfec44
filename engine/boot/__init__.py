"""Network boot: boot decisions (iPXE, pxelinux), kernel files, the resource agent's
registration, tokens and reports. The HTTP face is ``boot/``."""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

#: what a boot decision depends on: a change of one of these rewrites the pxelinux files
_RESOURCE_FIELDS = ("mac", "kernel", "kernel_id", "image", "image_id", "accepted",
                    "agent_token_hash")
_kicked: weakref.WeakSet[Any] = weakref.WeakSet()


def _changes_boot(session: Session) -> bool:
    from engine.datacenter.models import Kernel, Resource

    for obj in (*session.new, *session.deleted):
        if isinstance(obj, Resource | Kernel):
            return True
    for obj in session.dirty:
        if isinstance(obj, Kernel):
            return True
        if isinstance(obj, Resource):
            attrs = inspect(obj).attrs
            if any(attrs[name].history.has_changes() for name in _RESOURCE_FIELDS):
                return True
    return False


def _after_flush(session: Session, _context: Any) -> None:
    """Kick ``boot.pxelinux`` once per transaction that changed what machines boot."""
    request = session.info.get("request")
    if request is None or not request.registry.settings.get("qrm.boot.tftp_root"):
        return
    tm = getattr(request, "tm", None)
    if tm is None:
        return
    current = tm.get()
    if current in _kicked or not _changes_boot(session):
        return
    _kicked.add(current)
    from engine.scheduler.kick import kick_after_commit

    kick_after_commit(request, "boot.pxelinux")


def includeme(config: Any) -> None:
    from engine.boot.kernels import KernelFileService
    from engine.boot.services import AgentService, BootService, pxelinux_job

    config.register_service_factory(BootService.create_service, BootService)
    config.register_service_factory(AgentService.create_service, AgentService)
    config.register_service_factory(KernelFileService.create_service, KernelFileService)
    config.add_job("boot.pxelinux", pxelinux_job, 60)
    # after_flush still sees what the flush wrote (new, dirty, deleted and the history)
    if not event.contains(Session, "after_flush", _after_flush):
        event.listen(Session, "after_flush", _after_flush)
