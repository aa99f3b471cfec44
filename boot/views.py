"""Views of the boot face: parse, call one engine service, answer ``key=value`` lines (what
busybox ``sh`` reads with ``sed``)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from pyramid.httpexceptions import (
    HTTPBadRequest,
    HTTPConflict,
    HTTPException,
    HTTPForbidden,
    HTTPNotFound,
    HTTPServiceUnavailable,
    HTTPUnauthorized,
)
from pyramid.response import FileResponse, Response
from pyramid.view import view_config

from engine.boot.initrd import agent_script
from engine.boot.kernels import KernelFileService
from engine.boot.services import AgentService, BootService, MachineFacts, Report
from engine.errors import (
    AuthenticationFailed,
    InvalidState,
    NotFound,
    PermissionDenied,
    QrmError,
    ValidationError,
)
from engine.permissions import Permissions

TEXT = "text/plain"
#: the machine endpoints: public (each authenticates itself), no CSRF token
MACHINE = {"permission": Permissions.PUBLIC, "require_csrf": False}
_STATUS: tuple[tuple[type[QrmError], type[HTTPException]], ...] = (
    (AuthenticationFailed, HTTPUnauthorized), (PermissionDenied, HTTPForbidden),
    (ValidationError, HTTPBadRequest), (NotFound, HTTPNotFound), (InvalidState, HTTPConflict),
)


def lines(values: Mapping[str, Any]) -> str:
    """``key=value`` lines (values never span lines)."""
    return "".join(f"{key}={str(value).replace(chr(10), ' ')}\n"
                   for key, value in values.items())


def machine_errors(view: Callable[[Any], Response]) -> Callable[[Any], Response]:
    """Raise a refused operation as a 4xx whose body names the error and the field (raising
    rolls the transaction back: nothing changed)."""

    @functools.wraps(view)
    def wrapper(request: Any) -> Response:
        try:
            return view(request)
        except QrmError as error:
            status = next((http for kind, http in _STATUS if isinstance(error, kind)),
                          HTTPServiceUnavailable)
            body = lines({"error": error.message, "field": error.field or ""})
            response = status(body=body, content_type=TEXT, charset="utf-8")
            if status is HTTPUnauthorized:
                response.headers["WWW-Authenticate"] = 'Bearer realm="qrm-boot"'
            raise response from None

    return wrapper


def text(body: str, **kw: Any) -> Response:
    return Response(body, content_type=TEXT, charset="utf-8", **kw)


def client_ip(request: Any) -> str | None:
    """The address the agent says it has (behind NAT the peer's is the router's)."""
    for value in (request.POST.get("ip"), request.client_addr):
        try:
            return str(ipaddress.ip_address(str(value or "").split("/")[0]))
        except ValueError:
            continue
    return None


def bearer_token(request: Any) -> str | None:
    scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


@view_config(route_name="boot.ipxe", request_method="GET", **MACHINE)
@machine_errors
def ipxe(request: Any) -> Response:
    """The iPXE script of the machine with ``?mac=``."""
    script = request.find_service(BootService).ipxe_script(request.GET.get("mac"))
    return text(script, cache_control="no-store")


@view_config(route_name="boot.kernel_file", request_method=("GET", "HEAD"), **MACHINE)
@machine_errors
def kernel_file(request: Any) -> Response:
    """A kernel's ``vmlinuz`` or ``initrd`` (Content-Length, byte ranges)."""
    path, _kernel = request.find_service(KernelFileService).file(
        request.matchdict["name"], request.matchdict["file"])
    response = FileResponse(str(path), request=request, content_type="application/octet-stream")
    response.conditional_response = True  # Range / If-Range / 206 / 416 by WebOb
    return response


@view_config(route_name="boot.agent", request_method="GET", **MACHINE)
def agent(_request: Any) -> Response:
    """The resource agent (a POSIX sh script, runs under busybox)."""
    return text(agent_script(), cache_control="no-store")


@view_config(route_name="boot.register", request_method="POST", **MACHINE)
@machine_errors
def register(request: Any) -> Response:
    """Registration (MACs, CPUs, memory, NICs, host name) or, with ``handover=``, the
    exchange of a boot script's hand-over code: answers the resource id and a new token."""
    agents = request.find_service(AgentService)
    if request.POST.get("handover"):
        registration = agents.exchange(request.POST.get("mac"), request.POST["handover"],
                                       ip=client_ip(request))
    else:
        registration = agents.register(MachineFacts.parse(request.POST), ip=client_ip(request))
    resource = registration.resource
    return text(lines({"id": resource.id, "token": registration.token,
                       "interval": agents.settings.report_interval,
                       "accepted": int(resource.accepted)}), cache_control="no-store")


@view_config(route_name="boot.handover", request_method="POST", **MACHINE)
@machine_errors
def handover(request: Any) -> Response:
    """The hand-over code of a pxelinux-booted machine the engine rebooted (``mac=``)."""
    code = request.find_service(AgentService).handover_code(
        request.POST.get("mac"), request.find_service(BootService))
    return text(lines({"handover": code}), cache_control="no-store")


@view_config(route_name="boot.report", request_method="POST", **MACHINE)
@machine_errors
def report(request: Any) -> Response:
    """A report (token in ``Authorization: Bearer``): load, memory, uptime, state, and the
    outcome of a command; the reply sets the interval and may carry the next command."""
    agents = request.find_service(AgentService)
    resource = agents.authenticate(request.POST.get("id"), bearer_token(request))
    reply = agents.report(resource, Report.parse(request.POST), ip=client_ip(request))
    return text(lines(reply), cache_control="no-store")
