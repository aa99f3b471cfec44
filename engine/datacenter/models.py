"""The datacenter: resources, kernels, images, storage, appliances, their types."""

from __future__ import annotations

import datetime as dt
import enum
import re
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from engine.db import Base, UTCDateTime, utcnow
from engine.types import JsonValue, enum_type

MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def normalize_mac(value: str) -> str:
    """The one canonical MAC form: lower case, colon separated. Raises ValueError otherwise."""
    mac = value.strip().lower().replace("-", ":")
    if not MAC_RE.match(mac):
        raise ValueError(f"not a MAC address: {value!r}")
    return mac


class VirtualizationKind(enum.Enum):
    PHYSICAL = "physical"
    HOST = "host"
    VM = "vm"


class VirtualizationType(Base):
    """What kind of machine a resource is: physical, a hypervisor host, or a VM of a host type."""

    __tablename__ = "virtualization_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    kind: Mapped[VirtualizationKind] = mapped_column(enum_type(VirtualizationKind))
    plugin: Mapped[str | None] = mapped_column(String(50))
    #: for a VM type: the host type its VMs run on
    host_type_id: Mapped[int | None] = mapped_column(ForeignKey("virtualization_type.id"))

    host_type: Mapped[VirtualizationType | None] = relationship(remote_side=[id])


class DeploymentType(Base):
    """How a root filesystem is reached at boot; registered by storage plugins."""

    __tablename__ = "deployment_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    label: Mapped[str] = mapped_column(String(100))
    #: the storage type (driver) that serves images of this deployment type
    storage_type: Mapped[str | None] = mapped_column(String(50))
    plugin: Mapped[str | None] = mapped_column(String(50))


class Storage(Base):
    """A storage server exporting images through one storage driver."""

    __tablename__ = "storage"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    storage_type: Mapped[str] = mapped_column(String(50))
    # use_alter: storage -> resource -> image -> storage is a cycle of foreign keys
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id", use_alter=True))
    capacity_mb: Mapped[int] = mapped_column(Integer, default=0)
    comment: Mapped[str] = mapped_column(String(255), default="")
    #: its SSH target (the command worker, SSH-driven plugins); unset parts fall back to
    #: its resource's IP address and the ``qrm.ssh.*`` settings. ``ssh_key`` is a *reference* (a key
    #: file's name under ``qrm.ssh.key_dir``, or a path), never key material
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    ssh_user: Mapped[str | None] = mapped_column(String(64))
    ssh_key: Mapped[str | None] = mapped_column(String(255))

    resource: Mapped[Resource | None] = relationship(foreign_keys=[resource_id])


class Kernel(Base):
    """A kernel and its initrd that resources network-boot. Its files live in
    ``qrm.boot.kernel_dir/<name>/`` (``vmlinuz``, ``initrd``); the sizes and SHA-256 sums
    recorded when they were added let the boot face serve and check them (NULL: no files,
    a kernel known by name only)."""

    __tablename__ = "kernel"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    version: Mapped[str] = mapped_column(String(50), default="")
    comment: Mapped[str] = mapped_column(String(255), default="")
    vmlinuz_size: Mapped[int | None] = mapped_column(BigInteger)
    vmlinuz_sha256: Mapped[str | None] = mapped_column(String(64))
    initrd_size: Mapped[int | None] = mapped_column(BigInteger)
    initrd_sha256: Mapped[str | None] = mapped_column(String(64))

    @property
    def has_files(self) -> bool:
        return self.vmlinuz_size is not None and self.initrd_size is not None


class Image(Base):
    """A root filesystem on a storage: a master (golden) image, a clone of one, or private."""

    __tablename__ = "image"
    #: ids name VMs and volumes: never handed out twice, on SQLite either
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    storage_id: Mapped[int | None] = mapped_column(ForeignKey("storage.id"))
    deployment_type_id: Mapped[int] = mapped_column(ForeignKey("deployment_type.id"))
    root_device: Mapped[str] = mapped_column(String(255))
    root_fs_type: Mapped[str] = mapped_column(String(20), default="ext4")
    size_mb: Mapped[int] = mapped_column(Integer, default=0)
    is_master: Mapped[bool] = mapped_column(default=True)
    origin_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"))
    #: a cloud user's private image; NULL = visible to everyone
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("cloud_user.id"))
    comment: Mapped[str] = mapped_column(String(255), default="")
    #: when reconciliation found its volume gone from the storage (NULL: present)
    missing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    storage: Mapped[Storage | None] = relationship()
    deployment_type: Mapped[DeploymentType] = relationship()


#: the load history a resource keeps: one sample a minute at most, the last two hours
LOAD_SAMPLE_EVERY = dt.timedelta(minutes=1)
LOAD_HISTORY_SIZE = 120


class ResourceState(enum.Enum):
    UNKNOWN = "unknown"      # created, never reported
    BOOTING = "booting"      # powering up / in the boot ramdisk
    IDLE = "idle"            # up, running no appliance: free to assign
    ACTIVE = "active"        # up, running its appliance's image
    TRANSITION = "transition"  # rebooting into another kernel/image
    OFF = "off"              # powered down on purpose
    ERROR = "error"          # stopped reporting


class Resource(Base):
    """A bootable machine known by its MAC: physical, a hypervisor host, or a VM."""

    __tablename__ = "resource"
    __table_args__ = (
        #: the console's list filtered by state, in id order
        Index("ix_resource_state_id", "state", "id"),
        #: ids name VMs and volumes: never handed out twice, on SQLite either
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    ip: Mapped[str | None] = mapped_column(String(45))
    hostname: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[VirtualizationKind] = mapped_column(enum_type(VirtualizationKind))
    virtualization_type_id: Mapped[int] = mapped_column(ForeignKey("virtualization_type.id"))
    #: for a VM: the host resource it runs on
    host_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    state: Mapped[ResourceState] = mapped_column(
        enum_type(ResourceState), default=ResourceState.UNKNOWN
    )
    cpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    nics: Mapped[int] = mapped_column(Integer, default=1)
    load: Mapped[Decimal | None] = mapped_column(Numeric(8, 2))
    uptime_s: Mapped[int | None] = mapped_column(Integer)
    last_report_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: SHA-256 of the resource agent's token (the token itself is never stored)
    agent_token_hash: Mapped[str | None] = mapped_column(String(255))
    #: memory in use, as the agent last reported it
    memory_used_mb: Mapped[int | None] = mapped_column(Integer)
    #: False while a machine that registered itself waits for an admin
    #: (``qrm.boot.accept_new = manual``); it is not used until accepted
    accepted: Mapped[bool] = mapped_column(default=True, server_default=true())
    #: the engine rebooted it: its next boot script carries a hand-over code (until then)
    boot_window_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: SHA-256 of the one-time hand-over code its boot script carried, and its expiry
    handover_hash: Mapped[str | None] = mapped_column(String(64))
    handover_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: what the resource is told to boot; NULL image = the idle ramdisk
    kernel_id: Mapped[int | None] = mapped_column(ForeignKey("kernel.id"))
    image_id: Mapped[int | None] = mapped_column(ForeignKey("image.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: power actions asked for so far: each one's driver call is keyed by its number
    power_seq: Mapped[int] = mapped_column(Integer, default=0)
    #: when reconciliation found the VM gone from its host (NULL: present)
    missing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: its SSH target (the command worker, SSH-driven plugins); unset parts fall back to
    #: ``ip`` and the ``qrm.ssh.*`` settings. ``ssh_key`` is a *reference* (a key
    #: file's name under ``qrm.ssh.key_dir``, or a path), never key material
    ssh_host: Mapped[str | None] = mapped_column(String(255))
    ssh_port: Mapped[int | None] = mapped_column(Integer)
    ssh_user: Mapped[str | None] = mapped_column(String(64))
    ssh_key: Mapped[str | None] = mapped_column(String(255))
    #: every MAC the machine registered with (the first is ``mac``); NULL: only ``mac`` known
    macs: Mapped[list[str] | None] = mapped_column(JsonValue)
    #: its last reports, oldest first, ``[unix time, load, memory used (MB) or None]`` each
    #: (``record_load``); not loaded with the row unless asked for (lists stay small)
    load_history: Mapped[list[list[float | None]] | None] = deferred(mapped_column(JsonValue))

    virtualization_type: Mapped[VirtualizationType] = relationship()
    host: Mapped[Resource | None] = relationship(remote_side=[id])
    kernel: Mapped[Kernel | None] = relationship()
    image: Mapped[Image | None] = relationship()

    @property
    def is_idle(self) -> bool:
        return self.state is ResourceState.IDLE and self.image_id is None

    @property
    def label(self) -> str:
        return self.name or self.hostname or self.mac

    def record_load(self, load: Decimal | None, now: dt.datetime) -> None:
        """Keep a reported load (and the memory in use) in the bounded history: at most one
        sample per ``LOAD_SAMPLE_EVERY``, the last ``LOAD_HISTORY_SIZE``."""
        if load is None:
            return
        history = list(self.load_history or [])
        stamp = int(now.timestamp())
        if history and stamp - history[-1][0] < LOAD_SAMPLE_EVERY.total_seconds():
            return
        history.append([stamp, float(load), self.memory_used_mb])
        # a new list: the JSON column notices assignment, not changes in place
        self.load_history = history[-LOAD_HISTORY_SIZE:]


class ApplianceState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    ACTIVE = "active"
    STOPPING = "stopping"
    ERROR = "error"


class Appliance(Base):
    """The service: kernel + image + requirements, and the resource running it."""

    __tablename__ = "appliance"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kernel_id: Mapped[int] = mapped_column(ForeignKey("kernel.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id"))
    #: unique: a resource runs at most one appliance; the database enforces the claim
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"), unique=True)
    virtualization_type_id: Mapped[int] = mapped_column(ForeignKey("virtualization_type.id"))
    cpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    nics: Mapped[int] = mapped_column(Integer, default=1)
    ha: Mapped[bool] = mapped_column(default=False)
    state: Mapped[ApplianceState] = mapped_column(
        enum_type(ApplianceState), default=ApplianceState.STOPPED
    )
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    comment: Mapped[str] = mapped_column(String(255), default="")
    capabilities: Mapped[dict] = mapped_column(JsonValue, default=dict)

    kernel: Mapped[Kernel] = relationship()
    image: Mapped[Image] = relationship()
    resource: Mapped[Resource | None] = relationship()
    virtualization_type: Mapped[VirtualizationType] = relationship()


class StorageAuthorization(Base):
    """Which resource may mount which image: the engine's record of what drivers were told."""

    __tablename__ = "storage_authorization"
    __table_args__ = (UniqueConstraint("image_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("image.id", ondelete="CASCADE"))
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resource.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: changes so far: each one's driver call is keyed by its number
    seq: Mapped[int] = mapped_column(Integer, default=0)


__all__ = [
    "Appliance", "ApplianceState", "CallState", "DeploymentType", "DriverCall", "Image",
    "Kernel", "Resource", "ResourceState", "Storage", "StorageAuthorization", "VirtualizationKind",
    "VirtualizationType", "normalize_mac",
]


class CallState(enum.Enum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class DriverCall(Base):
    """One call that changes the world outside the database (a VM, a volume, an export, a
    power switch), recorded before it is made: see ``engine.datacenter.calls``.

    ``key`` is derived from persisted rows (``create-vm:resource:42``), so recording the same
    intent twice finds the first record, and a repeated call reaches the driver under the
    same name.
    """

    __tablename__ = "driver_call"
    __table_args__ = (
        Index("ix_driver_call_state_not_before", "state", "not_before"),
        Index("ix_driver_call_owner", "owner", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    #: ``create_vm``, ``start_vm``, ``clone_volume``, ``authenticate``, ``power`` …
    operation: Mapped[str] = mapped_column(String(40))
    #: the virtualization or storage type whose driver makes the call (``power``: hooks)
    driver: Mapped[str] = mapped_column(String(50))
    #: who waits for it (``cloud_request:7``); NULL: the ``datacenter.calls`` job runs it
    owner: Mapped[str | None] = mapped_column(String(60))
    #: the driver's target (HostRef / StorageRef fields) and keyword arguments, as JSON
    target: Mapped[dict] = mapped_column(JsonValue)
    arguments: Mapped[dict] = mapped_column(JsonValue)
    state: Mapped[CallState] = mapped_column(enum_type(CallState), default=CallState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: a worker making the call holds it until then (a crashed worker's claim runs out)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[dict | None] = mapped_column(JsonValue)
    #: ``capacity``, ``unreachable`` or ``driver`` for the last failure
    error_kind: Mapped[str | None] = mapped_column(String(20))
    error: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(120), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class FailOverStep(enum.Enum):
    """The persisted steps of a fail-over (``AppliancesService.fail_over``)."""

    FENCING = "fencing"      # power-off / export revocation recorded; waiting for one to hold
    STOPPING = "stopping"    # a change of type: the appliance is stopped first
    PLACING = "placing"      # fenced: looking for an idle resource or a new VM
    PLACED = "placed"        # the appliance has its new resource (a new VM: booting)
    STARTING = "starting"    # started there; waiting for the resource to run the image
    DONE = "done"
    ABORTED = "aborted"      # the appliance was stopped or removed meanwhile


class ApplianceFailOver(Base):
    """One fail-over of an appliance from a failed resource to another, step by step (or a
    change of its virtualization type: ``options["kind"] == "change-type"``, which stops the
    appliance instead of fencing its machine).

    ``open_appliance_id`` is the appliance's id while the fail-over is under way and NULL once
    it is finished: the unique key lets an appliance have one open fail-over at most.
    ``options`` holds what the caller allowed (virtualization types in order, new VMs,
    resources to avoid), since later steps run in a job of their own.
    """

    __tablename__ = "appliance_failover"
    __table_args__ = (Index("ix_appliance_failover_step_due", "step", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    appliance_id: Mapped[int | None] = mapped_column(
        ForeignKey("appliance.id", ondelete="SET NULL"), index=True)
    open_appliance_id: Mapped[int | None] = mapped_column(Integer, unique=True)
    failed_resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("resource.id", ondelete="SET NULL"), index=True)
    new_resource_id: Mapped[int | None] = mapped_column(
        ForeignKey("resource.id", ondelete="SET NULL"))
    #: a VM made for the fail-over (``create-vm:resource:<id>``)
    created_vm_id: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[FailOverStep] = mapped_column(enum_type(FailOverStep),
                                               default=FailOverStep.FENCING)
    reason: Mapped[str] = mapped_column(String(255), default="")
    actor: Mapped[str] = mapped_column(String(120), default="system")
    options: Mapped[dict] = mapped_column(JsonValue, default=dict)
    #: fencing is tried in rounds; a round's calls are keyed by it
    fence_round: Mapped[int] = mapped_column(Integer, default=1)
    #: ``power`` or ``storage``: what fenced the failed machine
    fenced_by: Mapped[str] = mapped_column(String(20), default="")
    #: the last thing the fail-over waits for, reported once (``no-resource``, ``fence:3``)
    waiting: Mapped[str] = mapped_column(String(60), default="")
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def owner(self) -> str:
        """The owner of the fail-over's calls (fencing has two: power and storage)."""
        return f"appliance_failover:{self.id}"
