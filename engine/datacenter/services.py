"""Datacenter services: inventory (types, resources, kernels, storage, images), VMs, clones, and
the appliance life-cycle (add, start, stop, remove)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from pyramid.i18n import TranslationString
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from engine.commands.models import Command, CommandState
from engine.datacenter.calls import POWER, CallService, on_done
from engine.datacenter.models import (
    Appliance,
    ApplianceState,
    DeploymentType,
    Image,
    Kernel,
    Resource,
    ResourceState,
    Storage,
    StorageAuthorization,
    VirtualizationKind,
    VirtualizationType,
    normalize_mac,
)
from engine.datacenter.refs import host_ref, machine_ref, storage_ref, vm_name, volume_name
from engine.db import utcnow
from engine.errors import CapacityError, InvalidState, NotFound, ValidationError
from engine.events.models import EventLevel
from engine.events.services import EventService
from engine.i18n import _
from engine.paging import DEFAULT_SIZE, KeysetPager, Page
from engine.plugins.drivers import VmSpec
from engine.plugins.manager import PluginService
from engine.security import Actor
from engine.validation import check_int, check_name


def appliance_state(appliance: Appliance) -> TranslationString:
    """Why an appliance cannot take a step in its current state."""
    return _("appliance ${name} is ${state}",
             mapping={"name": appliance.name, "state": appliance.state.value})


def generate_mac() -> str:
    """A random locally administered unicast MAC (``x2:…``) for a new VM."""
    octets = [secrets.randbelow(256) for _ in range(6)]
    octets[0] = (octets[0] & 0b11111100) | 0b00000010
    return ":".join(f"{octet:02x}" for octet in octets)


def nic_macs(mac: str, nics: int) -> tuple[str, ...]:
    """The MACs of a VM's network cards: the first is the resource's own, the others derive
    from it (same prefix, the last octets counting up), so they never change between calls."""
    octets = [int(part, 16) for part in mac.split(":")]
    base = (octets[3] << 16) | (octets[4] << 8) | octets[5]
    macs = []
    for index in range(max(nics, 1)):
        value = (base + index) & 0xFFFFFF
        tail = [(value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF]
        macs.append(":".join(f"{octet:02x}" for octet in octets[:3] + tail))
    return tuple(macs)


#: after a reboot by the engine, how long the resource's next boot script may carry a
#: hand-over code for its agent
BOOT_WINDOW = dt.timedelta(minutes=10)


#: the console's resource list: by id
RESOURCE_PAGER = KeysetPager(Resource.id)
APPLIANCE_PAGER = KeysetPager(Appliance.name)


def supports_row_locks(db: Session) -> bool:
    """PostgreSQL and MariaDB lock rows; SQLite serialises writers (BEGIN IMMEDIATE) instead."""
    return db.get_bind().dialect.name != "sqlite"


class DatacenterService:
    """The inventory, and the operations that go through storage and virtualization drivers."""

    def __init__(self, db: Session, *, events: EventService, plugins: PluginService,
                 calls: CallService) -> None:
        self.db, self.events, self.plugins, self.calls = db, events, plugins, calls

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> DatacenterService:
        return cls(request.dbsession, events=request.find_service(EventService),
                   plugins=request.find_service(PluginService),
                   calls=request.find_service(CallService))

    # -- types (registered by plugins at init) ----------------------------------------------
    def register_virtualization_type(self, name: str, label: str, kind: VirtualizationKind, *,
                                     plugin: str | None, host_type: str | None = None
                                     ) -> VirtualizationType:
        """Create (or update) a virtualization type; idempotent, so plugin init may re-run."""
        vtype = self.db.scalar(select(VirtualizationType).where(VirtualizationType.name == name))
        if vtype is None:
            vtype = VirtualizationType(name=name)
            self.db.add(vtype)
        vtype.label, vtype.kind, vtype.plugin = label, kind, plugin
        vtype.host_type = self.virtualization_type(host_type) if host_type else None
        self.db.flush()
        return vtype

    def register_deployment_type(self, name: str, label: str, *, storage_type: str | None,
                                 plugin: str | None) -> DeploymentType:
        """Create (or update) a deployment type; idempotent."""
        dtype = self.db.scalar(select(DeploymentType).where(DeploymentType.name == name))
        if dtype is None:
            dtype = DeploymentType(name=name)
            self.db.add(dtype)
        dtype.label, dtype.storage_type, dtype.plugin = label, storage_type, plugin
        self.db.flush()
        return dtype

    def unregister_plugin_types(self, plugin: str) -> None:
        """Remove a plugin's types; refused while resources or images use them."""
        vtypes = list(self.db.scalars(
            select(VirtualizationType).where(VirtualizationType.plugin == plugin)))
        # VM types first: they refer to their host type. The count queries below autoflush
        # between the deletions, so the VM types are detached from their host types first
        # (a refusal rolls the whole transaction back, detachment included).
        vtypes.sort(key=lambda vtype: vtype.kind is not VirtualizationKind.VM)
        for vtype in vtypes:
            if vtype.host_type_id is not None:
                vtype.host_type = None
        self.db.flush()
        for vtype in vtypes:
            in_use = self.db.scalar(select(func.count(Resource.id)).where(
                Resource.virtualization_type_id == vtype.id))
            if in_use:
                raise InvalidState(_("virtualization type ${name} is used by ${count} "
                                     "resource(s)", mapping={"name": vtype.name,
                                                             "count": in_use}), field="plugin")
            self.db.delete(vtype)
        for dtype in self.db.scalars(select(DeploymentType).where(DeploymentType.plugin == plugin)):
            in_use = self.db.scalar(select(func.count(Image.id)).where(
                Image.deployment_type_id == dtype.id))
            if in_use:
                raise InvalidState(_("deployment type ${name} is used by ${count} image(s)",
                                     mapping={"name": dtype.name, "count": in_use}),
                                   field="plugin")
            self.db.delete(dtype)
        self.db.flush()

    def virtualization_type(self, name: str) -> VirtualizationType:
        vtype = self.db.scalar(select(VirtualizationType).where(VirtualizationType.name == name))
        if vtype is None:
            raise NotFound(_("no virtualization type named ${name}",
                             mapping={"name": repr(name)}), field="virtualization")
        return vtype

    def deployment_type(self, name: str) -> DeploymentType:
        dtype = self.db.scalar(select(DeploymentType).where(DeploymentType.name == name))
        if dtype is None:
            raise NotFound(_("no deployment type named ${name}", mapping={"name": repr(name)}),
                           field="deployment_type")
        return dtype

    def virtualization_types(self) -> list[VirtualizationType]:
        return list(self.db.scalars(select(VirtualizationType).order_by(VirtualizationType.id)))

    # -- inventory --------------------------------------------------------------------------
    def add_resource(self, *, mac: str, kind: VirtualizationKind, virtualization_type: str,
                     actor: Actor, name: str = "", host: Resource | None = None, cpus: int = 0,
                     memory_mb: int = 0, nics: int = 1, ip: str | None = None,
                     state: ResourceState = ResourceState.UNKNOWN) -> Resource:
        """Register a machine by its MAC (unique)."""
        try:
            mac = normalize_mac(mac)
        except ValueError:
            # normalize_mac's own wording, said here so that it can be translated
            raise ValidationError(_("not a MAC address: ${mac}", mapping={"mac": repr(mac)}),
                                  field="mac") from None
        if self.db.scalar(select(Resource.id).where(Resource.mac == mac)) is not None:
            raise ValidationError(_("a resource with MAC ${mac} exists already",
                                    mapping={"mac": mac}), field="mac")
        resource = Resource(
            mac=mac, kind=kind, virtualization_type=self.virtualization_type(virtualization_type),
            name=name, host=host, cpus=check_int(cpus, field="cpus"),
            memory_mb=check_int(memory_mb, field="memory_mb"),
            nics=check_int(nics, field="nics", minimum=1), ip=ip, state=state,
        )
        self.db.add(resource)
        self.db.flush()
        self.events.log(source="datacenter", name="resource.added", actor=actor, obj=resource,
                        message=f"resource {resource.id} ({mac}, {kind.value}) added")
        self.plugins.hook.qrm_resource_event(request=self.plugins.request, resource=resource,
                                             action="add")
        return resource

    def remove_resource(self, resource: Resource, *, actor: Actor) -> None:
        if self.db.scalar(select(Appliance.id).where(Appliance.resource_id == resource.id)):
            raise InvalidState(_("resource ${id} runs an appliance",
                                 mapping={"id": resource.id}), field="resource")
        self.plugins.hook.qrm_resource_event(request=self.plugins.request, resource=resource,
                                             action="remove")
        self.events.log(source="datacenter", name="resource.removed", actor=actor, obj=resource,
                        message=f"resource {resource.id} ({resource.mac}) removed")
        self.db.delete(resource)
        self.db.flush()

    def remove(self, resource: Resource, *, actor: Actor) -> None:
        """Remove a resource as an admin asks it (the console): refused while an appliance,
        a VM, a storage server, a queued command or a cloud appliance that is not removed
        uses it; the history of finished work keeps its rows, without the resource. A VM is
        destroyed on its host first (``remove_vm``)."""
        from engine.cloud.models import CloudAppliance, CloudApplianceState  # cloud uses us

        used = [(select(Appliance.id).where(Appliance.resource_id == resource.id),
                 _("resource ${id} runs an appliance")),
                (select(Resource.id).where(Resource.host_id == resource.id),
                 _("resource ${id} carries virtual machines")),
                (select(Storage.id).where(Storage.resource_id == resource.id),
                 _("resource ${id} is a storage server")),
                (select(Command.id).where(Command.resource_id == resource.id, Command.state.in_(
                    (CommandState.QUEUED, CommandState.RUNNING))),
                 _("resource ${id} has commands queued or running")),
                (select(CloudAppliance.id).where(
                    (CloudAppliance.resource_id == resource.id)
                    | (CloudAppliance.created_vm_id == resource.id),
                    CloudAppliance.state != CloudApplianceState.REMOVED),
                 _("resource ${id} is in use by a cloud request"))]
        for query, message in used:
            if self.db.scalar(query.limit(1)) is not None:
                raise InvalidState(_(message, mapping={"id": resource.id}), field="resource")
        for table, column in ((Command, Command.resource_id),
                              (StorageAuthorization, StorageAuthorization.resource_id),
                              (CloudAppliance, CloudAppliance.resource_id),
                              (CloudAppliance, CloudAppliance.created_vm_id)):
            self.db.execute(update(table).where(column == resource.id)
                            .values({column.key: None}).execution_options(
                                synchronize_session=False))
        if resource.kind is VirtualizationKind.VM and resource.host is not None:
            self.remove_vm(resource, actor=actor)
        else:
            self.remove_resource(resource, actor=actor)

    def add_kernel(self, name: str, *, version: str = "", actor: Actor) -> Kernel:
        check_name(name, field="kernel")
        if self.db.scalar(select(Kernel.id).where(Kernel.name == name)) is not None:
            raise ValidationError(_("a kernel named ${name} exists already",
                                    mapping={"name": repr(name)}), field="kernel")
        kernel = Kernel(name=name, version=version)
        self.db.add(kernel)
        self.db.flush()
        self.events.log(source="datacenter", name="kernel.added", actor=actor, obj=kernel,
                        message=f"kernel {name} added")
        self.plugins.hook.qrm_kernel_added(request=self.plugins.request, kernel=kernel)
        return kernel

    def kernel(self, name: str) -> Kernel:
        kernel = self.db.scalar(select(Kernel).where(Kernel.name == name))
        if kernel is None:
            raise NotFound(_("no kernel named ${name}", mapping={"name": repr(name)}),
                           field="kernel")
        return kernel

    def add_storage(self, name: str, *, storage_type: str, actor: Actor, capacity_mb: int = 0,
                    resource: Resource | None = None, comment: str = "") -> Storage:
        check_name(name, field="storage")
        if self.db.scalar(select(Storage.id).where(Storage.name == name)) is not None:
            raise ValidationError(_("a storage named ${name} exists already",
                                    mapping={"name": repr(name)}), field="storage")
        storage = Storage(name=name, storage_type=storage_type,
                          capacity_mb=check_int(capacity_mb, field="capacity_mb"),
                          comment=comment)
        storage.resource_id = resource.id if resource else None
        self.db.add(storage)
        self.db.flush()
        self.events.log(source="datacenter", name="storage.added", actor=actor, obj=storage,
                        message=f"storage {name} ({storage_type}) added")
        return storage

    def add_image(self, name: str, *, storage: Storage | None, deployment_type: str,
                  root_device: str, actor: Actor, size_mb: int = 0, is_master: bool = True,
                  origin: Image | None = None, owner_id: int | None = None,
                  comment: str = "") -> Image:
        """Register an image whose volume exists already (see ``create_image`` otherwise)."""
        check_name(name, field="image", max_length=100)
        if self.db.scalar(select(Image.id).where(Image.name == name)) is not None:
            raise ValidationError(_("an image named ${name} exists already",
                                    mapping={"name": repr(name)}), field="image")
        image = Image(name=name, storage=storage, deployment_type=self.deployment_type(
            deployment_type), root_device=root_device, size_mb=size_mb, is_master=is_master,
            origin_id=origin.id if origin else None, owner_id=owner_id, comment=comment)
        self.db.add(image)
        self.db.flush()
        self.events.log(source="datacenter", name="image.added", actor=actor, obj=image,
                        message=f"image {name} added on {storage.name if storage else 'none'}")
        return image

    def create_image(self, name: str, *, storage: Storage, deployment_type: str, size_mb: int,
                     actor: Actor, comment: str = "") -> Image:
        """Register image ``name`` and have its empty volume made after the commit (its root
        device is known once the call is done)."""
        size_mb = check_int(size_mb, field="size_mb", minimum=1)
        self.plugins.storage_driver(storage.storage_type)  # refused now if nobody serves it
        image = self.add_image(name, storage=storage, deployment_type=deployment_type,
                               root_device="", size_mb=size_mb, actor=actor, comment=comment)
        self.calls.record(f"create-volume:image:{image.id}", "create_volume",
                          driver=storage.storage_type, target=storage_ref(storage),
                          arguments={"name": volume_name(image.id), "size_mb": size_mb},
                          actor=actor)
        return image

    def image(self, name: str) -> Image:
        image = self.db.scalar(select(Image).where(Image.name == name))
        if image is None:
            raise NotFound(_("no image named ${name}", mapping={"name": repr(name)}),
                           field="image")
        return image

    # -- clones -----------------------------------------------------------------------------
    def clone_image(self, image: Image, *, name: str, size_mb: int, actor: Actor) -> Image:
        """Clone-on-deploy: image ``name``, a copy-on-write clone of ``image``, registered now
        and cloned on the storage after the commit (volume ``qrm-img-<id>``; its root device
        is set once the call is done).

        Idempotent: if a clone of that name is registered already it is returned.
        """
        existing = self.db.scalar(select(Image).where(Image.name == name))
        if existing is not None:
            if existing.origin_id != image.id:
                raise InvalidState(_("image ${name} exists and is not a clone of ${origin}",
                                     mapping={"name": name, "origin": image.name}))
            return existing
        if image.storage is None:
            raise InvalidState(_("image ${name} has no storage and cannot be cloned",
                                 mapping={"name": image.name}), field="image")
        if not image.root_device:
            raise InvalidState(_("image ${name} has no volume yet",
                                 mapping={"name": image.name}), field="image")
        self.plugins.storage_driver(image.storage.storage_type)
        clone = Image(name=name, storage=image.storage, deployment_type=image.deployment_type,
                      root_device="", root_fs_type=image.root_fs_type,
                      size_mb=size_mb, is_master=False, origin_id=image.id,
                      comment=f"clone of {image.name}")
        self.db.add(clone)
        self.db.flush()
        self.calls.record(f"clone-volume:image:{clone.id}", "clone_volume",
                          driver=image.storage.storage_type, target=storage_ref(image.storage),
                          arguments={"source_root_device": image.root_device,
                                     "name": volume_name(clone.id), "size_mb": size_mb},
                          actor=actor)
        self.events.log(source="datacenter", name="image.cloned", actor=actor, obj=clone,
                        message=f"image {image.name} cloned to {name} ({size_mb} MB)")
        return clone

    def remove_image(self, image: Image, *, actor: Actor) -> None:
        """Remove an image and its volume; refused while an appliance uses it. The volume is
        removed after the commit, and the image's row once that is done."""
        if self.db.scalar(select(Appliance.id).where(Appliance.image_id == image.id)):
            raise InvalidState(_("image ${name} is used by an appliance",
                                 mapping={"name": image.name}), field="image")
        if image.storage is not None and image.root_device:
            self.calls.record(f"remove-volume:image:{image.id}", "remove_volume",
                              driver=image.storage.storage_type,
                              target=storage_ref(image.storage),
                              arguments={"root_device": image.root_device}, actor=actor)
            self.events.log(source="datacenter", name="image.removing", actor=actor,
                            obj=image, message=f"image {image.name}: removing its volume")
            return
        self.forget_image(image, actor=actor)

    def forget_image(self, image: Image, *, actor: Actor) -> None:
        """Delete image ``image``'s row (its volume is gone, or it never had one)."""
        self.db.execute(StorageAuthorization.__table__.delete().where(
            StorageAuthorization.image_id == image.id))
        self.events.log(source="datacenter", name="image.removed", actor=actor, obj=image,
                        message=f"image {image.name} removed")
        self.db.delete(image)
        self.db.flush()

    def authorize_storage(self, image: Image, resource: Resource | None, *, actor: Actor) -> None:
        """Tell the image's storage (after the commit) that exactly ``resource`` may mount
        it (None: nobody). Calls of one owner are made in order, so a boot recorded after
        this one finds the export in place."""
        record = self.db.scalar(select(StorageAuthorization).where(
            StorageAuthorization.image_id == image.id))
        if record is None:
            record = StorageAuthorization(image_id=image.id, seq=0)
            self.db.add(record)
        record.resource_id = resource.id if resource else None
        record.updated_at = utcnow()
        record.seq = (record.seq or 0) + 1
        self.db.flush()
        if image.storage is not None:
            self.calls.record(
                f"authenticate:image:{image.id}:{record.seq}", "authenticate",
                driver=image.storage.storage_type, target=storage_ref(image.storage),
                arguments={"root_device": image.root_device,
                           "machine": machine_ref(resource) if resource else None},
                actor=actor)
        self.events.log(source="datacenter", name="storage.authorized", actor=actor, obj=image,
                        level=EventLevel.INFO,
                        message=f"image {image.name} may be mounted by "
                        + (f"resource {resource.id}" if resource else "nobody"))

    # -- listings ---------------------------------------------------------------------------
    def resources(self) -> list[tuple[Resource, Appliance | None]]:
        """Every resource with the appliance running on it (if any), by id."""
        query = (select(Resource, Appliance)
                 .outerjoin(Appliance, Appliance.resource_id == Resource.id)
                 .options(selectinload(Resource.virtualization_type),
                          selectinload(Resource.host))
                 .order_by(Resource.id))
        return [(resource, appliance) for resource, appliance in self.db.execute(query)]

    def resource_page(self, *, state: ResourceState | None = None,
                      virtualization_type: VirtualizationType | None = None,
                      waiting: bool = False, after: str | None = None,
                      before: str | None = None, size: int = DEFAULT_SIZE) -> Page:
        """One page of ``resources()`` (by id), filtered by state, type and waiting for
        acceptance; a constant number of queries whatever the page or the pool's size."""
        query = (select(Resource, Appliance)
                 .outerjoin(Appliance, Appliance.resource_id == Resource.id)
                 .options(selectinload(Resource.virtualization_type),
                          selectinload(Resource.host)))
        if state is not None:
            query = query.where(Resource.state == state)
        if virtualization_type is not None:
            query = query.where(Resource.virtualization_type_id == virtualization_type.id)
        if waiting:
            query = query.where(Resource.accepted.is_(False))
        return RESOURCE_PAGER.page(self.db, query, after=after, before=before, size=size)

    def resource_tally(self) -> list[tuple[ResourceState, int, bool, int]]:
        """``(state, virtualization type id, accepted, count)`` for every combination there
        is: the console's filter counts, in one grouped query."""
        return [tuple(row) for row in self.db.execute(
            select(Resource.state, Resource.virtualization_type_id, Resource.accepted,
                   func.count(Resource.id))
            .group_by(Resource.state, Resource.virtualization_type_id, Resource.accepted))]

    def resource(self, resource_id: int) -> Resource:
        resource = self.db.get(Resource, resource_id)
        if resource is None:
            raise NotFound(_("no resource ${id}", mapping={"id": resource_id}),
                           field="resource")
        return resource

    def appliance_on(self, resource: Resource) -> Appliance | None:
        return self.db.scalar(select(Appliance).where(Appliance.resource_id == resource.id))

    def vms_on(self, host: Resource) -> list[Resource]:
        """The VMs a host resource carries, by id."""
        return list(self.db.scalars(select(Resource).where(Resource.host_id == host.id)
                                    .order_by(Resource.id)))

    def kernels(self) -> list[Kernel]:
        return list(self.db.scalars(select(Kernel).order_by(Kernel.name)))

    def resource_counts(self) -> dict[ResourceState, int]:
        """How many resources are in each state (states without any are left out)."""
        return dict(self.db.execute(
            select(Resource.state, func.count(Resource.id)).group_by(Resource.state)).all())

    # -- resources for appliances -----------------------------------------------------------
    def claim_idle_resource(self, vtype: VirtualizationType, *, cpus: int, memory_mb: int,
                            nics: int, exclude: tuple[int, ...] = ()) -> Resource | None:
        """An idle resource of ``vtype`` with at least the capacity asked for, row-locked so a
        concurrent claim skips it. The caller binds it to an appliance in the same
        transaction (a unique key on ``appliance.resource_id`` makes a double claim fail)."""
        claimed = select(Appliance.resource_id).where(Appliance.resource_id.is_not(None))
        query = (
            select(Resource)
            .where(Resource.virtualization_type_id == vtype.id,
                   Resource.state == ResourceState.IDLE, Resource.image_id.is_(None),
                   Resource.cpus >= cpus, Resource.memory_mb >= memory_mb,
                   Resource.nics >= nics, Resource.id.not_in(claimed))
            .order_by(Resource.cpus, Resource.memory_mb, Resource.id)
            .limit(1)
        )
        if exclude:
            query = query.where(Resource.id.not_in(exclude))
        if supports_row_locks(self.db):
            query = query.with_for_update(skip_locked=True)
        return self.db.scalar(query)

    def booting_fits(self, vtype: VirtualizationType, *, cpus: int, memory_mb: int,
                     nics: int, within: dt.timedelta = dt.timedelta(minutes=10)) -> int:
        """How many unclaimed resources of ``vtype`` that would fit are booting right now
        (seen within ``within``): worth waiting for instead of giving up."""
        since = utcnow() - within
        claimed = select(Appliance.resource_id).where(Appliance.resource_id.is_not(None))
        return self.db.scalar(
            select(func.count(Resource.id)).where(
                Resource.virtualization_type_id == vtype.id,
                Resource.state.in_([ResourceState.UNKNOWN, ResourceState.BOOTING,
                                    ResourceState.TRANSITION]),
                Resource.cpus >= cpus, Resource.memory_mb >= memory_mb, Resource.nics >= nics,
                Resource.id.not_in(claimed),
                (Resource.created_at >= since) | (Resource.last_report_at >= since))) or 0

    def hosts_by_load(self, vm_type: VirtualizationType) -> list[tuple[Resource, int, int]]:
        """Hosts that can run VMs of ``vm_type``, least loaded first, with the CPUs and memory
        their VMs use."""
        if vm_type.host_type_id is None:
            return []
        hosts = list(self.db.scalars(
            select(Resource).where(Resource.virtualization_type_id == vm_type.host_type_id,
                                   Resource.state.in_([ResourceState.ACTIVE, ResourceState.IDLE]))
        ))
        usage = {
            host_id: (int(cpus or 0), int(memory or 0))  # MariaDB sums are Decimal
            for host_id, cpus, memory in self.db.execute(
                select(Resource.host_id, func.sum(Resource.cpus), func.sum(Resource.memory_mb))
                .where(Resource.host_id.is_not(None)).group_by(Resource.host_id))
        }
        rows = [(host, *usage.get(host.id, (0, 0))) for host in hosts]

        def load(row: tuple[Resource, int, int]) -> tuple[float, int]:
            host, used_cpus, used_memory = row
            cpu_share = used_cpus / host.cpus if host.cpus else 1.0
            memory_share = used_memory / host.memory_mb if host.memory_mb else 1.0
            return (max(cpu_share, memory_share) + float(host.load or 0) / 100, host.id)

        return sorted(rows, key=load)

    def create_vm(self, vm_type: VirtualizationType, *, name: str, cpus: int, memory_mb: int,
                  nics: int, disk_mb: int, actor: Actor,
                  exclude_hosts: tuple[int, ...] = ()) -> Resource:
        """Place a VM on the least-loaded host that has room, by the engine's books: its
        resource row (MACs and name fixed now, from the row) is stored, and the host is asked
        to make it after the commit (``create-vm:resource:<id>``). It boots and reports idle.

        Raises CapacityError when no host has room; nothing is left behind."""
        self.plugins.virtualization_driver(vm_type.name)  # refused now if nobody serves it
        for host, used_cpus, used_memory in self.hosts_by_load(vm_type):
            if host.id in exclude_hosts:
                continue
            if host.cpus and used_cpus + cpus > host.cpus:
                continue
            if host.memory_mb and used_memory + memory_mb > host.memory_mb:
                continue
            vm = Resource(mac=generate_mac(), kind=VirtualizationKind.VM, name=name,
                          virtualization_type=vm_type, host=host, cpus=cpus,
                          memory_mb=memory_mb, nics=nics, state=ResourceState.BOOTING)
            self.db.add(vm)
            self.db.flush()
            spec = VmSpec(name=vm_name(vm.id), cpus=cpus, memory_mb=memory_mb,
                          macs=nic_macs(vm.mac, nics), disk_mb=disk_mb)
            self.calls.record(f"create-vm:resource:{vm.id}", "create_vm",
                              driver=vm_type.name, target=host_ref(host),
                              arguments={"spec": spec}, actor=actor)
            self.events.log(source="datacenter", name="vm.created", actor=actor, obj=vm,
                            message=f"VM {name} (resource {vm.id}, {cpus} CPU, {memory_mb} MB) "
                            f"placed on host {host.label}")
            self.plugins.hook.qrm_resource_event(request=self.plugins.request, resource=vm,
                                                 action="add")
            return vm
        raise CapacityError(_("no ${type} host has room for ${cpus} CPU(s) and ${memory_mb} MB",
                              mapping={"type": vm_type.label, "cpus": cpus,
                                       "memory_mb": memory_mb}))

    def remove_vm(self, vm: Resource, *, actor: Actor) -> None:
        """Destroy a VM after the commit; its resource row goes once that is done."""
        if vm.host is None:
            self.remove_resource(vm, actor=actor)
            return
        self.calls.record(f"remove-vm:resource:{vm.id}", "remove_vm",
                          driver=vm.virtualization_type.name, target=host_ref(vm.host),
                          arguments={"name": vm_name(vm.id)}, actor=actor)
        vm.state = ResourceState.OFF
        self.events.log(source="datacenter", name="vm.removing", actor=actor, obj=vm,
                        message=f"VM {vm.label} (resource {vm.id}): removing it from host "
                        f"{vm.host.label}")

    def assign_kernel(self, resource: Resource, kernel: Kernel | None, *,
                      actor: Actor) -> Resource:
        """Have ``resource`` boot ``kernel`` from its next boot on (None: the default
        kernel, the idle ramdisk); ``reboot`` makes it boot now. Refused while an appliance
        runs on it (the appliance decides its kernel)."""
        if self.db.scalar(select(Appliance.id).where(Appliance.resource_id == resource.id,
                                                     Appliance.state != ApplianceState.STOPPED)):
            raise InvalidState(_("resource ${id} runs an appliance",
                                 mapping={"id": resource.id}), field="resource")
        resource.kernel = kernel
        self.plugins.hook.qrm_resource_assigned(request=self.plugins.request, resource=resource,
                                                kernel=kernel)
        self.db.flush()
        self.events.log(source="datacenter", name="resource.kernel_assigned", actor=actor,
                        obj=resource, level=EventLevel.NOTICE,
                        message=f"resource {resource.id} boots kernel "
                        f"{kernel.name if kernel else '(default)'} from its next boot on")
        return resource

    def reboot(self, resource: Resource, *, actor: Actor) -> None:
        """Reboot ``resource`` into whatever it is assigned: a plugin may do it from outside
        (hypervisor, power switch); otherwise the VM's driver, else a queued command."""
        resource.state = ResourceState.TRANSITION
        # its next boot script carries a one-time hand-over code for its agent (docs/boot.md)
        resource.boot_window_until = utcnow() + BOOT_WINDOW
        self.plugins.hook.qrm_resource_event(request=self.plugins.request, resource=resource,
                                             action="start")
        resource.power_seq = (resource.power_seq or 0) + 1
        key = f"reboot:resource:{resource.id}:{resource.power_seq}"
        if resource.kind is VirtualizationKind.VM and resource.host is not None:
            self.calls.record(key, "reboot_vm", driver=resource.virtualization_type.name,
                              target=host_ref(resource.host),
                              arguments={"name": vm_name(resource.id)}, actor=actor)
        else:
            # a plugin's power switch, else a reboot command through the command worker
            self.calls.record(key, POWER, driver=POWER, target=machine_ref(resource),
                              arguments={"command": "reboot"}, actor=actor)
        self.events.log(source="datacenter", name="resource.reboot", actor=actor, obj=resource,
                        level=EventLevel.INFO, message=f"resource {resource.id} rebooting")


class AppliancesService:
    """The appliance life-cycle: add, start, stop, remove (engine-behaviour §2, without its
    weaknesses: the resource is claimed transactionally, start is tracked until the resource
    reports back, and storage is authorised before the reboot)."""

    def __init__(self, db: Session, *, datacenter: DatacenterService, events: EventService,
                 plugins: PluginService) -> None:
        self.db, self.datacenter, self.events, self.plugins = db, datacenter, events, plugins

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> AppliancesService:
        return cls(request.dbsession, datacenter=request.find_service(DatacenterService),
                   events=request.find_service(EventService),
                   plugins=request.find_service(PluginService))

    @property
    def fail_overs(self) -> Any:
        from engine.datacenter.failover import FailOvers

        return FailOvers(self.db, appliances=self)

    def fail_over(self, appliance: Appliance, reason: str, *, actor: Actor,
                  types: list[str] | None = None, create_vms: bool = True,
                  avoid_failed_within: dt.timedelta | None = None) -> Any:
        """Move ``appliance`` off its failed resource (``engine.datacenter.failover``): the
        failed machine is fenced (powered off, or its image's export closed) before the
        appliance starts on an idle resource or a new VM of its own virtualization type, or
        of ``types`` after it (in that order; a physical appliance may go to a VM); with
        ``create_vms`` a VM is created when no idle one fits. Resources that failed in a
        fail-over within ``avoid_failed_within`` are not used. The steps run in the
        ``datacenter.failover`` job; returns the ``ApplianceFailOver`` row (the open one, if
        the appliance is being failed over already). The appliance keeps its id, name, kernel
        and image."""
        return self.fail_overs.start(appliance, reason, actor=actor, types=types,
                                     create_vms=create_vms,
                                     avoid_failed_within=avoid_failed_within)

    def change_type(self, appliance: Appliance, virtualization_type: str |
                    VirtualizationType, *, actor: Actor, create_vms: bool = True) -> Any:
        """Change the appliance's machine type (P2V, V2P, V2V; engine-behaviour §2.7),
        keeping its image, kernel, id and name. A stopped appliance gets the new type now (a
        resource of the old type is released). An active one is stopped, moved to an idle
        resource (or, ``create_vms``, a new VM) of the new type and started there by the
        ``datacenter.failover`` job; the row of those steps is returned."""
        vtype = (virtualization_type if isinstance(virtualization_type, VirtualizationType)
                 else self.datacenter.virtualization_type(virtualization_type))
        return self.fail_overs.change_type(appliance, vtype, actor=actor,
                                           create_vms=create_vms)

    def _hook(self, appliance: Appliance, action: str) -> None:
        self.plugins.hook.qrm_appliance_event(request=self.plugins.request, appliance=appliance,
                                              action=action)

    def list(self) -> list[Appliance]:
        """Every appliance with its resource, kernel and image, by name."""
        return list(self.db.scalars(select(Appliance).options(
            selectinload(Appliance.resource), selectinload(Appliance.kernel),
            selectinload(Appliance.image)).order_by(Appliance.name)))

    def page(self, *, state: ApplianceState | None = None, after: str | None = None,
             before: str | None = None, size: int = DEFAULT_SIZE) -> Page:
        """One page of ``list()`` by name, only those in ``state`` if given."""
        query = select(Appliance).options(
            selectinload(Appliance.resource), selectinload(Appliance.kernel),
            selectinload(Appliance.image))
        if state is not None:
            query = query.where(Appliance.state == state)
        return APPLIANCE_PAGER.page(self.db, query, after=after, before=before, size=size)

    def state_counts(self) -> dict[ApplianceState, int]:
        """How many appliances are in each state (one grouped query)."""
        return dict(self.db.execute(select(Appliance.state, func.count(Appliance.id))
                                    .group_by(Appliance.state)).all())

    def add(self, name: str, *, kernel: Kernel, image: Image, virtualization_type:
            VirtualizationType, actor: Actor, cpus: int = 0, memory_mb: int = 0, nics: int = 1,
            ha: bool = False, resource: Resource | None = None, comment: str = "") -> Appliance:
        """Create a stopped appliance (no boot, storage or PXE action happens on add)."""
        name = check_name(name.lower(), field="name", max_length=100)
        if self.db.scalar(select(Appliance.id).where(Appliance.name == name)) is not None:
            raise ValidationError(_("an appliance named ${name} exists already",
                                    mapping={"name": repr(name)}), field="name")
        appliance = Appliance(name=name, kernel=kernel, image=image,
                              virtualization_type=virtualization_type, cpus=cpus,
                              memory_mb=memory_mb, nics=nics, ha=ha, resource=resource,
                              comment=comment, state=ApplianceState.STOPPED,
                              stopped_at=utcnow())
        self.db.add(appliance)
        self.db.flush()
        self.events.log(source="datacenter", name="appliance.added", actor=actor, obj=appliance,
                        message=f"appliance {name} added")
        self._hook(appliance, "add")
        return appliance

    def assign_resource(self, appliance: Appliance, resource: Resource, *, actor: Actor) -> None:
        if appliance.state is not ApplianceState.STOPPED:
            raise InvalidState(appliance_state(appliance))
        appliance.resource = resource
        self.db.flush()
        self.events.log(source="datacenter", name="appliance.assigned", actor=actor,
                        obj=appliance, level=EventLevel.INFO,
                        message=f"appliance {appliance.name} assigned resource {resource.id}")

    def start(self, appliance: Appliance, *, actor: Actor) -> Appliance:
        """Boot the appliance on its resource: kernel assigned, storage authorised for exactly
        this resource, then the reboot. The appliance is ``starting`` until the resource
        reports that it runs the image (``ResourceReportService``)."""
        if appliance.state in (ApplianceState.STARTING, ApplianceState.ACTIVE):
            return appliance  # idempotent: a resumed step does not reboot twice
        if appliance.state is not ApplianceState.STOPPED:
            raise InvalidState(appliance_state(appliance))
        resource = appliance.resource
        if resource is None:
            raise InvalidState(_("appliance ${name} has no resource",
                                 mapping={"name": appliance.name}), field="resource")
        resource.kernel = appliance.kernel
        resource.image = appliance.image
        self.plugins.hook.qrm_resource_assigned(request=self.plugins.request, resource=resource,
                                                kernel=appliance.kernel)
        self.datacenter.authorize_storage(appliance.image, resource, actor=actor)
        self.datacenter.reboot(resource, actor=actor)
        appliance.state = ApplianceState.STARTING
        appliance.started_at = utcnow()
        appliance.stopped_at = None
        self.db.flush()
        self.events.log(source="datacenter", name="appliance.start", actor=actor, obj=appliance,
                        message=f"appliance {appliance.name} starting on resource {resource.id}")
        self._hook(appliance, "start")
        return appliance

    def stop(self, appliance: Appliance, *, actor: Actor) -> Appliance:
        """Send the resource back to the idle ramdisk. Storage is locked to nobody once the
        resource reports idle again (``ResourceReportService``)."""
        if appliance.state in (ApplianceState.STOPPING, ApplianceState.STOPPED):
            return appliance
        resource = appliance.resource
        appliance.state = ApplianceState.STOPPING
        if resource is not None and resource.state not in (ResourceState.ERROR,
                                                           ResourceState.OFF):
            resource.kernel = None
            resource.image = None
            self.plugins.hook.qrm_resource_assigned(request=self.plugins.request,
                                                    resource=resource, kernel=None)
            self.datacenter.reboot(resource, actor=actor)
        else:
            self._stopped(appliance, actor=actor)
        self.db.flush()
        self.events.log(source="datacenter", name="appliance.stop", actor=actor, obj=appliance,
                        message=f"appliance {appliance.name} stopping")
        self._hook(appliance, "stop")
        return appliance

    def restart(self, appliance: Appliance, *, actor: Actor) -> Appliance:
        """Reboot an active appliance's resource into the same kernel and image; it is
        ``starting`` until the resource reports that it runs again."""
        if appliance.state is not ApplianceState.ACTIVE or appliance.resource is None:
            raise InvalidState(appliance_state(appliance))
        self.datacenter.reboot(appliance.resource, actor=actor)
        appliance.state = ApplianceState.STARTING
        self.events.log(source="datacenter", name="appliance.restart", actor=actor,
                        obj=appliance, message=f"appliance {appliance.name} restarting")
        self._hook(appliance, "restart")
        return appliance

    def _stopped(self, appliance: Appliance, *, actor: Actor) -> None:
        appliance.state = ApplianceState.STOPPED
        appliance.stopped_at = utcnow()
        self.datacenter.authorize_storage(appliance.image, None, actor=actor)

    def release(self, appliance: Appliance, *, actor: Actor) -> Resource | None:
        """Unbind a stopped appliance from its resource (the resource is free again)."""
        if appliance.state is not ApplianceState.STOPPED:
            raise InvalidState(appliance_state(appliance))
        resource, appliance.resource = appliance.resource, None
        self.db.flush()
        return resource

    def remove(self, appliance: Appliance, *, actor: Actor) -> None:
        """Delete a stopped appliance."""
        if appliance.state is not ApplianceState.STOPPED:
            raise InvalidState(_("appliance ${name} is ${state}; stop it first",
                                 mapping={"name": appliance.name,
                                          "state": appliance.state.value}))
        self._hook(appliance, "remove")
        self.events.log(source="datacenter", name="appliance.removed", actor=actor,
                        obj=appliance, message=f"appliance {appliance.name} removed")
        self.db.delete(appliance)
        self.db.flush()

    # -- called when the resource reports ---------------------------------------------------
    def resource_reported(self, resource: Resource, *, actor: Actor) -> Appliance | None:
        """Move the appliance on ``resource`` on after the resource reported its state."""
        appliance = self.db.scalar(select(Appliance).where(Appliance.resource_id == resource.id))
        if appliance is None:
            return None
        if appliance.state is ApplianceState.STARTING and resource.state is ResourceState.ACTIVE:
            appliance.state = ApplianceState.ACTIVE
            self.events.log(source="datacenter", name="appliance.active", actor=actor,
                            obj=appliance, message=f"appliance {appliance.name} is active on "
                            f"resource {resource.id}")
        elif appliance.state is ApplianceState.STOPPING and resource.state is ResourceState.IDLE:
            self._stopped(appliance, actor=actor)
            self.events.log(source="datacenter", name="appliance.stopped", actor=actor,
                            obj=appliance, message=f"appliance {appliance.name} stopped")
        return appliance


# -- what a done call changes in the database (engine.datacenter.calls) --------------------
CALLS_ACTOR = Actor.system("outside-work")


def _row_id(call: Any) -> int:
    """The row a call is about: the number after ``…:image:`` / ``…:resource:``."""
    return int(call.key.split(":")[2])


@on_done("create_volume")
@on_done("clone_volume")
@on_done("snapshot_volume")
def _volume_made(request: Any, call: Any) -> None:
    image = request.dbsession.get(Image, _row_id(call))
    if image is not None:
        image.root_device = call.result["value"]
        image.missing_since = None


@on_done("remove_volume")
def _volume_removed(request: Any, call: Any) -> None:
    if not call.key.startswith("remove-volume:image:"):
        return  # an orphan's removal: there is no row
    image = request.dbsession.get(Image, _row_id(call))
    if image is not None:
        request.find_service(DatacenterService).forget_image(image, actor=CALLS_ACTOR)


@on_done("remove_vm")
def _vm_removed(request: Any, call: Any) -> None:
    if not call.key.startswith("remove-vm:resource:"):
        return
    vm = request.dbsession.get(Resource, _row_id(call))
    if vm is not None:
        request.find_service(DatacenterService).remove_resource(vm, actor=CALLS_ACTOR)


@on_done(POWER)
def _power_done(request: Any, call: Any) -> None:
    if call.result["value"].get("handled"):
        return
    resource = request.dbsession.get(Resource, call.target["id"])
    if resource is None:
        return
    from engine.commands.services import CommandService

    # a network-booted machine whose agent registered, with no SSH target of its own, is
    # told by its agent (the command comes with the reply to its next report)
    executor = "agent" if resource.agent_token_hash and not resource.ssh_host else "ssh"
    request.find_service(CommandService).enqueue(resource, [call.arguments["command"]],
                                                 actor=CALLS_ACTOR, executor=executor)
