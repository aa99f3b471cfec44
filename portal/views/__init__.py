"""The portal's views, one module per area."""

from __future__ import annotations

from typing import Any

from engine.cloud.models import CloudUser
from engine.cloud.services import CloudUserService


def current_user(request: Any) -> CloudUser:
    """The logged-in cloud user's account (views behind PORTAL_USE only)."""
    return request.find_service(CloudUserService).resolve(None, actor=request.identity)


def doom(request: Any) -> None:
    """Make sure nothing of a refused operation is committed (the form is shown again)."""
    request.tm.doom()
