"""The cloud: users, limits, configuration, products, IP pools, requests, cloud appliances."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.datacenter.models import Appliance, Image, Kernel, Resource, VirtualizationType
from engine.db import Base, UTCDateTime, utcnow
from engine.types import JsonValue, Money, enum_type


class CloudUserStatus(enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"
    PENDING = "pending"


class CloudUser(Base):
    __tablename__ = "cloud_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    #: the password encrypted with the server key, for WS-Security PasswordDigest only
    digest_secret: Mapped[str | None] = mapped_column(Text)
    forename: Mapped[str] = mapped_column(String(100), default="")
    lastname: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(255), default="")
    street: Mapped[str] = mapped_column(String(100), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    country: Mapped[str] = mapped_column(String(100), default="")
    phone: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[CloudUserStatus] = mapped_column(
        enum_type(CloudUserStatus), default=CloudUserStatus.ACTIVE
    )
    #: written into every browser session; raised to end them all (log-out, new password,
    #: a status change)
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    #: cached balance: always the sum of the user's ledger rows, updated in the same transaction
    ccus: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    language: Mapped[str] = mapped_column(String(10), default="en")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    limits: Mapped[CloudUserLimits] = relationship(
        back_populates="user", uselist=False, cascade="all, delete-orphan"
    )


class CloudUserLimits(Base):
    """Per-user limits; 0 means unlimited."""

    __tablename__ = "cloud_user_limits"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("cloud_user.id", ondelete="CASCADE"), primary_key=True
    )
    resource_limit: Mapped[int] = mapped_column(Integer, default=0)
    memory_limit_mb: Mapped[int] = mapped_column(Integer, default=0)
    disk_limit_mb: Mapped[int] = mapped_column(Integer, default=0)
    cpu_limit: Mapped[int] = mapped_column(Integer, default=0)
    network_limit: Mapped[int] = mapped_column(Integer, default=0)

    user: Mapped[CloudUser] = relationship(back_populates="limits")


class CloudConfigValue(Base):
    """A configured value; keys, types and defaults are declared in ``engine.cloud.config``."""

    __tablename__ = "cloud_config"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(120), default="system")


class ProductType(enum.Enum):
    CPU = "cpu"
    DISK = "disk"
    HA = "ha"
    KERNEL = "kernel"
    MEMORY = "memory"
    NETWORK = "network"
    PUPPET = "puppet"
    QUANTITY = "quantity"
    RESOURCE = "resource"


class Product(Base):
    """One offer of the cloud selector: a value of one component with its hourly price."""

    __tablename__ = "product"
    __table_args__ = (UniqueConstraint("type", "quantity"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[ProductType] = mapped_column(enum_type(ProductType))
    sort_id: Mapped[int] = mapped_column(Integer, default=0)
    #: the value offered: a number of CPUs/MB/NICs/appliances, a kernel or
    #: virtualization type name, a puppet group, "1" for HA
    quantity: Mapped[str] = mapped_column(String(100))
    #: CCUs per hour per appliance
    price: Mapped[Decimal] = mapped_column(Money)
    name: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(String(255), default="")
    enabled: Mapped[bool] = mapped_column(default=True)


class IpGroup(Base):
    __tablename__ = "ip_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    network: Mapped[str] = mapped_column(String(50))
    netmask: Mapped[str] = mapped_column(String(50))
    gateway: Mapped[str] = mapped_column(String(50), default="")
    dns1: Mapped[str] = mapped_column(String(50), default="")
    dns2: Mapped[str] = mapped_column(String(50), default="")
    domain: Mapped[str] = mapped_column(String(100), default="")

    addresses: Mapped[list[IpAddress]] = relationship(
        back_populates="group", cascade="all, delete-orphan", order_by="IpAddress.id"
    )


class IpAddress(Base):
    __tablename__ = "ip_address"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("ip_group.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(45), unique=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    cloud_appliance_id: Mapped[int | None] = mapped_column(
        ForeignKey("cloud_appliance.id", ondelete="SET NULL")
    )

    group: Mapped[IpGroup] = relationship(back_populates="addresses")


class RequestStatus(enum.Enum):
    NEW = "new"
    APPROVED = "approved"
    ACTIVE = "active"
    DENIED = "denied"
    DEPROVISION = "deprovision"
    DONE = "done"
    NO_RESOURCES = "no-resources"

    @property
    def is_terminal(self) -> bool:
        return self in (RequestStatus.DENIED, RequestStatus.DONE, RequestStatus.NO_RESOURCES)


#: statuses whose requests hold quota (their sizes count against the user's limits)
QUOTA_HOLDING = (
    RequestStatus.NEW, RequestStatus.APPROVED, RequestStatus.ACTIVE, RequestStatus.DEPROVISION,
)


class CloudRequest(Base):
    __tablename__ = "cloud_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("cloud_user.id"), index=True)
    status: Mapped[RequestStatus] = mapped_column(
        enum_type(RequestStatus), default=RequestStatus.NEW, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    start: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    stop: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    kernel_id: Mapped[int] = mapped_column(ForeignKey("kernel.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    virtualization_type_id: Mapped[int] = mapped_column(ForeignKey("virtualization_type.id"))
    memory_mb: Mapped[int] = mapped_column(Integer)
    cpus: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer)
    network_cards: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    ha: Mapped[bool] = mapped_column(default=False)
    clone_on_deploy: Mapped[bool] = mapped_column(default=True)
    puppet_groups: Mapped[list] = mapped_column(JsonValue, default=list)
    #: the price per appliance and hour the user was shown, with its components
    price_per_hour: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    price_breakdown: Mapped[list] = mapped_column(JsonValue, default=list)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: when the next provisioning/deprovisioning step is due (NULL: nothing to do)
    next_step_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    #: failed steps in a row; past a limit the engine stops trying until an admin retries
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)

    user: Mapped[CloudUser] = relationship()
    kernel: Mapped[Kernel] = relationship()
    image: Mapped[Image] = relationship()
    virtualization_type: Mapped[VirtualizationType] = relationship()
    appliances: Mapped[list[CloudAppliance]] = relationship(
        back_populates="request", order_by="CloudAppliance.index"
    )

    @property
    def total_price_per_hour(self) -> Decimal:
        return self.price_per_hour * self.quantity


class CloudApplianceState(enum.Enum):
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"
    DEPROVISIONING = "deprovisioning"
    REMOVED = "removed"


class ProvisionStep(enum.Enum):
    """Where a cloud appliance's provisioning (or teardown) stands; each step is idempotent."""

    NEW = "new"                    # row exists, nothing done yet
    APPLIANCE = "appliance"        # engine appliance created
    RESOURCE = "resource"          # idle resource claimed, or VM created and booting
    IMAGE = "image"                # image cloned (or master used)
    ADDRESSES = "addresses"        # IPs assigned from the pool
    STARTING = "starting"          # appliance started; waiting for the resource to come up
    RUNNING = "running"            # active
    PAUSING = "pausing"            # paused by its user: appliance stopping, not billed
    PAUSED = "paused"              # paused: resource released, disk (clone) kept
    STOPPING = "stopping"          # teardown: appliance stopping, waiting for the resource
    STOPPED = "stopped"            # teardown: appliance stopped (or never started)
    FREED = "freed"                # teardown: IP addresses back in the pool
    UNASSIGNED = "unassigned"      # teardown: engine appliance released and removed
    VOLUME_REMOVED = "volume-removed"  # teardown: the clone removed from its storage
    RELEASED = "released"          # teardown: the VM made for it removed; nothing is left


class CloudAppliance(Base):
    """One system of a request: its engine appliance and what provisioning made for it."""

    __tablename__ = "cloud_appliance"
    __table_args__ = (UniqueConstraint("request_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("cloud_request.id"), index=True)
    #: 1-based position within the request
    index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[CloudApplianceState] = mapped_column(
        enum_type(CloudApplianceState), default=CloudApplianceState.PROVISIONING
    )
    step: Mapped[ProvisionStep] = mapped_column(enum_type(ProvisionStep), default=ProvisionStep.NEW)
    appliance_id: Mapped[int | None] = mapped_column(ForeignKey("appliance.id"))
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    #: the VM provisioning created for this appliance (removed at teardown)
    created_vm_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    #: the clone made for this appliance (removed at teardown)
    clone_image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"))
    disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    active_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    active_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: how often it was started again after a pause that outlasted its last charged hour:
    #: each run is billed from its own start (a resume within that hour continues the run)
    run: Mapped[int] = mapped_column(Integer, default=0)
    #: whole hours of this run already charged (a cache; the ledger's unique key is the
    #: guarantee)
    hours_charged: Mapped[int] = mapped_column(Integer, default=0)
    comment: Mapped[str] = mapped_column(String(255), default="")
    error: Mapped[str] = mapped_column(Text, default="")

    request: Mapped[CloudRequest] = relationship(back_populates="appliances")
    appliance: Mapped[Appliance | None] = relationship()
    resource: Mapped[Resource | None] = relationship(foreign_keys=[resource_id])
    addresses: Mapped[list[IpAddress]] = relationship(order_by="IpAddress.id")
