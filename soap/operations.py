"""The API operations, once, for both faces (SOAP and XML-RPC).

Each operation is a plain function ``(request, actor, *parameters)`` that calls the services and
returns plain Python values: ``dict`` for the complex types (members named as in SOAP-API.md),
lists, ``int``, ``str``, ``bool``, ``Decimal``, aware UTC ``datetime``. The SOAP face turns the
dicts into spyne types, the XML-RPC face into structs. Every rule lives in the services; these
functions only translate.

``OPERATIONS`` lists them in the contract's order with their parameters, so that both faces
expose the same names, parameters and order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from billing.models import LedgerEntry
from billing.services import BillingService, LedgerService
from engine.cloud.billing_port import BillingPort
from engine.cloud.models import (
    CloudAppliance,
    CloudRequest,
    CloudUser,
    CloudUserLimits,
    Product,
)
from engine.cloud.services import CloudRequestService, CloudUserService, ProductService
from engine.errors import InvalidState, ValidationError
from engine.security import Actor
from engine.validation import check_int

#: transactions returned when ``max`` is empty, and the most one call returns
DEFAULT_TRANSACTIONS = 100
MAX_TRANSACTIONS = 1000


# -- the wire structures ----------------------------------------------------------------------
def user_struct(user: CloudUser, balance: Decimal) -> dict[str, Any]:
    return {
        "id": user.id, "name": user.name, "lastname": user.lastname,
        "forename": user.forename, "email": user.email, "street": user.street,
        "city": user.city, "country": user.country, "phone": user.phone,
        "status": user.status.value, "ccus": balance, "language": user.language,
    }


def limits_struct(limits: CloudUserLimits | None) -> dict[str, int]:
    fields = ("resource_limit", "memory_limit_mb", "disk_limit_mb", "cpu_limit",
              "network_limit")
    return {field: int(getattr(limits, field, 0) or 0) for field in fields}


def request_struct(cloud_request: CloudRequest, last_bill: dt.datetime | None
                   ) -> dict[str, Any]:
    return {
        "id": cloud_request.id, "cloud_user": cloud_request.user.name,
        "status": cloud_request.status.value, "created": cloud_request.created_at,
        "start": cloud_request.start, "stop": cloud_request.stop,
        "kernel": cloud_request.kernel.name, "image": cloud_request.image.name,
        "memory_mb": cloud_request.memory_mb, "cpus": cloud_request.cpus,
        "disk_mb": cloud_request.disk_mb, "network_cards": cloud_request.network_cards,
        "quantity": cloud_request.quantity,
        "virtualization": cloud_request.virtualization_type.name,
        "ha": bool(cloud_request.ha), "clone_on_deploy": bool(cloud_request.clone_on_deploy),
        "puppet_groups": [str(group) for group in cloud_request.puppet_groups or []],
        "appliance_ids": [appliance.id for appliance in cloud_request.appliances],
        "last_bill": last_bill,
    }


def appliance_struct(cloud_appliance: CloudAppliance) -> dict[str, Any]:
    cloud_request = cloud_appliance.request
    appliance = cloud_appliance.appliance
    resource = cloud_appliance.resource
    return {
        "id": cloud_appliance.id, "request_id": cloud_request.id,
        "name": cloud_appliance.name, "state": cloud_appliance.state.value,
        "resource_id": cloud_appliance.resource_id,
        "resource_type": resource.virtualization_type.name if resource else "",
        "internal_ip": (resource.ip or "") if resource else "",
        "ip_addresses": [address.address for address in cloud_appliance.addresses],
        "kernel": appliance.kernel.name if appliance else cloud_request.kernel.name,
        "image": appliance.image.name if appliance else cloud_request.image.name,
        "disk_mb": cloud_appliance.disk_mb, "memory_mb": cloud_request.memory_mb,
        "cpus": cloud_request.cpus,
        "load": resource.load if resource is not None else None,
        "uptime_s": resource.uptime_s if resource is not None else None,
        "comment": cloud_appliance.comment,
    }


def transaction_struct(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "time": entry.time, "cloud_user": entry.user.name,
        "request_id": entry.request_id, "amount": entry.amount,
        "balance": entry.balance_after, "reason": entry.reason, "comment": entry.comment,
    }


def product_struct(product: Product) -> dict[str, Any]:
    return {
        "id": product.id, "type": product.type.value, "sort_id": product.sort_id,
        "quantity": product.quantity, "price": product.price, "name": product.name,
        "description": product.description, "enabled": bool(product.enabled),
    }


# -- helpers ----------------------------------------------------------------------------------
def _users(request: Any) -> CloudUserService:
    return request.find_service(CloudUserService)


def _requests(request: Any) -> CloudRequestService:
    return request.find_service(CloudRequestService)


def _balance(request: Any, user: CloudUser) -> Decimal:
    return request.find_service(BillingPort).balance(user)


def _last_bill(request: Any, cloud_request: CloudRequest) -> dt.datetime | None:
    return request.find_service(LedgerService).last_charge_time(cloud_request.id)


def _details(request: Any, cloud_request: CloudRequest) -> dict[str, Any]:
    return request_struct(cloud_request, _last_bill(request, cloud_request))


def _names(rows: Iterable[Any]) -> list[str]:
    return [row.name for row in rows]


def _not_available(what: str) -> InvalidState:
    return InvalidState(f"{what} is not available yet")


# -- operations for both roles ----------------------------------------------------------------
def cloud_provision(request: Any, actor: Actor, *, cloud_user: str | None, start: Any,
                    stop: Any, kernel: str | None, image: str | None, memory_mb: Any,
                    cpus: Any, disk_mb: Any, network_cards: Any, quantity: Any,
                    virtualization: str | None, ha: bool | None,
                    puppet_groups: Iterable[str] | None) -> int:
    """Submit a cloud request; the quota and the first hour's credit are reserved at once.
    Returns the new request's id."""
    cloud_request = _requests(request).submit(
        actor=actor, cloud_user=cloud_user, start=start, stop=stop, kernel=kernel or "",
        image=image or "", memory_mb=memory_mb, cpus=cpus, disk_mb=disk_mb,
        network_cards=network_cards, quantity=quantity, virtualization=virtualization or "",
        ha=bool(ha), puppet_groups=tuple(puppet_groups or ()))
    return cloud_request.id


def cloud_deprovision(request: Any, actor: Actor, *, request_id: Any) -> str:
    """Tear a request's systems down (new, approved or active requests). Returns the
    request's new status."""
    return _requests(request).deprovision(request_id, actor=actor).status.value


def user_get_details(request: Any, actor: Actor, *, cloud_user: str | None) -> dict[str, Any]:
    """The cloud user's account details and CCU balance."""
    user = _users(request).resolve(cloud_user, actor=actor)
    return user_struct(user, _balance(request, user))


def user_set_details(request: Any, actor: Actor, *, cloud_user: str | None,
                     lastname: str | None, forename: str | None, email: str | None,
                     street: str | None, city: str | None, country: str | None,
                     phone: str | None) -> dict[str, Any]:
    """Change the cloud user's personal details; an empty value leaves the detail as it is.
    Returns the account."""
    given = {"lastname": lastname, "forename": forename, "email": email, "street": street,
             "city": city, "country": country, "phone": phone}
    # XML-RPC callers without nil support can only send "": both mean "unchanged"
    details = {field: value for field, value in given.items() if value}
    user = _users(request).set_details(cloud_user, actor=actor, **details)
    return user_struct(user, _balance(request, user))


def user_set_password(request: Any, actor: Actor, *, cloud_user: str | None,
                      new_password: str | None) -> bool:
    """Set the cloud user's password."""
    _users(request).set_password(cloud_user, new_password, actor=actor)
    return True


def user_get_ccus(request: Any, actor: Actor, *, cloud_user: str | None) -> Decimal:
    """The cloud user's CCU balance."""
    return _balance(request, _users(request).resolve(cloud_user, actor=actor))


def user_get_limits(request: Any, actor: Actor, *, cloud_user: str | None) -> dict[str, int]:
    """The cloud user's limits (0: unlimited)."""
    return limits_struct(_users(request).get_limits(cloud_user, actor=actor))


def user_get_transactions(request: Any, actor: Actor, *, cloud_user: str | None,
                          max: Any) -> list[dict[str, Any]]:
    """The cloud user's CCU movements (credits and charges), newest first."""
    user = _users(request).resolve(cloud_user, actor=actor)
    limit = DEFAULT_TRANSACTIONS if max is None else check_int(
        max, field="max", minimum=1, maximum=MAX_TRANSACTIONS)
    entries = request.find_service(LedgerService).transactions(user, limit=limit)
    return [transaction_struct(entry) for entry in entries]


def request_get_list(request: Any, actor: Actor, *, cloud_user: str | None) -> list[int]:
    """Ids of the cloud requests, newest first."""
    return _requests(request).list_ids(actor=actor, cloud_user=cloud_user or None)


def request_get_details(request: Any, actor: Actor, *, request_id: Any) -> dict[str, Any]:
    """One cloud request with the ids of its appliances."""
    return _details(request, _requests(request).get(request_id, actor=actor))


def request_extend(request: Any, actor: Actor, *, request_id: Any, stop: Any) -> dict[str, Any]:
    """Move a request's stop time (new, approved or active requests)."""
    return _details(request, _requests(request).extend(request_id, stop, actor=actor))


def appliance_get_list(request: Any, actor: Actor, *, cloud_user: str | None) -> list[int]:
    """Ids of the cloud appliances, newest first."""
    return _requests(request).appliance_ids(actor=actor, cloud_user=cloud_user or None)


def appliance_get_details(request: Any, actor: Actor, *, appliance_id: Any) -> dict[str, Any]:
    """One cloud appliance: state, resource, addresses, load."""
    return appliance_struct(_requests(request).appliance(appliance_id, actor=actor))


def appliance_command(request: Any, actor: Actor, *, appliance_id: Any,
                      command: str | None) -> str:
    """Start (resume), stop (pause: not billed, resources released, disk kept) or restart a
    cloud appliance of an active request. Returns its new state."""
    from engine.cloud.provisioning import ProvisioningService

    return request.find_service(ProvisioningService).command(
        appliance_id, command or "", actor=actor).state.value


def appliance_comment(request: Any, actor: Actor, *, appliance_id: Any,
                      comment: str | None) -> bool:
    """Set the comment of a cloud appliance."""
    _requests(request).comment_appliance(appliance_id, comment or "", actor=actor)
    return True


def appliance_resize(request: Any, actor: Actor, *, appliance_id: Any,
                     disk_mb: Any) -> dict[str, Any]:
    """Grow the disk of a cloud appliance. Not available yet: answered with
    Client.InvalidState."""
    _requests(request).appliance(appliance_id, actor=actor)
    # CloudRequestService has no disk resize operation.
    raise _not_available("resizing appliance disks")


def appliance_private(request: Any, actor: Actor, *, appliance_id: Any,
                      image_name: str | None) -> str:
    """Save a cloud appliance's disk as a private image. Not available yet: answered with
    Client.InvalidState."""
    _requests(request).appliance(appliance_id, actor=actor)
    # CloudRequestService has no private image operation.
    raise _not_available("making private images of appliances")


def kernel_get_list(request: Any, actor: Actor) -> list[str]:
    """Names of the kernels a request may use."""
    return _names(_requests(request).kernels(actor=actor))


def image_get_list(request: Any, actor: Actor) -> list[str]:
    """Names of the images a request may use (cloud users: public images and their own
    private ones)."""
    return _names(_requests(request).images(actor=actor))


def virtualization_get_list(request: Any, actor: Actor) -> list[str]:
    """Names of the virtualization types a request may use."""
    return _names(_requests(request).virtualization_types(actor=actor))


def puppet_get_list(request: Any, actor: Actor) -> list[str]:
    """Names of the puppet groups a request may use."""
    return list(_requests(request).puppet_groups(actor=actor))


def product_get_list(request: Any, actor: Actor, *, product_type: str | None) -> list[int]:
    """Ids of the products of one type (cloud users: enabled products only)."""
    products = request.find_service(ProductService)
    product_type = (product_type or "").strip()
    wanted = products.parse_type(product_type) if product_type else None
    return [product.id for product in products.list(wanted, actor=actor)]


def product_get_details(request: Any, actor: Actor, *, product_id: Any) -> dict[str, Any]:
    """One product with its hourly price in CCUs."""
    product_id = check_int(product_id, field="product_id", minimum=1)
    return product_struct(request.find_service(ProductService).get(product_id, actor=actor))


# -- admin-only operations --------------------------------------------------------------------
def user_get_list(request: Any, actor: Actor) -> list[str]:
    """Names of all cloud users."""
    return _users(request).names()


def user_create(request: Any, actor: Actor, *, cloud_user: str | None, password: str | None,
                email: str | None) -> int:
    """Create an active cloud user. Returns its id."""
    return _users(request).create(cloud_user or "", password or "", email or "",
                                  actor=actor).id


def user_remove(request: Any, actor: Actor, *, cloud_user: str | None) -> bool:
    """Remove a cloud user; refused while it has requests that are not done, denied or
    no-resources."""
    _users(request).remove(cloud_user or "", actor=actor)
    return True


def user_set_ccus(request: Any, actor: Actor, *, cloud_user: str | None, ccus: Any,
                  comment: str | None) -> Decimal:
    """Set a cloud user's balance with one credit or debit on the ledger. Returns the new
    balance."""
    user = _users(request).resolve(cloud_user, actor=actor)
    if ccus is None:
        raise ValidationError("ccus is required", field="ccus")
    return request.find_service(BillingService).set_balance(
        user, ccus, comment=comment or "", actor=actor)


def user_set_limits(request: Any, actor: Actor, *, cloud_user: str | None,
                    resource_limit: Any, memory_limit_mb: Any, disk_limit_mb: Any,
                    cpu_limit: Any, network_limit: Any) -> dict[str, int]:
    """Set a cloud user's limits."""
    given = {"resource_limit": resource_limit, "memory_limit_mb": memory_limit_mb,
             "disk_limit_mb": disk_limit_mb, "cpu_limit": cpu_limit,
             "network_limit": network_limit}
    # an empty (nil) limit keeps its current value
    limits = {field: value for field, value in given.items() if value is not None}
    return limits_struct(_users(request).set_limits(cloud_user or "", actor=actor, **limits))


def push_transaction(request: Any, actor: Actor, *, cloud_user: str | None, request_id: Any,
                     amount: Any, reason: str | None, comment: str | None) -> dict[str, Any]:
    """Change a cloud user's balance by amount (one ledger row)."""
    user = _users(request).resolve(cloud_user, actor=actor)
    if request_id is not None:
        request_id = _requests(request).get(request_id, actor=actor).id
    if amount is None:
        raise ValidationError("amount is required", field="amount")
    entry = request.find_service(BillingPort).credit(
        user, amount, reason=reason or "", comment=comment or "", actor=actor,
        request_id=request_id)
    return transaction_struct(entry)


def request_set_state(request: Any, actor: Actor, *, request_id: Any, state: str | None) -> str:
    """Approve, deny, reset or deprovision a request. Returns its new status."""
    return _requests(request).set_state(request_id, state or "", actor=actor).status.value


def request_remove(request: Any, actor: Actor, *, request_id: Any) -> bool:
    """Delete a request that is new, denied, done or no-resources and was never charged."""
    _requests(request).remove(request_id, actor=actor)
    return True


# -- the table both faces are built from ------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: its name on the wire, its kind, and the sentence that documents it.

    Kinds: ``string``, ``int``, ``decimal``, ``boolean``, ``datetime``, ``strings``.
    Every parameter is required and never nil, except a ``nillable`` one (the contract's
    ``CloudPushTransaction.request_id``), which may be nil or left out (and, over XML-RPC,
    an empty string)."""

    name: str
    kind: str
    doc: str
    nillable: bool = False


@dataclasses.dataclass(frozen=True)
class Operation:
    """One API operation: the function doing it, its parameters in the contract's order,
    and what it returns: a kind (as for parameters, plus ``ints``) or the name of a complex
    type (``CloudUser``, ``Transaction[]``, …)."""

    name: str
    function: Callable[..., Any]
    params: tuple[Param, ...]
    returns: str
    admin_only: bool = False

    @property
    def returns_doc(self) -> str:
        """The sentence that documents the operation's result (the ``…Result`` element)."""
        return RESULT_DOCS[self.name]

    @property
    def read_only(self) -> bool:
        """Whether the operation only reads (its transaction need not take SQLite's write
        lock: ``engine.db.begin_for_reading``)."""
        return self.name in READ_ONLY_OPERATIONS

    @property
    def doc(self) -> str:
        """The function's docstring, which documents the operation in the WSDL."""
        return " ".join(inspect.cleandoc(self.function.__doc__ or "").split())

    def call(self, request: Any, actor: Actor, values: Iterable[Any]) -> Any:
        """Run the operation with the parameters' values in the contract's order."""
        names = (param.name for param in self.params)
        return self.function(request, actor, **dict(zip(names, values, strict=True)))


#: the operations that change nothing (a write in one would still be correct, only slower)
READ_ONLY_OPERATIONS = frozenset({
    "CloudUserGetDetails", "CloudUserGetCCUs", "CloudUserGetLimits",
    "CloudUserGetTransactions", "CloudRequestGetList", "CloudRequestGetDetails",
    "CloudApplianceGetList", "CloudApplianceGetDetails", "KernelGetList", "ImageGetList",
    "VirtualizationGetList", "PuppetGetList", "ProductGetList", "ProductGetDetails",
    "CloudUserGetList",
})

#: what each operation answers (documents its ``…Result`` element in the WSDL)
RESULT_DOCS = {
    "CloudProvision": "The new request's id.",
    "CloudDeProvision": "The request's new status.",
    "CloudUserGetDetails": "The cloud user's account.",
    "CloudUserSetDetails": "The cloud user's account after the change.",
    "CloudUserSetPassword": "Always true (a refusal is a fault).",
    "CloudUserGetCCUs": "The CCU balance.",
    "CloudUserGetLimits": "The cloud user's limits (0: unlimited).",
    "CloudUserGetTransactions": "The CCU movements, newest first (an empty array: none).",
    "CloudRequestGetList": "Ids of the cloud requests, newest first (an empty array: none).",
    "CloudRequestGetDetails": "The cloud request.",
    "CloudRequestExtend": "The cloud request with its new stop time.",
    "CloudApplianceGetList": "Ids of the cloud appliances, newest first (an empty array: "
                             "none).",
    "CloudApplianceGetDetails": "The cloud appliance.",
    "CloudApplianceCommand": "The appliance's new state.",
    "CloudApplianceComment": "Always true (a refusal is a fault).",
    "CloudApplianceResize": "The cloud appliance with its new disk size.",
    "CloudAppliancePrivate": "The name of the new private image.",
    "KernelGetList": "Names of the kernels a request may use.",
    "ImageGetList": "Names of the images a request may use.",
    "VirtualizationGetList": "Names of the virtualization types a request may use.",
    "PuppetGetList": "Names of the puppet groups a request may use.",
    "ProductGetList": "Ids of the products, in their sort order (an empty array: none).",
    "ProductGetDetails": "The product.",
    "CloudUserGetList": "Names of all cloud users.",
    "CloudUserCreate": "The new cloud user's id.",
    "CloudUserRemove": "Always true (a refusal is a fault).",
    "CloudUserSetCCUs": "The new CCU balance.",
    "CloudUserSetLimits": "The cloud user's limits after the change (0: unlimited).",
    "CloudPushTransaction": "The ledger row written.",
    "CloudRequestSetState": "The request's new status.",
    "CloudRequestRemove": "Always true (a refusal is a fault).",
}

CLOUD_USER = Param("cloud_user", "string",
                   "Name of the cloud user (cloud-user API: your own name or empty).")
CLOUD_USER_OR_ALL = Param("cloud_user", "string",
                          "Name of the cloud user; empty: the caller (cloud-user API) or all "
                          "users (cloud-admin API).")
REQUEST_ID = Param("request_id", "int", "Id of the cloud request.")
APPLIANCE_ID = Param("appliance_id", "int", "Id of the cloud appliance.")


def _limit(name: str, what: str) -> Param:
    return Param(name, "int", f"{what} (0: unlimited; XML-RPC: nil leaves it unchanged).")


OPERATIONS: tuple[Operation, ...] = (
    Operation("CloudProvision", cloud_provision, (
        CLOUD_USER,
        Param("start", "datetime", "When the systems are wanted (UTC); now or a time in the "
                                   "past: at once (XML-RPC: nil means now)."),
        Param("stop", "datetime", "When they are torn down (UTC), one hour after start at "
                                  "the earliest."),
        Param("kernel", "string", "Kernel name (see KernelGetList)."),
        Param("image", "string", "Image name (see ImageGetList)."),
        Param("memory_mb", "int", "Memory per system in MB."),
        Param("cpus", "int", "CPUs per system."),
        Param("disk_mb", "int", "Disk size per system in MB."),
        Param("network_cards", "int", "Network cards per system."),
        Param("quantity", "int", "How many systems."),
        Param("virtualization", "string", "Virtualization type (see VirtualizationGetList)."),
        Param("ha", "boolean", "High availability: restart on another resource on failure."),
        Param("puppet_groups", "strings", "Puppet groups to apply to every system (see "
                                          "PuppetGetList); an empty array: none."),
    ), "int"),
    Operation("CloudDeProvision", cloud_deprovision, (REQUEST_ID,), "string"),
    Operation("CloudUserGetDetails", user_get_details, (CLOUD_USER,), "CloudUser"),
    Operation("CloudUserSetDetails", user_set_details, (
        CLOUD_USER,
        Param("lastname", "string", "Last name; empty: unchanged."),
        Param("forename", "string", "Forename; empty: unchanged."),
        Param("email", "string", "E-mail address; empty: unchanged."),
        Param("street", "string", "Street; empty: unchanged."),
        Param("city", "string", "City; empty: unchanged."),
        Param("country", "string", "Country; empty: unchanged."),
        Param("phone", "string", "Phone number; empty: unchanged."),
    ), "CloudUser"),
    Operation("CloudUserSetPassword", user_set_password, (
        CLOUD_USER, Param("new_password", "string", "The new password (8 characters at "
                                                    "least)."),
    ), "boolean"),
    Operation("CloudUserGetCCUs", user_get_ccus, (CLOUD_USER,), "decimal"),
    Operation("CloudUserGetLimits", user_get_limits, (CLOUD_USER,), "CloudUserLimits"),
    Operation("CloudUserGetTransactions", user_get_transactions, (
        CLOUD_USER, Param("max", "int", f"How many movements, 1 to {MAX_TRANSACTIONS} "
                                        f"(XML-RPC: nil means {DEFAULT_TRANSACTIONS})."),
    ), "Transaction[]"),
    Operation("CloudRequestGetList", request_get_list, (CLOUD_USER_OR_ALL,), "ints"),
    Operation("CloudRequestGetDetails", request_get_details, (REQUEST_ID,), "CloudRequest"),
    Operation("CloudRequestExtend", request_extend, (
        REQUEST_ID, Param("stop", "datetime", "The new stop time (UTC)."),
    ), "CloudRequest"),
    Operation("CloudApplianceGetList", appliance_get_list, (CLOUD_USER_OR_ALL,), "ints"),
    Operation("CloudApplianceGetDetails", appliance_get_details, (APPLIANCE_ID,),
              "CloudAppliance"),
    Operation("CloudApplianceCommand", appliance_command, (
        APPLIANCE_ID, Param("command", "string", "start, stop or restart."),
    ), "string"),
    Operation("CloudApplianceComment", appliance_comment, (
        APPLIANCE_ID, Param("comment", "string", "The comment (255 characters at most)."),
    ), "boolean"),
    Operation("CloudApplianceResize", appliance_resize, (
        APPLIANCE_ID, Param("disk_mb", "int", "The new disk size in MB."),
    ), "CloudAppliance"),
    Operation("CloudAppliancePrivate", appliance_private, (
        APPLIANCE_ID, Param("image_name", "string", "Name of the new private image."),
    ), "string"),
    Operation("KernelGetList", kernel_get_list, (), "strings"),
    Operation("ImageGetList", image_get_list, (), "strings"),
    Operation("VirtualizationGetList", virtualization_get_list, (), "strings"),
    Operation("PuppetGetList", puppet_get_list, (), "strings"),
    Operation("ProductGetList", product_get_list, (
        Param("product_type", "string", "cpu, disk, ha, kernel, memory, network, puppet, "
                                        "quantity or resource; empty: all types."),
    ), "ints"),
    Operation("ProductGetDetails", product_get_details, (
        Param("product_id", "int", "Id of the product."),
    ), "Product"),
    # -- admin only --
    Operation("CloudUserGetList", user_get_list, (), "strings", admin_only=True),
    Operation("CloudUserCreate", user_create, (
        Param("cloud_user", "string", "Name of the new cloud user."),
        Param("password", "string", "Its password (8 characters at least)."),
        Param("email", "string", "Its e-mail address."),
    ), "int", admin_only=True),
    Operation("CloudUserRemove", user_remove, (CLOUD_USER,), "boolean", admin_only=True),
    Operation("CloudUserSetCCUs", user_set_ccus, (
        CLOUD_USER, Param("ccus", "decimal", "The new balance in CCUs."),
        Param("comment", "string", "Why (written to the ledger)."),
    ), "decimal", admin_only=True),
    Operation("CloudUserSetLimits", user_set_limits, (
        CLOUD_USER, _limit("resource_limit", "Most systems at a time"),
        _limit("memory_limit_mb", "Most memory in MB"),
        _limit("disk_limit_mb", "Most disk in MB"), _limit("cpu_limit", "Most CPUs"),
        _limit("network_limit", "Most network cards"),
    ), "CloudUserLimits", admin_only=True),
    Operation("CloudPushTransaction", push_transaction, (
        CLOUD_USER, Param("request_id", "int", "The request concerned; nil or left out "
                                               "(XML-RPC: nil or an empty string): none.",
                          nillable=True),
        Param("amount", "decimal", "CCUs: > 0 credits, < 0 charges."),
        Param("reason", "string", "Short reason (50 characters at most)."),
        Param("comment", "string", "Comment."),
    ), "Transaction",
        admin_only=True),
    Operation("CloudRequestSetState", request_set_state, (
        REQUEST_ID, Param("state", "string", "approved, denied, new or deprovision "
                                             "(approve and deny are accepted too)."),
    ), "string",
        admin_only=True),
    Operation("CloudRequestRemove", request_remove, (REQUEST_ID,), "boolean", admin_only=True),
)

OPERATIONS_BY_NAME = {operation.name: operation for operation in OPERATIONS}


def operations_for(role: str) -> tuple[Operation, ...]:
    """The operations of one endpoint: ``"cloudadmin"`` gets all, ``"clouduser"`` all but
    the admin-only ones."""
    return tuple(op for op in OPERATIONS if role == "cloudadmin" or not op.admin_only)
