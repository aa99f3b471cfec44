"""The request path every client walks: an admin creates a cloud user and gives it credit,
the user provisions, the admin approves, the engine provisions and charges, the user
deprovisions, the engine tears down.

A client is given as two callables, ``admin(operation, *args)`` and
``user_for(name, password)(operation, *args)``, returning plain Python values (lists, dicts
with the contract's member names, ``Decimal`` for decimals); the scenario does the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tests.interop.conftest import PASSWORD, unique_name

Call = Callable[..., Any]

CREDIT = Decimal(100)


def provision_arguments(stop: dt.datetime, *, quantity: int = 1) -> tuple[Any, ...]:
    """CloudProvision's parameters in the contract's order, for the caller itself (every
    one given: the WSDL makes them all required; a start of now means at once)."""
    return ("", in_hours(0), stop, "default", "debian-12", 1024, 1, 2000, 1, quantity,
            "sim-vm", False, [])


def in_hours(hours: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=hours)


def walk_request_path(admin: Call, user_for: Callable[[str, str], Call],
                      run_jobs: Callable[[], None], *, prefix: str) -> dict[str, Any]:
    """Walk the whole path, asserting every step; returns what a test may check further."""
    name = unique_name(prefix)
    user_id = admin("CloudUserCreate", name, PASSWORD, f"{name}@example.com")
    assert isinstance(user_id, int)
    assert Decimal(admin("CloudUserSetCCUs", name, str(CREDIT), "interop credit")) == CREDIT
    user = user_for(name, PASSWORD)
    assert "default" in user("KernelGetList")
    assert "debian-12" in user("ImageGetList")

    request_id = user("CloudProvision", *provision_arguments(in_hours(3)))
    assert user("CloudRequestGetDetails", request_id)["status"] == "new"
    assert admin("CloudRequestSetState", request_id, "approved") == "approved"
    run_jobs()

    details = user("CloudRequestGetDetails", request_id)
    assert details["status"] == "active"
    assert details["cloud_user"] == name
    assert len(details["appliance_ids"]) == 1
    assert details["last_bill"] is not None
    appliance = user("CloudApplianceGetDetails", details["appliance_ids"][0])
    assert appliance["state"] == "active"
    assert appliance["request_id"] == request_id
    assert user("CloudApplianceGetList", "") == details["appliance_ids"]

    charge = user("CloudUserGetTransactions", "", 10)[0]
    assert charge["request_id"] == request_id
    assert Decimal(charge["amount"]) < 0
    assert Decimal(charge["balance"]) == CREDIT + Decimal(charge["amount"])
    assert Decimal(user("CloudUserGetCCUs", "")) == Decimal(charge["balance"])

    assert user("CloudDeProvision", request_id) == "deprovision"
    run_jobs()
    assert user("CloudRequestGetDetails", request_id)["status"] == "done"
    assert user("CloudRequestGetList", "") == [request_id]
    return {"name": name, "user_id": user_id, "request_id": request_id, "user": user}
