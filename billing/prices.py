"""Prices: what a request costs per hour, component by component, from the enabled products."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.cloud.billing_port import Quote, RequestSpec
from engine.cloud.models import Product, ProductType
from engine.types import plain


def _components(spec: RequestSpec) -> list[tuple[ProductType, str, str]]:
    """(product type, quantity, label) of every priced part of one appliance.

    The ``quantity`` product is not charged: billing is per appliance already."""
    parts = [
        (ProductType.RESOURCE, spec.virtualization, f"type {spec.virtualization}"),
        (ProductType.KERNEL, spec.kernel, f"kernel {spec.kernel}"),
        (ProductType.CPU, str(spec.cpus), f"{spec.cpus} CPU(s)"),
        (ProductType.MEMORY, str(spec.memory_mb), f"{spec.memory_mb} MB memory"),
        (ProductType.DISK, str(spec.disk_mb), f"{spec.disk_mb} MB disk"),
        (ProductType.NETWORK, str(spec.network_cards), f"{spec.network_cards} NIC(s)"),
    ]
    if spec.ha:
        parts.append((ProductType.HA, "1", "high availability"))
    parts.extend((ProductType.PUPPET, group, f"application {group}")
                 for group in spec.puppet_groups)
    return parts


class PriceService:
    """Quotes requests from the enabled products (a disabled product is not priced)."""

    def __init__(self, db: Session) -> None:
        self.db = db

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> PriceService:
        return cls(request.dbsession)

    def quote(self, spec: RequestSpec) -> Quote:
        enabled = {
            (product.type, product.quantity): product.price
            for product in self.db.scalars(select(Product).where(Product.enabled.is_(True)))
        }
        components = []
        for product_type, quantity, label in _components(spec):
            price = enabled.get((product_type, quantity), Decimal(0))
            components.append({"type": product_type.value, "quantity": quantity,
                               "label": label, "price": plain(price)})
        per_appliance = sum((Decimal(c["price"]) for c in components), Decimal(0))
        return Quote(per_appliance=per_appliance, components=components,
                     quantity=spec.quantity)
