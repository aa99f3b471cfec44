"""Products of the cloud selector: per type, with add, enable/disable, price, remove."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPBadRequest, HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, form_errors, matched_id, parse_number, refuse
from engine.cloud.models import ProductType
from engine.cloud.services import ProductService
from engine.errors import QrmError
from engine.permissions import Permissions

ADD_FIELDS = ("product_type", "quantity", "price", "name", "description")


def _page(request: Any, **forms: Any) -> dict[str, Any]:
    service = request.find_service(ProductService)
    return {"product_types": [(product_type, service.list(product_type))
                              for product_type in ProductType],
            "forms": forms}


def _back(request: Any) -> HTTPSeeOther:
    return HTTPSeeOther(location=request.route_path("admin.cloud.products"))


@view_config(route_name="admin.cloud.products", request_method="GET",
             renderer=template("products"), permission=Permissions.ADMIN_VIEW)
def product_list(request: Any) -> dict[str, Any]:
    return _page(request)


@view_config(route_name="admin.cloud.products.add", request_method="POST",
             renderer=template("products"), permission=Permissions.ADMIN_MANAGE)
def add_product(request: Any) -> Any:
    values: dict[str, Any] = {field: request.POST.get(field, "") for field in ADD_FIELDS}
    values["enabled"] = "enabled" in request.POST
    service = request.find_service(ProductService)
    try:
        service.add(service.parse_type(values["product_type"]), values["quantity"],
                    parse_number(request, values["price"]), values["name"],
                    description=values["description"], enabled=values["enabled"],
                    actor=acting_admin(request))
    except QrmError as error:
        return _page(request, add={"values": values,
                                   "errors": form_errors(request, error, ADD_FIELDS)})
    flash(request, translate(request, _("Product added.")))
    return _back(request)


@view_config(route_name="admin.cloud.products.enabled", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def set_enabled(request: Any) -> HTTPSeeOther:
    enabled = request.POST.get("enabled")
    if enabled not in ("true", "false"):
        raise HTTPBadRequest()
    request.find_service(ProductService).set_enabled(matched_id(request), enabled == "true",
                                                     actor=acting_admin(request))
    flash(request, translate(request, _("Product enabled.") if enabled == "true"
                             else _("Product disabled.")))
    return _back(request)


@view_config(route_name="admin.cloud.products.price", request_method="POST",
             renderer=template("products"), permission=Permissions.ADMIN_MANAGE)
def set_price(request: Any) -> Any:
    product_id = matched_id(request)
    price = request.POST.get("price", "")
    try:
        request.find_service(ProductService).set_price(
            product_id, parse_number(request, price), actor=acting_admin(request))
    except QrmError as error:
        request.response.status = 400
        text = next(iter(refuse(request, error).values()))
        return _page(request, price={"product_id": product_id, "value": price, "error": text})
    flash(request, translate(request, _("Price changed.")))
    return _back(request)


@view_config(route_name="admin.cloud.products.remove", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def remove_product(request: Any) -> HTTPSeeOther:
    request.find_service(ProductService).remove(matched_id(request), actor=acting_admin(request))
    flash(request, translate(request, _("Product removed.")))
    return _back(request)
