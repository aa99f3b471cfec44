"""Resources: the list (filters by state and type with their counts, keyset pages), one
resource in detail (NICs, capacity, last report, load history, events), and the admin's
actions on it: assign a kernel, reboot, accept a waiting machine, forget its agent's
registration, remove. Reboot, forget and remove ask for a confirmation first."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPBadRequest, HTTPSeeOther
from pyramid.view import view_config

from admin.charts import load_chart
from admin.i18n import _, error_text, translate
from admin.rendering import flash, template
from admin.views import acting_admin, form_errors, matched_id
from engine.boot.services import AgentService
from engine.datacenter.models import Resource, ResourceState, VirtualizationKind
from engine.datacenter.services import DatacenterService, nic_macs
from engine.db import utcnow
from engine.errors import QrmError, ValidationError
from engine.events.services import EventService
from engine.permissions import Permissions

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
KERNEL_FIELDS = ("kernel",)
#: what a confirmation page asks, and what is said once it is done
ACTIONS = {
    "reboot": (_("Reboot resource ${id}?"), _("Resource ${id} is rebooting.")),
    "forget": (_("Forget the registration of resource ${id}?"),
               _("The registration of resource ${id} is forgotten: its machine may register "
                 "again.")),
    "remove": (_("Remove resource ${id}?"), _("Resource ${id} removed.")),
}


def _choice(value: str | None, choices: dict[str, Any]) -> Any:
    """The filter named by ``value`` (None: no filter); anything else is a bad address."""
    if not value:
        return None
    if value not in choices:
        raise HTTPBadRequest()
    return choices[value]


def _page_size(request: Any) -> int:
    raw = request.GET.get("size") or str(DEFAULT_PAGE_SIZE)
    if not raw.isdigit() or int(raw) not in PAGE_SIZES:
        raise HTTPBadRequest()
    return int(raw)


def _counts(tally: list[tuple], *, state: Any, vtype: Any, waiting: bool) -> dict[str, Any]:
    """Each filter's count under the other filters chosen, from the one grouped query."""
    counts: dict[str, Any] = {"states": {}, "types": {}, "waiting": 0, "all": 0}
    for row_state, type_id, accepted, count in tally:
        fits_state = state is None or row_state is state
        fits_type = vtype is None or type_id == vtype.id
        fits_waiting = not waiting or not accepted
        if fits_type and fits_waiting:
            counts["states"][row_state] = counts["states"].get(row_state, 0) + count
        if fits_state and fits_waiting:
            counts["types"][type_id] = counts["types"].get(type_id, 0) + count
        if fits_state and fits_type:
            counts["waiting"] += 0 if accepted else count
            counts["all"] += count if fits_waiting else 0
    return counts


def _list_filters(request: Any, vtypes: list[Any]) -> dict[str, Any]:
    """The list's filters from the address (a bad one is a bad address: 400)."""
    return {"state": _choice(request.GET.get("state"), {s.value: s for s in ResourceState}),
            "vtype": _choice(request.GET.get("type"), {t.name: t for t in vtypes}),
            "waiting": request.GET.get("waiting") == "1", "size": _page_size(request)}


def _list_url(request: Any, chosen: dict[str, Any]) -> Any:
    """Addresses of this list with some filters changed (None drops one), first page."""
    kept = {"state": chosen["state"] and chosen["state"].value,
            "type": chosen["vtype"] and chosen["vtype"].name,
            "waiting": "1" if chosen["waiting"] else None,
            "size": chosen["size"] if chosen["size"] != DEFAULT_PAGE_SIZE else None}

    def url(**changes: Any) -> str:
        query = {key: value for key, value in {**kept, **changes}.items() if value}
        return request.route_path("admin.resources", _query=query)

    return url, {key: value for key, value in kept.items() if value}


@view_config(route_name="admin.resources", request_method="GET", renderer=template("resources"),
             permission=Permissions.ADMIN_VIEW)
def resource_list(request: Any) -> dict[str, Any]:
    service = request.find_service(DatacenterService)
    vtypes = service.virtualization_types()
    chosen = _list_filters(request, vtypes)
    after, before = request.GET.get("after"), request.GET.get("before")
    try:
        page = service.resource_page(state=chosen["state"], virtualization_type=chosen["vtype"],
                                     waiting=chosen["waiting"], after=after, before=before,
                                     size=chosen["size"])
    except ValidationError:
        raise HTTPBadRequest() from None
    list_url, filters = _list_url(request, chosen)
    counts = _counts(service.resource_tally(), state=chosen["state"], vtype=chosen["vtype"],
                     waiting=chosen["waiting"])
    return {**chosen, "page": page, "states": list(ResourceState), "vtypes": vtypes,
            "filters": filters, "list_url": list_url, "page_sizes": PAGE_SIZES,
            "paged": bool(after or before), "counts": counts}


def _resource(request: Any) -> Resource:
    return request.find_service(DatacenterService).resource(matched_id(request))


def _macs(resource: Resource) -> list[str]:
    """Its network cards' MACs: as registered, a VM's derived ones, else the boot MAC."""
    if resource.macs:
        return list(resource.macs)
    if resource.kind is VirtualizationKind.VM:
        return list(nic_macs(resource.mac, resource.nics))
    return [resource.mac]


def _detail(request: Any, resource: Resource, *, kernel_form: dict | None = None
            ) -> dict[str, Any]:
    service = request.find_service(DatacenterService)
    vms = service.vms_on(resource) if resource.kind is VirtualizationKind.HOST else []
    return {
        "resource": resource, "appliance": service.appliance_on(resource),
        "macs": _macs(resource), "kernels": service.kernels(), "vms": vms,
        "vm_cpus": sum(vm.cpus for vm in vms), "vm_memory_mb": sum(vm.memory_mb for vm in vms),
        "chart": load_chart(resource.load_history or []),
        "events": request.find_service(EventService).recent(
            limit=25, object_type="resource", object_id=resource.id),
        "kernel_form": kernel_form or {"values": {}, "errors": {}}, "now": utcnow(),
    }


@view_config(route_name="admin.resources.detail", request_method="GET",
             renderer=template("resource_detail"), permission=Permissions.ADMIN_VIEW)
def resource_detail(request: Any) -> dict[str, Any]:
    return _detail(request, _resource(request))


@view_config(route_name="admin.resources.kernel", request_method="POST",
             renderer=template("resource_detail"), permission=Permissions.ADMIN_MANAGE)
def assign_kernel(request: Any) -> Any:
    resource, name = _resource(request), request.POST.get("kernel")
    service = request.find_service(DatacenterService)
    try:
        if name is None:
            raise ValidationError(_("Choose a kernel."), field="kernel")
        kernel = service.kernel(name) if name else None
        service.assign_kernel(resource, kernel, actor=acting_admin(request))
    except QrmError as error:
        errors = form_errors(request, error, KERNEL_FIELDS)
        return _detail(request, resource, kernel_form={"values": {"kernel": name or ""},
                                                       "errors": errors})
    flash(request, translate(request, _("Resource ${id} boots kernel ${kernel} from its next "
                                        "boot on."), id=resource.id,
                             kernel=kernel.name if kernel else translate(request, _(
                                 "the default"))))
    return HTTPSeeOther(location=request.route_path("admin.resources.detail", id=resource.id))


@view_config(route_name="admin.resources.accept", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def accept(request: Any) -> HTTPSeeOther:
    resource = _resource(request)
    request.find_service(AgentService).accept(resource, actor=acting_admin(request))
    flash(request, translate(request, _("Resource ${id} accepted: its next report makes it "
                                        "idle."), id=resource.id))
    return HTTPSeeOther(location=request.route_path("admin.resources.detail", id=resource.id))


def _confirm_page(request: Any, action: str) -> dict[str, Any]:
    resource = _resource(request)
    return {"resource": resource, "action": action,
            "question": translate(request, ACTIONS[action][0], id=resource.id),
            "appliance": request.find_service(DatacenterService).appliance_on(resource)}


def _carry_out(request: Any, action: str, work: Any, *, done: Any = None) -> HTTPSeeOther:
    """Do a confirmed action; a refusal is flashed on the resource's page, nothing done."""
    resource = _resource(request)
    resource_id = resource.id
    done = done or ACTIONS[action][1]
    try:
        work(resource, acting_admin(request))
    except QrmError as error:
        request.tm.doom()
        flash(request, error_text(request, error), error=True)
        return HTTPSeeOther(location=request.route_path("admin.resources.detail",
                                                        id=resource_id))
    flash(request, translate(request, done, id=resource_id))
    target = ("admin.resources", {}) if action == "remove" else (
        "admin.resources.detail", {"id": resource_id})
    return HTTPSeeOther(location=request.route_path(target[0], **target[1]))


@view_config(route_name="admin.resources.reboot", request_method="GET",
             renderer=template("resource_confirm"), permission=Permissions.ADMIN_MANAGE)
@view_config(route_name="admin.resources.forget", request_method="GET",
             renderer=template("resource_confirm"), permission=Permissions.ADMIN_MANAGE)
@view_config(route_name="admin.resources.remove", request_method="GET",
             renderer=template("resource_confirm"), permission=Permissions.ADMIN_MANAGE)
def confirm(request: Any) -> dict[str, Any]:
    return _confirm_page(request, request.matched_route.name.rsplit(".", 1)[1])


@view_config(route_name="admin.resources.reboot", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def reboot(request: Any) -> HTTPSeeOther:
    return _carry_out(request, "reboot", lambda resource, actor: request.find_service(
        DatacenterService).reboot(resource, actor=actor))


@view_config(route_name="admin.resources.forget", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def forget(request: Any) -> HTTPSeeOther:
    return _carry_out(request, "forget", lambda resource, actor: request.find_service(
        AgentService).forget_registration(resource, actor=actor))


@view_config(route_name="admin.resources.remove", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def remove(request: Any) -> HTTPSeeOther:
    # a VM goes once its host has destroyed it (after the commit)
    on_host = _resource(request).host_id is not None
    return _carry_out(request, "remove", lambda resource, actor: request.find_service(
        DatacenterService).remove(resource, actor=actor),
        done=_("Resource ${id} is being removed from its host.") if on_host else None)
