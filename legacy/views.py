"""The legacy endpoints: openQRM's WSDLs at their old paths, and the two service URLs.

A call runs in the request's transaction (pyramid_tm). Its checks, in openQRM's order:
the envelope and the comma string (count, then each field's type) are answered with a
SOAP fault naming what is wrong; then the caller (argon2 hashes through the accounts'
services, disabled accounts refused, admin mode only for admin accounts and only at the
admin endpoint), then the operation, whose services check ownership and every rule. A
refusal after the string was read is answered as openQRM answered it (nothing, or ``1``);
every refusal is written to the event log with who asked and why, in a transaction of its
own, so that it outlives the refused call's rollback.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from pyramid.authentication import extract_http_basic_credentials
from pyramid.httpexceptions import HTTPMethodNotAllowed
from pyramid.response import Response
from pyramid_retry import is_error_retryable, mark_error_retryable

from engine.accounts.services import AccountService
from engine.cloud.services import CloudUserService
from engine.db import begin_for_reading, is_deferred_write_conflict
from engine.errors import AuthenticationFailed, QrmError
from engine.events.models import Event, EventLevel
from engine.i18n import _
from engine.security import Actor
from legacy.fields import Credentials, FieldError, credentials, parse, split
from legacy.operations import (
    ADMIN_ENDPOINT,
    USER_ENDPOINT,
    Operation,
    operations_for,
)
from legacy.wire import (
    MAX_BODY,
    NAMESPACE,
    EnvelopeError,
    content_type,
    fault_document,
    parse_call,
    result_document,
)
from legacy.wsdl import build_wsdl

log = logging.getLogger("qrm.legacy")

#: route name -> (endpoint, path)
SERVICE_ROUTES = {
    "legacy.cloudadmin": (ADMIN_ENDPOINT, "/openqrm/base/plugins/cloud/soap/cloudadmin-soap.php"),
    "legacy.clouduser": (USER_ENDPOINT, "/cloud-portal/user/soap/clouduser-soap.php"),
}
#: route name -> (endpoint, path) of the published WSDL copies (openQRM spells them .wdsl)
WSDL_ROUTES = {
    "legacy.wsdl.cloudadmin": (ADMIN_ENDPOINT, "/openqrm/boot-service/cloudadmin.wdsl"),
    "legacy.wsdl.clouduser": (USER_ENDPOINT, "/openqrm/boot-service/clouduser.wdsl"),
}
SERVICE_ROUTE_OF = {endpoint: name for name, (endpoint, _path) in SERVICE_ROUTES.items()}

#: the operations that only read (their transaction need not take SQLite's write lock)
READ_ONLY = frozenset({
    "CloudUserGetDetails", "CloudUserGetCCUs", "CloudUserGetLimits",
    "CloudUserGetTransactions", "CloudRequestGetList", "CloudRequestGetDetails",
    "CloudApplianceGetList", "CloudApplianceGetDetails", "KernelGetList", "ImageGetList",
    "VirtualizationGetList", "PuppetGetList", "ProductGetList", "ProductGetDetails",
    "CloudUserGetList",
})
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


class Refused(Exception):
    """The caller may not run the operation: answered with the operation's failure value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- the event log ----------------------------------------------------------------------------
def record_refusal(request: Any, *, who: str, operation: str, reason: str,
                   level: EventLevel = EventLevel.WARNING) -> None:
    """Write ``legacy.refused`` once the call's transaction has ended (committed or rolled
    back), in a transaction of its own."""
    message = f"legacy API {operation} refused: {reason}"[:2000]
    who = who[:120]

    def write(*_args: Any) -> None:
        session = request.registry["dbsession_factory"]()
        try:
            session.add(Event(source="legacy", name="legacy.refused", actor=who, level=level,
                              message=message))
            session.commit()
        finally:
            session.close()

    log.warning("%s (%s)", message, who)
    transaction = request.tm.get()
    transaction.addAfterCommitHook(write)
    transaction.addAfterAbortHook(write)


def claimed(creds: Credentials | None) -> str:
    """Who the call says it is, for the event log."""
    if creds is None or not creds.user:
        return "anonymous"
    role = {"admin": "admin", "user": "clouduser"}.get(creds.mode, "anonymous")
    return f"{role}:{creds.user}"


# -- who is calling ---------------------------------------------------------------------------
def authenticate(request: Any, endpoint: str, creds: Credentials, operation: Operation
                 ) -> Actor:
    """The actor of the call, or Refused."""
    users = request.find_service(CloudUserService)
    if creds.mode == "user":
        if operation.admin_only:
            raise Refused(f"{operation.name} is for admin mode only")
        try:
            user = users.authenticate(creds.user, creds.password)
        except AuthenticationFailed as error:
            raise Refused(error.message) from None
        return Actor.cloud_user(user.name, user.id)
    if endpoint != ADMIN_ENDPOINT:
        # openQRM took admin mode at the user endpoint too (W-3)
        raise Refused("admin mode is not accepted at the cloud-user endpoint; use the "
                      "cloud-admin endpoint")
    try:
        admin = request.find_service(AccountService).authenticate_admin(creds.user,
                                                                        creds.password)
    except AuthenticationFailed as error:
        try:
            users.authenticate(creds.user, creds.password)
        except AuthenticationFailed:
            raise Refused(error.message) from None
        raise Refused(f"{creds.user} is a cloud user, not an admin: admin mode is for "
                      "admin accounts only") from None
    return Actor.admin(admin.name, admin.id)


def check_http_login(request: Any, endpoint: str, creds: Credentials) -> str | None:
    """openQRM's clients also send their login as HTTP Basic (its web server asked for
    it). Credentials equal to the string's need no second check; others must be an
    account of the endpoint's kind. Returns why they are refused, or None."""
    basic = extract_http_basic_credentials(request)
    if basic is None or (basic.username == creds.user and basic.password == creds.password):
        return None
    try:
        if endpoint == ADMIN_ENDPOINT:
            request.find_service(AccountService).authenticate_admin(basic.username,
                                                                    basic.password)
        else:
            request.find_service(CloudUserService).authenticate(basic.username,
                                                                basic.password)
    except AuthenticationFailed as error:
        return f"HTTP login {basic.username!r}: {error.message}"
    return None


# -- answers ----------------------------------------------------------------------------------
def _answer(version: str, body: bytes, status: int = 200) -> Response:
    return Response(body=body, status=status, content_type=content_type(version),
                    charset="utf-8")


def _fault(request: Any, version: str, code: str, message: str) -> Response:
    request.tm.doom()
    # SOAP 1.2 over HTTP: a Sender fault is 400, the others 500; SOAP 1.1 faults are 500
    status = 400 if version == "1.2" and code == "Client" else 500
    return _answer(version, fault_document(version, code, message), status)


def _retryable(request: Any, error: BaseException) -> bool:
    if request.tm.get().isRetryableError(error) or is_deferred_write_conflict(request, error):
        mark_error_retryable(error)
    return is_error_retryable(request, error)


def _version_of(request: Any) -> str:
    return "1.2" if "soap+xml" in (request.content_type or "") else "1.1"


# -- views ------------------------------------------------------------------------------------
def wsdl_location(request: Any, endpoint: str) -> str:
    """The service URL the WSDL names: below ``qrm.public_url`` when set; otherwise this
    request's host if it is a loopback one, else the address the server listens at (a
    forged Host header never becomes the address)."""
    route = SERVICE_ROUTE_OF[endpoint]
    public_url = (request.registry.settings.get("qrm.public_url") or "").strip()
    if public_url:
        return request.route_url(route, _app_url=public_url.rstrip("/"))
    host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") \
        else request.host.split("]")[0] + "]"
    if host in _LOOPBACK or host.startswith("127."):
        return request.route_url(route)
    environ = request.environ
    app_url = f"{request.scheme}://{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
    return request.route_url(route, _app_url=app_url)


def wsdl_view(request: Any) -> Response:
    endpoint = WSDL_ROUTES[request.matched_route.name][0]
    return Response(body=build_wsdl(endpoint, wsdl_location(request, endpoint)),
                    content_type="text/xml", charset="utf-8")


def service_view(request: Any) -> Response:
    endpoint = SERVICE_ROUTES[request.matched_route.name][0]
    if request.method == "GET" and any(key.lower() == "wsdl" for key in request.GET):
        return Response(body=build_wsdl(endpoint, wsdl_location(request, endpoint)),
                        content_type="text/xml", charset="utf-8")
    if request.method != "POST":
        return HTTPMethodNotAllowed("POST a SOAP envelope here; GET ?wsdl for the WSDL",
                                    headers={"Allow": "GET, POST"})
    version = _version_of(request)
    try:
        if (request.content_length or 0) > MAX_BODY:
            raise EnvelopeError(_("the request is larger than ${size} bytes",
                                  mapping={"size": MAX_BODY}))
        call = parse_call(request.body)
    except EnvelopeError as error:
        record_refusal(request, who="anonymous", operation="(envelope)", reason=error.message)
        return _fault(request, version, error.code, error.message)
    version = call.version
    operations = {op.name: op for op in operations_for(endpoint)}
    operation = operations.get(call.operation)
    fields = split(call.symbol)
    creds = credentials(fields)
    who = claimed(creds)
    if operation is None or call.namespace != NAMESPACE:
        message = str((_("no operation ${name} at this endpoint", mapping={
            "name": call.operation}) if operation is None else _(
            "${name} belongs to the namespace ${namespace}, not ${given}",
            mapping={"name": call.operation, "namespace": NAMESPACE,
                     "given": call.namespace or "(none)"})).interpolate())
        record_refusal(request, who=who, operation=call.operation, reason=message)
        return _fault(request, version, "Client", message)
    try:
        values = parse(operation.name, fields, operation.fields)
    except FieldError as error:
        record_refusal(request, who=who, operation=operation.name, reason=error.message)
        return _fault(request, version, "Client", error.message)
    assert creds is not None  # (parse checked the count)
    return _run(request, endpoint, version, operation, creds=creds, values=values, who=who)


def _run(request: Any, endpoint: str, version: str, operation: Operation, *,
         creds: Credentials, values: list[Any], who: str) -> Response:
    if operation.name in READ_ONLY:
        begin_for_reading(request)
    try:
        refusal = check_http_login(request, endpoint, creds)
        if refusal is not None:
            record_refusal(request, who=who, operation=operation.name, reason=refusal)
            request.tm.doom()
            return Response(status=401, body=b"", headers={
                "WWW-Authenticate": 'Basic realm="openQRM"'})
        actor = authenticate(request, endpoint, creds, operation)
        who = actor.label
        result = operation.call(request, actor, values)
        request.dbsession.flush()
    except Refused as refused:
        return _refuse(request, version, operation, who, reason=refused.reason,
                       failure=operation.failure)
    except QrmError as error:
        if _retryable(request, error):
            raise
        reason = f"{error.field}: {error.message}" if error.field and \
            error.field not in error.message else error.message
        return _refuse(request, version, operation, who, reason=reason,
                       failure=operation.failure_for(error))
    except Exception as error:
        if _retryable(request, error):
            raise  # pyramid_retry runs the call again
        reference = secrets.token_hex(6)
        log.error("legacy API %s failed, reference %s", operation.name, reference,
                  exc_info=(type(error), error, error.__traceback__))
        record_refusal(request, who=who, operation=operation.name, level=EventLevel.ERROR,
                       reason=f"internal error, reference {reference}")
        return _fault(request, version, "Server", str(_(
            "internal error, reference ${reference}: the operators find the details in the "
            "server log under this reference", mapping={"reference": reference}
        ).interpolate()))
    return _answer(version, result_document(version, operation.name, result))


def _refuse(request: Any, version: str, operation: Operation, who: str, *, reason: str,
            failure: Any) -> Response:
    # openQRM answered a refusal with nothing (or 1) and an event-log line: so does this,
    # and the call changes nothing
    request.tm.doom()
    record_refusal(request, who=who, operation=operation.name, reason=reason)
    return _answer(version, result_document(version, operation.name, failure))
