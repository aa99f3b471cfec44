"""The cloud configuration: every key of ``CloudConfigService`` on one form."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from admin.config_texts import describe
from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, form_errors
from engine.cloud.config import CONFIG_KEYS, CloudConfigService, render_value
from engine.errors import QrmError
from engine.permissions import Permissions

KEY_NAMES = tuple(key.name for key in CONFIG_KEYS)


def _page(request: Any, values: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    keys = [{"key": key, "description": describe(request, key),
             "is_bool": key.type is bool, "is_int": key.type is int} for key in CONFIG_KEYS]
    return {"keys": keys, "values": values, "errors": errors}


def _posted(request: Any) -> dict[str, str]:
    # an unticked checkbox is not sent at all: for a boolean key, absent means false
    return {key.name: ("true" if key.name in request.POST else "false") if key.type is bool
            else request.POST.get(key.name, "") for key in CONFIG_KEYS}


@view_config(route_name="admin.cloud.config", request_method="GET",
             renderer=template("config"), permission=Permissions.ADMIN_VIEW)
def config_form(request: Any) -> dict[str, Any]:
    current = request.find_service(CloudConfigService).all()
    return _page(request, {name: render_value(value) for name, value in current.items()}, {})



@view_config(route_name="admin.cloud.config", request_method="POST",
             renderer=template("config"), permission=Permissions.ADMIN_MANAGE)
def save_config(request: Any) -> Any:
    values = _posted(request)
    service = request.find_service(CloudConfigService)
    # only what the admin changed goes to the service: a stored value that no longer passes
    # validation must not block saving an unrelated key
    current = {name: render_value(value) for name, value in service.all().items()}
    changed = {name: value for name, value in values.items() if value != current[name]}
    try:
        service.update(changed, actor=acting_admin(request))
    except QrmError as error:
        return _page(request, values, form_errors(request, error, KEY_NAMES))
    flash(request, translate(request, _("Configuration saved.")))
    return HTTPSeeOther(location=request.route_path("admin.cloud.config"))
