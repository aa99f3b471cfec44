"""The DHCP configuration service: the plan from the rows, rendered for one server."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from engine.dhcp.plan import build_plan
from engine.dhcp.render import DhcpPlan, render
from engine.dhcp.settings import DhcpSettings


class DhcpService:
    """Reads the resources and IP groups; writes nothing (the ``dhcp.write`` job does)."""

    def __init__(self, db: Session, *, settings: dict[str, Any]) -> None:
        self.db, self.settings = db, settings

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> DhcpService:
        return cls(request.dbsession, settings=request.registry.settings)

    def plan(self, settings: DhcpSettings | None = None) -> DhcpPlan:
        """Subnets and reservations as the rows say (see ``engine.dhcp.plan``)."""
        return build_plan(self.db, settings or DhcpSettings.from_settings(self.settings))

    def render(self, plan: DhcpPlan, server: str) -> str:
        return render(plan, server)

    def config_text(self, server: str | None = None) -> str:
        """The configuration for ``server`` (default ``qrm.dhcp.server``). Raises
        ``ValidationError`` naming the setting at fault."""
        settings = DhcpSettings.from_settings(self.settings, server=server)
        if settings.server == "none":
            settings = DhcpSettings.from_settings(self.settings, server="dnsmasq")
        return self.render(self.plan(settings), settings.server)
