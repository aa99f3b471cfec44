"""The wire types of the SOAP API, shared by both endpoints in ``urn:qrmcloud:types``.

Members and their order follow SOAP-API.md. Decimals are ``xs:decimal`` (``Decimal`` in
Python), times ``xs:dateTime`` in UTC. Every member is always sent (``minOccurs`` 1) and
never nil, except those the contract makes nillable: ``last_bill``, ``resource_id``,
``load``, ``uptime_s`` and ``request_id``, which are always sent too and nil when empty (so
that generated clients get non-optional fields where the contract has them, and a plain
nullable one, not an "absent or nil" wrapper, for the nillable ones).

Operation parameters and results follow the same rule (``spyne_type``): required, not
nillable, except the parameters the operation table marks ``nillable``.
"""

from __future__ import annotations

from typing import Any

from spyne import (
    Array,
    Boolean,
    ComplexModel,
    DateTime,
    Decimal,
    Integer32,
    Unicode,
)

TYPES_NS = "urn:qrmcloud:types"


#: members the contract allows to be nil
NILLABLE = {("CloudRequest", "last_bill"), ("CloudAppliance", "resource_id"),
            ("CloudAppliance", "load"), ("CloudAppliance", "uptime_s"),
            ("Transaction", "request_id")}


def _members(type_name: str, members: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """``minOccurs=1``, and not nillable unless ``NILLABLE`` names the member."""
    return [(name, kind.customize(min_occurs=1,
                                  nillable=(type_name, name) in NILLABLE))
            for name, kind in members]


def _array(item: Any, doc: str) -> Any:
    array = Array(item.customize(min_occurs=0, nillable=False), doc=doc)
    # an explicit namespace: otherwise the first Application that meets the array claims it
    array.__namespace__ = TYPES_NS
    return array


#: what the array types say of themselves; each use documents what it holds (the WSDL's
#: array types get these texts: ``soap.endpoint`` sets them)
ARRAY_DOCS = {
    "stringArray": "A list of strings, one string element each; empty: none.",
    "intArray": "A list of whole numbers, one int element each; empty: none.",
    "TransactionArray": "A list of CCU movements, one Transaction element each; empty: none.",
}

StringArray = _array(Unicode, ARRAY_DOCS["stringArray"])
IntArray = _array(Integer32, ARRAY_DOCS["intArray"])


class CloudUser(ComplexModel):
    __namespace__ = TYPES_NS
    _type_info = _members("CloudUser", [
        ("id", Integer32), ("name", Unicode), ("lastname", Unicode), ("forename", Unicode),
        ("email", Unicode), ("street", Unicode), ("city", Unicode), ("country", Unicode),
        ("phone", Unicode), ("status", Unicode(doc="active, disabled or pending")),
        ("ccus", Decimal(doc="CCU balance")), ("language", Unicode),
    ])


class CloudUserLimits(ComplexModel):
    __namespace__ = TYPES_NS
    _type_info = _members("CloudUserLimits", [
        ("resource_limit", Integer32), ("memory_limit_mb", Integer32),
        ("disk_limit_mb", Integer32), ("cpu_limit", Integer32), ("network_limit", Integer32),
    ])


class CloudRequest(ComplexModel):
    __namespace__ = TYPES_NS
    _type_info = _members("CloudRequest", [
        ("id", Integer32), ("cloud_user", Unicode),
        ("status", Unicode(doc="new, approved, active, denied, deprovision, done or "
                               "no-resources")),
        ("created", DateTime), ("start", DateTime), ("stop", DateTime), ("kernel", Unicode),
        ("image", Unicode), ("memory_mb", Integer32), ("cpus", Integer32),
        ("disk_mb", Integer32), ("network_cards", Integer32), ("quantity", Integer32),
        ("virtualization", Unicode), ("ha", Boolean), ("clone_on_deploy", Boolean),
        ("puppet_groups", StringArray.customize(doc="the puppet groups applied to every "
                                                    "system")),
        ("appliance_ids", IntArray.customize(doc="ids of the request's cloud appliances")),
        ("last_bill", DateTime(doc="time of the last hourly charge; nil: never charged")),
    ])


class CloudAppliance(ComplexModel):
    __namespace__ = TYPES_NS
    _type_info = _members("CloudAppliance", [
        ("id", Integer32), ("request_id", Integer32), ("name", Unicode),
        ("state", Unicode(doc="provisioning, active, paused, error, deprovisioning or "
                              "removed")),
        ("resource_id", Integer32), ("resource_type", Unicode), ("internal_ip", Unicode),
        ("ip_addresses", StringArray.customize(doc="the appliance's IP addresses")),
        ("kernel", Unicode), ("image", Unicode),
        ("disk_mb", Integer32), ("memory_mb", Integer32), ("cpus", Integer32),
        ("load", Decimal), ("uptime_s", Integer32), ("comment", Unicode),
    ])


class Transaction(ComplexModel):
    __namespace__ = TYPES_NS
    _type_info = _members("Transaction", [
        ("id", Integer32), ("time", DateTime), ("cloud_user", Unicode),
        ("request_id", Integer32),
        ("amount", Decimal(doc="CCUs: > 0 a credit, < 0 a charge")),
        ("balance", Decimal(doc="the balance after this movement")),
        ("reason", Unicode), ("comment", Unicode),
    ])


TransactionArray = _array(Transaction, ARRAY_DOCS["TransactionArray"])


class Product(ComplexModel):
    __namespace__ = TYPES_NS
    _type_info = _members("Product", [
        ("id", Integer32),
        ("type", Unicode(doc="cpu, disk, ha, kernel, memory, network, puppet, quantity or "
                             "resource")),
        ("sort_id", Integer32), ("quantity", Unicode(doc="the value offered")),
        ("price", Decimal(doc="CCUs per hour")), ("name", Unicode), ("description", Unicode),
        ("enabled", Boolean),
    ])


#: parameter and return kinds of ``soap.operations`` -> spyne types
KINDS: dict[str, Any] = {
    "string": Unicode, "int": Integer32, "decimal": Decimal, "boolean": Boolean,
    "datetime": DateTime, "strings": StringArray, "ints": IntArray,
}

#: complex return types by the name ``soap.operations`` uses
COMPLEX: dict[str, Any] = {
    "CloudUser": CloudUser, "CloudUserLimits": CloudUserLimits, "CloudRequest": CloudRequest,
    "CloudAppliance": CloudAppliance, "Transaction": Transaction,
    "Transaction[]": TransactionArray, "Product": Product,
}


def spyne_type(kind: str, doc: str = "", *, nillable: bool = False) -> Any:
    """The spyne type of a parameter or result of ``kind``, documented with ``doc``:
    required and not nillable, or, if ``nillable``, nillable and optional."""
    base = KINDS.get(kind) or COMPLEX[kind]
    occurs = {"min_occurs": 0, "nillable": True} if nillable else {"min_occurs": 1,
                                                                   "nillable": False}
    return base.customize(doc=doc, **occurs) if doc else base.customize(**occurs)


def to_wire(kind: str, value: Any) -> Any:
    """Turn an operation's plain return value into what spyne serializes for ``kind``."""
    if kind == "Transaction[]":
        return [Transaction(**item) for item in value]
    if kind in COMPLEX:
        return COMPLEX[kind](**value)
    return value
