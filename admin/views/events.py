"""The event log: newest first, errors only on request, acknowledging errors."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.view import view_config

from admin.i18n import _, translate
from admin.rendering import flash, template
from admin.views import acting_admin, matched_id, redirect
from admin.views.paging import ListAddress, choice, fetch, list_values, page_size
from engine.events.models import EventLevel
from engine.events.services import ERROR_LEVELS, EventService
from engine.permissions import Permissions


@view_config(route_name="admin.events", request_method="GET", renderer=template("events"),
             permission=Permissions.ADMIN_VIEW)
def event_list(request: Any) -> dict[str, Any]:
    """Newest first, a page at a time, filtered by level and by source (each with its
    count, from one grouped query); ``errors=1`` lists the error levels."""
    events = request.find_service(EventService)
    tally = events.tally()
    sources = sorted({source for _level, source, _count in tally})
    level, size = choice(request, "level", EventLevel), page_size(request)
    source = choice(request, "source", sources)
    errors_only = request.GET.get("errors") == "1"
    page = fetch(request, lambda **keys: events.page(
        level=level, source=source, errors_only=errors_only, **keys), size)
    address = ListAddress(request, "admin.events", {
        "errors": "1" if errors_only else None, "level": level, "source": source,
        "size": size})
    levels: dict[EventLevel, int] = {}
    by_source: dict[str, int] = {}
    for row_level, row_source, count in tally:
        if source is None or row_source == source:
            levels[row_level] = levels.get(row_level, 0) + count
        if (level is None or row_level is level) and (
                not errors_only or row_level in ERROR_LEVELS):
            by_source[row_source] = by_source.get(row_source, 0) + count
    return {**list_values(request, page, address, size), "events": page.rows,
            "errors_only": errors_only, "level": level, "source": source,
            "levels": list(EventLevel), "sources": sources,
            "counts": {"levels": levels, "sources": by_source,
                       "errors": sum(levels.get(lv, 0) for lv in ERROR_LEVELS)},
            "open_errors": events.count_open_errors()}


@view_config(route_name="admin.events.acknowledge", request_method="POST",
             permission=Permissions.ADMIN_MANAGE)
def acknowledge(request: Any) -> HTTPSeeOther:
    event_id = matched_id(request)
    event = request.find_service(EventService).acknowledge(event_id, actor=acting_admin(request))
    if event is None:
        flash(request, translate(request, _("There is no event ${id}."), id=event_id), error=True)
    else:
        flash(request, translate(request, _("Event ${id} acknowledged."), id=event_id))
    return redirect(request, "admin.events")
