"""Permissions named by every view, SOAP operation and service check."""

from __future__ import annotations

import enum


class Permissions(enum.StrEnum):
    #: public pages (log-in form, registration, health)
    PUBLIC = "public"
    #: a logged-in, active cloud user using the portal and the cloud-user API
    PORTAL_USE = "portal.use"
    #: reading anything in the admin console
    ADMIN_VIEW = "admin.view"
    #: changing anything in the admin console or through the cloud-admin API
    ADMIN_MANAGE = "admin.manage"


class Role(enum.StrEnum):
    ADMIN = "admin"
    CLOUD_USER = "clouduser"


ROLE_PERMISSIONS: dict[Role, frozenset[Permissions]] = {
    Role.ADMIN: frozenset({Permissions.PUBLIC, Permissions.ADMIN_VIEW, Permissions.ADMIN_MANAGE}),
    Role.CLOUD_USER: frozenset({Permissions.PUBLIC, Permissions.PORTAL_USE}),
}
