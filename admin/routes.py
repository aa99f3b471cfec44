"""Every route of the console (the app factory mounts them under ``/admin``)."""

from __future__ import annotations

from typing import Any

ID = r"{id:\d+}"


def includeme(config: Any) -> None:
    config.add_route("admin.login", "/login")
    config.add_route("admin.logout", "/logout")
    config.add_route("admin.language", "/language")
    config.add_route("admin.dashboard", "/")

    config.add_route("admin.cloud.requests", "/cloud/requests")
    config.add_route("admin.cloud.requests.detail", f"/cloud/requests/{ID}")
    config.add_route("admin.cloud.requests.approve", f"/cloud/requests/{ID}/approve")
    config.add_route("admin.cloud.requests.deny", f"/cloud/requests/{ID}/deny")
    config.add_route("admin.cloud.requests.deprovision", f"/cloud/requests/{ID}/deprovision")
    config.add_route("admin.cloud.requests.retry", f"/cloud/requests/{ID}/retry")

    config.add_route("admin.cloud.users", "/cloud/users")
    config.add_route("admin.cloud.users.create", "/cloud/users/new")
    config.add_route("admin.cloud.users.detail", f"/cloud/users/{ID}")
    config.add_route("admin.cloud.users.status", f"/cloud/users/{ID}/status")
    config.add_route("admin.cloud.users.credit", f"/cloud/users/{ID}/credit")
    config.add_route("admin.cloud.users.balance", f"/cloud/users/{ID}/balance")
    config.add_route("admin.cloud.users.limits", f"/cloud/users/{ID}/limits")
    config.add_route("admin.cloud.users.remove", f"/cloud/users/{ID}/remove")

    config.add_route("admin.resources", "/resources")
    config.add_route("admin.resources.detail", f"/resources/{ID}")
    config.add_route("admin.resources.kernel", f"/resources/{ID}/kernel")
    config.add_route("admin.resources.reboot", f"/resources/{ID}/reboot")
    config.add_route("admin.resources.accept", f"/resources/{ID}/accept")
    config.add_route("admin.resources.forget", f"/resources/{ID}/forget")
    config.add_route("admin.resources.remove", f"/resources/{ID}/remove")
    config.add_route("admin.appliances", "/appliances")

    config.add_route("admin.hosts", "/hosts")
    config.add_route("admin.hosts.kvm.add", "/hosts/kvm")
    config.add_route("admin.hosts.kvm", f"/hosts/kvm/{ID}")
    config.add_route("admin.hosts.kvm.hostkey", f"/hosts/kvm/{ID}/host-key")
    config.add_route("admin.hosts.storage.add", "/hosts/storage")
    config.add_route("admin.hosts.storage", f"/hosts/storage/{ID}")
    config.add_route("admin.hosts.storage.hostkey", f"/hosts/storage/{ID}/host-key")

    config.add_route("admin.calls", "/calls")
    config.add_route("admin.calls.retry", f"/calls/{ID}/retry")
    config.add_route("admin.commands", "/commands")
    config.add_route("admin.commands.detail", f"/commands/{ID}")
    config.add_route("admin.commands.rerun", f"/commands/{ID}/rerun")

    config.add_route("admin.events", "/events")
    config.add_route("admin.events.acknowledge", f"/events/{ID}/acknowledge")

    config.add_route("admin.cloud.config", "/cloud/config")
    config.add_route("admin.cloud.products", "/cloud/products")
    config.add_route("admin.cloud.products.add", "/cloud/products/add")
    config.add_route("admin.cloud.products.enabled", f"/cloud/products/{ID}/enabled")
    config.add_route("admin.cloud.products.price", f"/cloud/products/{ID}/price")
    config.add_route("admin.cloud.products.remove", f"/cloud/products/{ID}/remove")
