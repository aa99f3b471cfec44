"""The XML-RPC face: the same operations, names and parameter order as SOAP, through
pyramid_rpc, with HTTP Basic credentials.

Complex types are structs with the contract's member names, decimals travel as strings,
times as ``dateTime.iso8601`` in UTC, and nil (``<nil/>``) stands for an empty value.
Faults carry the contract's numeric codes (1..7, 100).
"""

from __future__ import annotations

import datetime as dt
import re
import xmlrpc.client
from decimal import Decimal, InvalidOperation
from typing import Any

from pyramid_rpc.xmlrpc import EndpointPredicate

from engine.errors import ValidationError
from engine.permissions import Permissions
from soap.credentials import authenticate
from soap.errors import FAULT_CODES, describe, retryable
from soap.i18n import INT_MAX, INT_MIN, int_range_message
from soap.operations import Operation, Param, operations_for
from soap.xmlsafety import refuse_dtd

#: XML-RPC leaves dateTime.iso8601 without a zone; these are the shapes clients send
_TIME_FORMATS = ("%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%dT%H%M%S")


class SafeEndpointPredicate(EndpointPredicate):
    """pyramid_rpc's endpoint predicate, refusing a body that is not well-formed or has a
    DTD before pyramid_rpc parses it (with expat, which would expand entities)."""

    def __call__(self, info: Any, request: Any) -> bool:
        if self.val:
            try:
                refuse_dtd(request.body)
            except ValidationError as error:
                raise xmlrpc.client.Fault(error.xmlrpc_code, error.message) from None
        return super().__call__(info, request)


class XmlRpcOperation:
    """The view of one operation at one endpoint."""

    def __init__(self, operation: Operation, role: str) -> None:
        self.operation, self.role = operation, role

    def __call__(self, request: Any) -> Any:
        try:
            request.api_actor = authenticate(request, self.role,
                                             read_only=self.operation.read_only)
            values = self._arguments(request.rpc_args)
            result = self.operation.call(request, request.api_actor, values)
            request.dbsession.flush()  # constraint errors surface here, as faults
        except Exception as error:
            request.tm.doom()
            if retryable(request, error):
                raise  # pyramid_retry runs the call again
            code, text = describe(error, face="XML-RPC")
            raise xmlrpc.client.Fault(FAULT_CODES[code], text) from None
        return to_xmlrpc(result)

    def _arguments(self, arguments: tuple[Any, ...]) -> list[Any]:
        params = self.operation.params
        if len(arguments) != len(params):
            names = ", ".join(param.name for param in params) or "no parameters"
            raise ValidationError(f"{self.operation.name} takes {len(params)} parameter(s) "
                                  f"({names}), {len(arguments)} given")
        return [from_xmlrpc(param, value) for param, value in zip(params, arguments,
                                                                    strict=True)]


def from_xmlrpc(param: Param, value: Any) -> Any:
    """One argument as the operation expects it (nil stays None; so does an empty string
    for a nillable parameter: PHP's xmlrpc extension sends a PHP null as ``<string/>``)."""
    if value is None or (param.nillable and isinstance(value, str) and not value.strip()):
        return None
    converter = _CONVERTERS[param.kind]
    try:
        return converter(value)
    except (TypeError, ValueError, InvalidOperation):
        if param.kind == "int":
            raise ValidationError(int_range_message(param.name), field=param.name) from None
        raise ValidationError(f"{param.name} must be {_EXPECTED[param.kind]}",
                              field=param.name) from None


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(value)
    return value


#: XML-RPC's <int> is 32 bits; the contract's ints are too
_INT_RANGE = range(INT_MIN, INT_MAX + 1)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(value)
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip()):
        raise ValueError(value)
    number = int(value)
    if number not in _INT_RANGE:
        raise ValueError(value)
    return number


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    return Decimal(str(value).strip())


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise TypeError(value)


def _time(value: Any) -> dt.datetime | str:
    if isinstance(value, str):
        return value  # ISO 8601 text: the service reads it and names the parameter if not
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, xmlrpc.client.DateTime):
        moment = _parse_time(value.value)
    else:
        raise TypeError(value)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _parse_time(text: str) -> dt.datetime:
    for time_format in _TIME_FORMATS:
        try:
            return dt.datetime.strptime(text, time_format)  # noqa: DTZ007 (UTC by contract)
        except ValueError:
            continue
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(value)
    return list(value)


_CONVERTERS = {"string": _string, "int": _int, "decimal": _decimal, "boolean": _boolean,
               "datetime": _time, "strings": _strings}
_EXPECTED = {"string": "a string",
             "decimal": "a decimal number (a string such as \"12.50\")",
             "boolean": "a boolean", "datetime": "a dateTime.iso8601 in UTC",
             "strings": "an array of strings"}


def to_xmlrpc(value: Any) -> Any:
    """An operation's result as XML-RPC values: decimals as strings, times as UTC."""
    if isinstance(value, dict):
        return {key: to_xmlrpc(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_xmlrpc(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return xmlrpc.client.DateTime(value.astimezone(dt.UTC))
    return value


class AdminOnlyOperation(XmlRpcOperation):
    """An admin-only operation called at the cloud-user endpoint: the caller is
    authenticated, then refused with PermissionDenied (as the contract's wrong-role case)."""

    def __call__(self, request: Any) -> Any:
        try:
            authenticate(request, self.role)
        except Exception as error:
            code, text = describe(error, face="XML-RPC")
            raise xmlrpc.client.Fault(FAULT_CODES[code], text) from None
        raise xmlrpc.client.Fault(FAULT_CODES["Client.PermissionDenied"],
                                  f"{self.operation.name} is for admins: call it at "
                                  "/xmlrpc/cloudadmin with an admin account")


def add_methods(config: Any, endpoint: str, role: str) -> None:
    """Register every operation of ``role`` at the XML-RPC ``endpoint`` (and, at the
    cloud-user endpoint, the admin-only names, which answer PermissionDenied)."""
    offered = operations_for(role)
    for operation in operations_for("cloudadmin"):
        view = XmlRpcOperation if operation in offered else AdminOnlyOperation
        config.add_xmlrpc_method(view(operation, role), endpoint=endpoint,
                                 method=operation.name, mapper=None,
                                 permission=Permissions.PUBLIC, require_csrf=False)
