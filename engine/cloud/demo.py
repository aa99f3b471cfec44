"""The demo cloud on top of the demo datacenter: products, an IP pool, the demo users."""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from engine.accounts.models import AdminUser
from engine.accounts.services import AccountService
from engine.cloud.models import CloudUser, IpAddress, IpGroup, ProductType
from engine.cloud.services import CloudUserService, ProductService
from engine.datacenter.models import Kernel, VirtualizationKind, VirtualizationType
from engine.plugins.manager import PluginService
from engine.plugins.models import PluginState
from engine.security import Actor

DEMO_PLUGIN = "sim"
DEMO_CREDIT = Decimal(1000)


def demo_password() -> str:
    return os.environ.get("QRM_DEMO_PASSWORD") or secrets.token_urlsafe(9)


def load_demo(request: Any) -> dict[str, str]:
    """Build (once) the demo datacenter and cloud; (re)set and return the demo credentials."""
    actor = Actor.system("demo")
    plugins = request.find_service(PluginService)
    for action, needed in (("enable", PluginState.DISABLED), ("start", PluginState.ENABLED)):
        if plugins.states().get(DEMO_PLUGIN) is needed:
            plugins.act(DEMO_PLUGIN, action, actor=actor)
    plugins.started_hook.qrm_demo(request=request, actor=actor)
    _products(request, actor)
    _ip_pool(request)
    return _accounts(request, actor)


def _products(request: Any, actor: Actor) -> None:
    products = request.find_service(ProductService)
    db = request.dbsession
    existing = {(p.type, p.quantity) for p in products.list()}
    for kernel in db.scalars(select(Kernel).order_by(Kernel.id)):
        if (ProductType.KERNEL, kernel.name) not in existing:
            products.add(ProductType.KERNEL, kernel.name, 0, kernel.name, actor=actor,
                         description=f"Kernel {kernel.name}")
    prices = {VirtualizationKind.VM: 2, VirtualizationKind.PHYSICAL: 5}
    for vtype in db.scalars(select(VirtualizationType).order_by(VirtualizationType.id)):
        if vtype.kind in prices and (ProductType.RESOURCE, vtype.name) not in existing:
            products.add(ProductType.RESOURCE, vtype.name, prices[vtype.kind], vtype.label,
                         actor=actor, description=vtype.label)
    if (ProductType.HA, "1") not in existing:
        products.add(ProductType.HA, "1", 1, "HA", actor=actor,
                     description="High availability")


def _ip_pool(request: Any) -> None:
    db = request.dbsession
    if db.scalar(select(IpGroup.id).where(IpGroup.name == "demo-net")):
        return
    group = IpGroup(name="demo-net", network="192.0.2.0", netmask="255.255.255.0",
                    gateway="192.0.2.1", dns1="192.0.2.2", domain="demo.example")
    group.addresses = [IpAddress(address=f"192.0.2.{host}") for host in range(10, 60)]
    db.add(group)
    db.flush()


def _accounts(request: Any, actor: Actor) -> dict[str, str]:
    db = request.dbsession
    admin_password, user_password = demo_password(), demo_password()
    accounts = request.find_service(AccountService)
    if db.scalar(select(AdminUser).where(AdminUser.name == "admin")) is None:
        accounts.create_admin("admin", admin_password, actor=actor)
    else:
        accounts.set_admin_password("admin", admin_password, actor=actor)
    users = request.find_service(CloudUserService)
    demo = db.scalar(select(CloudUser).where(CloudUser.name == "demo"))
    if demo is None:
        demo = users.create("demo", user_password, "demo@demo.example", actor=actor,
                            forename="Demo", lastname="User", city="Berlin",
                            country="Germany")
        users.billing.credit(demo, DEMO_CREDIT, reason="Demo credit",
                             comment="credit of the demo account", actor=actor,
                             key="demo-credit:demo")
    else:
        users.set_password("demo", user_password, actor=actor)
    return {"admin": admin_password, "demo": user_password}
