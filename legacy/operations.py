"""openQRM's 31 cloud operations (§10.3–10.4 of the reference), thin over the engine's
services as the modern SOAP face uses them.

Each operation is ``function(request, actor, *values) -> result`` with the values of its own
fields (after ``mode,user,password``) already converted (``legacy.fields``); results take
openQRM's shapes: ``0`` for done, ids and balances as numbers, lists, and associative maps
whose members carry openQRM's names and values as text. A service that refuses raises its
error, which the face answers as openQRM did (``failure``: nothing, or ``1``) and records
in the event log.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from billing.services import BillingService, LedgerService
from engine.cloud.billing_port import BillingPort
from engine.cloud.models import (
    CloudAppliance,
    CloudApplianceState,
    CloudRequest,
    CloudUser,
    CloudUserStatus,
    Product,
    RequestStatus,
)
from engine.cloud.services import CloudRequestService, CloudUserService, ProductService
from engine.errors import InvalidState, NotFound, ValidationError
from engine.security import Actor
from legacy.fields import Field, wire_date, wire_number, wire_transaction_time

#: openQRM's names of the request states (§3)
STATUS_NAMES = {
    RequestStatus.NEW: "new", RequestStatus.APPROVED: "approve",
    RequestStatus.ACTIVE: "active", RequestStatus.DENIED: "deny",
    RequestStatus.DEPROVISION: "deprovision", RequestStatus.DONE: "done",
    RequestStatus.NO_RESOURCES: "no-res",
}
#: CloudRequestSetState: the names openQRM accepted -> the engine's state changes; the
#: others (active, done, no-res) are the engine's to reach, never an admin's (W-17)
SETTABLE_STATES = {"new": "new", "approve": "approve", "approved": "approve",
                   "deny": "deny", "denied": "deny", "deprovision": "deprovision"}
#: the most transactions one CloudUserGetTransactions answers
MAX_TRANSACTIONS = 1000
#: the details openQRM's CloudUserCreate gave a new user
NEW_USER_DETAILS = {"forename": "Cloud-User", "street": "na", "city": "na", "country": "na",
                    "phone": "0"}


class NotAvailable(InvalidState):
    """An operation the engine does not offer (yet)."""


def _users(request: Any) -> CloudUserService:
    return request.find_service(CloudUserService)


def _requests(request: Any) -> CloudRequestService:
    return request.find_service(CloudRequestService)


def _user(request: Any, actor: Actor, name: str) -> CloudUser:
    # openQRM names the user in every user-level call; a cloud user may only name itself
    return _users(request).resolve(name, actor=actor)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# -- both modes -------------------------------------------------------------------------------
def provision(request: Any, actor: Actor, *, cloud_user: str, start: Any, stop: Any,
              kernel: str, image: str, memory_mb: int, cpus: int, disk_mb: int,
              network_cards: int, quantity: int, virtualization: str, ha: bool,
              puppet_group: str) -> int:
    user = _user(request, actor, cloud_user)
    cloud_request = _requests(request).submit(
        actor=actor, cloud_user=user.name, start=start, stop=stop, kernel=kernel,
        image=image, memory_mb=memory_mb, cpus=cpus, disk_mb=disk_mb,
        network_cards=network_cards, quantity=quantity, virtualization=virtualization,
        ha=ha, puppet_groups=(puppet_group,) if puppet_group.strip() else ())
    return cloud_request.id


def deprovision(request: Any, actor: Actor, *, request_id: int) -> int:
    _requests(request).deprovision(request_id, actor=actor)
    return 0


def user_details(request: Any, actor: Actor, *, cloud_user: str) -> dict[str, str]:
    user = _user(request, actor, cloud_user)
    balance = request.find_service(BillingPort).balance(user)
    return {"id": str(user.id), "name": user.name, "lastname": user.lastname,
            "forename": user.forename, "email": user.email, "street": user.street,
            "city": user.city, "country": user.country, "phone": user.phone,
            "status": "1" if user.status is CloudUserStatus.ACTIVE else "0",
            "ccunits": wire_number(balance)}


def user_set_details(request: Any, actor: Actor, *, cloud_user: str, lastname: str,
                     forename: str, email: str, street: str, city: str, country: str,
                     phone: str) -> int:
    given = {"lastname": lastname, "forename": forename, "email": email, "street": street,
             "city": city, "country": country, "phone": phone}
    user = _user(request, actor, cloud_user)
    _users(request).set_details(user.name, actor=actor,
                                **{key: value for key, value in given.items() if value})
    return 0


def user_set_password(request: Any, actor: Actor, *, cloud_user: str, password: str) -> int:
    user = _user(request, actor, cloud_user)
    _users(request).set_password(user.name, password, actor=actor)
    return 0


def user_ccus(request: Any, actor: Actor, *, cloud_user: str) -> Any:
    balance = request.find_service(BillingPort).balance(_user(request, actor, cloud_user))
    return balance


def user_limits(request: Any, actor: Actor, *, cloud_user: str) -> dict[str, str]:
    user = _user(request, actor, cloud_user)
    limits = _users(request).get_limits(user.name, actor=actor)
    return {"resource_limit": str(limits.resource_limit or 0),
            "memory_limit": str(limits.memory_limit_mb or 0),
            "disk_limit": str(limits.disk_limit_mb or 0),
            "cpu_limit": str(limits.cpu_limit or 0),
            "network_limit": str(limits.network_limit or 0)}


def user_transactions(request: Any, actor: Actor, *, cloud_user: str, limit: int
                      ) -> list[dict[str, str]]:
    user = _user(request, actor, cloud_user)
    if not 1 <= limit <= MAX_TRANSACTIONS:
        raise ValidationError(f"max must be 1 to {MAX_TRANSACTIONS}", field="max")
    entries = request.find_service(LedgerService).transactions(user, limit=limit)
    # openQRM's ct_ccu_charge is what a row charged: a credit is a negative charge
    return [{"id": str(entry.id), "time": wire_transaction_time(entry.time),
             "charge": wire_number(-entry.amount), "balance": wire_number(entry.balance_after),
             "reason": entry.reason, "comment": entry.comment} for entry in entries]


def request_list(request: Any, actor: Actor, *, cloud_user: str) -> list[int]:
    if actor.is_cloud_user or cloud_user:
        cloud_user = _user(request, actor, cloud_user).name
    return [cr.id for cr in _requests(request).list(actor=actor, cloud_user=cloud_user or None)]


def request_details(request: Any, actor: Actor, *, request_id: int) -> dict[str, str]:
    cloud_request: CloudRequest = _requests(request).get(request_id, actor=actor)
    appliances = sorted(cloud_request.appliances, key=lambda ca: ca.id)
    last_bill = request.find_service(LedgerService).last_charge_time(cloud_request.id)
    return {
        "id": str(cloud_request.id), "cu_id": str(cloud_request.user_id),
        "status": STATUS_NAMES.get(cloud_request.status, "new"),
        "request_time": wire_date(cloud_request.created_at),
        "start": wire_date(cloud_request.start), "stop": wire_date(cloud_request.stop),
        "kernel_name": cloud_request.kernel.name, "image_name": cloud_request.image.name,
        "ram_req": str(cloud_request.memory_mb), "cpu_req": str(cloud_request.cpus),
        "disk_req": str(cloud_request.disk_mb), "network_req": str(cloud_request.network_cards),
        "resource_quantity": str(cloud_request.quantity),
        "resource_type_req": cloud_request.virtualization_type.name,
        "deployment_type_req": "", "ha_req": "1" if cloud_request.ha else "0",
        "shared_req": "1" if cloud_request.clone_on_deploy else "0",
        "puppet_groups": ",".join(str(group) for group in cloud_request.puppet_groups or []),
        # openQRM's comma-separated list of the engine appliances ("0": none yet), and every
        # cloud appliance of the request (openQRM gave only the last one's, W-20)
        "appliance_id": ",".join(str(ca.appliance_id) for ca in appliances
                                 if ca.appliance_id) or "0",
        "cloudappliance_id": ",".join(str(ca.id) for ca in appliances),
        "lastbill": wire_date(last_bill),
    }


def request_extend(request: Any, actor: Actor, *, request_id: int, stop: Any) -> int:
    _requests(request).extend(request_id, stop, actor=actor)
    return 0


def appliance_list(request: Any, actor: Actor, *, cloud_user: str) -> list[int]:
    if actor.is_cloud_user or cloud_user:
        cloud_user = _user(request, actor, cloud_user).name
    appliances = _requests(request).appliances(actor=actor, cloud_user=cloud_user or None)
    return [ca.id for ca in appliances]


def appliance_details(request: Any, actor: Actor, *, appliance_id: int) -> dict[str, str]:
    ca: CloudAppliance = _requests(request).appliance(appliance_id, actor=actor)
    cloud_request, appliance, resource = ca.request, ca.appliance, ca.resource
    addresses = [address.address for address in ca.addresses]
    if addresses:
        ip = addresses[0]
    elif resource is not None and resource.ip:
        ip = resource.ip
    else:
        ip = "auto-select"
    return {
        "id": str(ca.id), "appliance_name": ca.name,
        "appliance_state": ca.state.value, "appliance_comment": ca.comment,
        "resource_id": _text(ca.resource_id),
        "resource_type": resource.virtualization_type.name if resource else "",
        "resource_int_ip": (resource.ip or "") if resource else "",
        "resource_uptime": _text(resource.uptime_s if resource else None),
        "resource_cpumodel": "", "resource_cpunumber": _text(resource.cpus if resource
                                                            else None),
        "resource_cpuspeed": "",
        "resource_load": _text(resource.load if resource else None),
        "resource_memtotal": _text(resource.memory_mb if resource else None),
        "resource_memused": _text(resource.memory_used_mb if resource else None),
        "resource_swaptotal": "", "resource_swapused": "",
        "image_name": appliance.image.name if appliance else cloud_request.image.name,
        "disk_size": str(ca.disk_mb or cloud_request.disk_mb),
        "kernel_name": appliance.kernel.name if appliance else cloud_request.kernel.name,
        # openQRM's ca_state: 1 active, 0 paused (and everything not running)
        "cloud_appliance_state": "1" if ca.state is CloudApplianceState.ACTIVE else "0",
        "cloud_appliance_cr_id": str(cloud_request.id), "cloud_appliance_ip": ip,
    }


def appliance_command(request: Any, actor: Actor, *, appliance_id: int, command: str) -> int:
    from engine.cloud.provisioning import ProvisioningService

    command = command.strip().lower()
    if command == "noop":
        _requests(request).appliance(appliance_id, actor=actor)  # exists and is the caller's
        return 0
    if command not in ("start", "stop", "restart"):
        raise ValidationError("command must be noop, start, stop or restart", field="command")
    request.find_service(ProvisioningService).command(appliance_id, command, actor=actor)
    return 0


def appliance_comment(request: Any, actor: Actor, *, appliance_id: int, comment: str) -> int:
    _requests(request).comment_appliance(appliance_id, comment, actor=actor)
    return 0


def appliance_resize(request: Any, actor: Actor, *, appliance_id: int, disk_mb: int) -> int:
    _requests(request).appliance(appliance_id, actor=actor)
    raise NotAvailable("resizing appliance disks is not available")


def appliance_private(request: Any, actor: Actor, *, appliance_id: int) -> int:
    _requests(request).appliance(appliance_id, actor=actor)
    raise NotAvailable("making private images of appliances is not available")


def kernel_list(request: Any, actor: Actor) -> list[str]:
    return [kernel.name for kernel in _requests(request).kernels(actor=actor)]


def image_list(request: Any, actor: Actor) -> list[str]:
    # a cloud user sees the public images and its own private ones only (not W-13)
    return [image.name for image in _requests(request).images(actor=actor)]


def virtualization_list(request: Any, actor: Actor) -> list[str]:
    return [vtype.name for vtype in _requests(request).virtualization_types(actor=actor)]


def puppet_list(request: Any, actor: Actor) -> list[str]:
    return list(_requests(request).puppet_groups(actor=actor))


def _selector(request: Any) -> None:
    from engine.cloud.config import CloudConfigService

    if not request.find_service(CloudConfigService)["cloud_selector"]:
        raise InvalidState("products are off (cloud_selector is false)")


def product_list(request: Any, actor: Actor, *, product_type: str) -> list[int]:
    _selector(request)
    products = request.find_service(ProductService)
    wanted = products.parse_type(product_type.strip())
    # openQRM listed disabled products too, for both modes; cloud users see enabled ones
    return [product.id for product in sorted(products.list(wanted, actor=actor),
                                             key=lambda product: (product.sort_id, product.id))]


def product_details(request: Any, actor: Actor, *, product_id: int) -> dict[str, str]:
    _selector(request)
    product: Product = request.find_service(ProductService).get(product_id, actor=actor)
    return {"id": str(product.id), "type": product.type.value, "sort_id": str(product.sort_id),
            "quantity": product.quantity, "price": wire_number(product.price),
            "name": product.name, "description": product.description,
            "state": "1" if product.enabled else "0"}


# -- admin only -------------------------------------------------------------------------------
def user_list(request: Any, actor: Actor) -> list[str]:
    return _users(request).names()


def user_create(request: Any, actor: Actor, *, cloud_user: str, password: str, email: str) -> int:
    user = _users(request).create(cloud_user, password, email, actor=actor,
                                  lastname=cloud_user, **NEW_USER_DETAILS)
    return user.id


def user_remove(request: Any, actor: Actor, *, cloud_user: str) -> int:
    _users(request).remove(_user(request, actor, cloud_user).name, actor=actor)
    return 0


def user_set_ccus(request: Any, actor: Actor, *, cloud_user: str, ccus: Any) -> int:
    # absolute, as in openQRM, but booked as one ledger row (not W-16)
    request.find_service(BillingService).set_balance(
        _user(request, actor, cloud_user), ccus, comment="CloudUserSetCCUs", actor=actor)
    return 0


def user_set_limits(request: Any, actor: Actor, *, cloud_user: str, resource_limit: int,
                    memory_limit: int, disk_limit: int, cpu_limit: int,
                    network_limit: int) -> int:
    _users(request).set_limits(
        _user(request, actor, cloud_user).name, actor=actor, resource_limit=resource_limit,
        memory_limit_mb=memory_limit, disk_limit_mb=disk_limit, cpu_limit=cpu_limit,
        network_limit=network_limit)
    return 0


def push_transaction(request: Any, actor: Actor, *, cloud_user: str, request_id: int | None,
                     charge: Any, balance: Any, reason: str, comment: str) -> int:
    # The row charges ``charge`` and the balance moves with it (openQRM wrote the row and
    # left the balance alone, W-16); the caller's ccu_balance is checked as a number only:
    # the balance after the row is the ledger's.
    user = _user(request, actor, cloud_user)
    if request_id:
        request_id = _requests(request).get(request_id, actor=actor).id
    request.find_service(BillingPort).credit(
        user, -charge, reason=reason, comment=comment, actor=actor,
        request_id=request_id or None)
    return 0


def request_set_state(request: Any, actor: Actor, *, request_id: int, state: str) -> int:
    name = state.strip().lower()
    if name not in SETTABLE_STATES:
        known = set(STATUS_NAMES.values())
        raise ValidationError(
            f"state {name!r} cannot be set" + (" (the engine reaches it by itself)"
                                              if name in known else ""), field="state_name")
    _requests(request).set_state(request_id, SETTABLE_STATES[name], actor=actor)
    return 0


def request_remove(request: Any, actor: Actor, *, request_id: int) -> int:
    _requests(request).remove(request_id, actor=actor)
    return 0


# -- the table --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Operation:
    """One openQRM operation: its fields after ``mode,user,password``, what it answers
    when it fails (``None`` or ``1``; a few admin operations answer ``1`` when the cloud
    user is unknown), and whether it is for admin mode on the admin endpoint only."""

    name: str
    function: Callable[..., Any]
    fields: tuple[Field, ...]
    failure: Any = None
    admin_only: bool = False
    unknown_user: Any = None
    #: the name of the WSDL's input part (openQRM's WSDL calls six of them "Result")
    part: str = "symbol"

    def call(self, request: Any, actor: Actor, values: list[Any]) -> Any:
        """Run the operation with its fields' values, in the order of ``fields``."""
        names = [name for name, parameter in inspect.signature(self.function).parameters.items()
                 if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
        return self.function(request, actor, **dict(zip(names, values, strict=True)))

    @property
    def field_count(self) -> int:
        return 3 + len(self.fields)

    def failure_for(self, error: BaseException) -> Any:
        if (self.unknown_user is not None and isinstance(error, NotFound)
                and getattr(error, "field", None) == "cloud_user"):
            return self.unknown_user
        return self.failure


USER = Field("cloud_user", "name")
USER_OR_ALL = Field("cloud_user", "name", optional=True)
CR_ID = Field("cr_id", "int")
CA_ID = Field("ca_id", "int")

OPERATIONS: tuple[Operation, ...] = (
    Operation("CloudProvision", provision, (
        USER, Field("start", "date"), Field("stop", "date"), Field("kernel_name", "name"),
        Field("image_name", "name"), Field("ram_MB", "int"), Field("cpus", "int"),
        Field("disk_MB", "int"), Field("nics", "int"), Field("quantity", "int"),
        Field("virtualization_name", "name"), Field("ha", "bool"),
        Field("puppet_group", "name", optional=True))),
    Operation("CloudDeProvision", deprovision, (CR_ID,)),
    Operation("CloudUserGetDetails", user_details, (USER,)),
    Operation("CloudUserSetDetails", user_set_details, (
        USER, Field("lastname", optional=True), Field("forename", optional=True),
        Field("email", "name", optional=True), Field("street", optional=True),
        Field("city", optional=True), Field("country", optional=True),
        Field("phone", optional=True)), failure=1),
    Operation("CloudUserSetPassword", user_set_password, (
        USER, Field("new_password")), failure=1),
    Operation("CloudUserGetCCUs", user_ccus, (USER,)),
    Operation("CloudUserGetLimits", user_limits, (USER,)),
    Operation("CloudUserGetTransactions", user_transactions, (USER, Field("max", "int"))),
    Operation("CloudRequestGetList", request_list, (USER_OR_ALL,)),
    Operation("CloudRequestGetDetails", request_details, (CR_ID,)),
    Operation("CloudRequestExtend", request_extend, (CR_ID, Field("new_stop_epoch", "epoch"))),
    Operation("CloudApplianceGetList", appliance_list, (USER_OR_ALL,)),
    Operation("CloudApplianceGetDetails", appliance_details, (CA_ID,)),
    Operation("CloudApplianceCommand", appliance_command, (
        CA_ID, Field("command", "name")), failure=1),
    Operation("CloudApplianceComment", appliance_comment, (
        CA_ID, Field("comment", optional=True)), failure=1),
    Operation("CloudApplianceResize", appliance_resize, (
        CA_ID, Field("new_disk_MB", "int")), failure=1),
    Operation("CloudAppliancePrivate", appliance_private, (CA_ID,), failure=1),
    Operation("KernelGetList", kernel_list, (), part="Result"),
    Operation("ImageGetList", image_list, (), part="Result"),
    Operation("VirtualizationGetList", virtualization_list, (), part="Result"),
    Operation("PuppetGetList", puppet_list, (), part="Result"),
    Operation("ProductGetList", product_list, (Field("product_type", "name"),),
              part="Result"),
    Operation("ProductGetDetails", product_details, (Field("product_id", "int"),),
              part="Result"),
    # -- admin only (§10.4) --
    Operation("CloudUserGetList", user_list, (), admin_only=True),
    Operation("CloudUserCreate", user_create, (
        USER, Field("password"), Field("email", "name")), admin_only=True),
    Operation("CloudUserRemove", user_remove, (USER,), admin_only=True, unknown_user=1),
    Operation("CloudUserSetCCUs", user_set_ccus, (USER, Field("ccunits", "number")),
              admin_only=True, unknown_user=1),
    Operation("CloudUserSetLimits", user_set_limits, (
        USER, Field("resource_limit", "int"), Field("memory_limit", "int"),
        Field("disk_limit", "int"), Field("cpu_limit", "int"),
        Field("network_limit", "int")), admin_only=True, unknown_user=1),
    Operation("CloudPushTransaction", push_transaction, (
        USER, Field("cr_id", "int", optional=True), Field("ccu_charge", "number"),
        Field("ccu_balance", "number", optional=True), Field("reason", "name"),
        Field("comment", optional=True)), admin_only=True, unknown_user=1),
    Operation("CloudRequestSetState", request_set_state, (CR_ID, Field("state_name", "name")),
              admin_only=True),
    Operation("CloudRequestRemove", request_remove, (CR_ID,), admin_only=True),
)

OPERATIONS_BY_NAME = {operation.name: operation for operation in OPERATIONS}

#: the two endpoints: the admin one serves all 31 operations, the user one 23
ADMIN_ENDPOINT, USER_ENDPOINT = "cloudadmin", "clouduser"


def operations_for(endpoint: str) -> tuple[Operation, ...]:
    return tuple(op for op in OPERATIONS if endpoint == ADMIN_ENDPOINT or not op.admin_only)
