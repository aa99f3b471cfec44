"""The plugin contract: every hook a plugin may implement.

A plugin is a module (or object) registered through the ``qrm.plugins`` entry-point group.
Hooks are called with keyword arguments only. "enabled" hooks reach plugins whose state is
enabled or started; "started" hooks reach started plugins only (their services run). Unless a
hook says otherwise it runs *inside* the caller's transaction, so raising aborts the caller's
work, and it is not first-result (every plugin's answer is collected in a list).
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("qrm")
hookimpl = pluggy.HookimplMarker("qrm")


@hookspec
def qrm_plugin_info() -> dict[str, str]:
    """Describe the plugin: ``{"name", "type", "description"}``. Called for every discovered
    plugin, whatever its state, outside any transaction."""


@hookspec
def qrm_plugin_action(request: Any, name: str, action: str) -> None:
    """Run a life-cycle action of plugin ``name``: ``init`` (on enable: register its
    virtualization and deployment types), ``start``, ``stop``, ``uninstall`` (on disable:
    de-register). Called only on the plugin concerned, inside the transaction that persists the
    new state; raising refuses the action."""


@hookspec
def qrm_configure(config: Any) -> None:
    """Add the plugin's own routes, admin pages, and jobs to the Pyramid ``config`` at start-up.
    Called for every discovered plugin; views must check the plugin's state themselves."""


@hookspec
def qrm_appliance_event(request: Any, appliance: Any, action: str) -> None:
    """An appliance was added, removed, started, stopped or restarted (``action``: ``add``,
    ``remove``, ``start``, ``stop``, ``restart``). Enabled plugins, after
    the engine's own work for that action, inside its transaction."""


@hookspec
def qrm_resource_event(request: Any, resource: Any, action: str) -> None:
    """A resource was added or removed, or is being rebooted (``start``) or halted (``stop``).
    Enabled plugins, inside the transaction."""


@hookspec(firstresult=True)
def qrm_resource_command(request: Any, resource: Any, command: str) -> bool | None:
    """Perform ``reboot`` or ``halt`` of a machine from outside (hypervisor, power switch).
    ``resource`` is an ``engine.plugins.drivers.MachineRef`` (plain values: id, MAC, name,
    kind), not a row: like a driver call, the plugin changes the world outside the database and
    must not touch ``request.dbsession``; it may raise ``DriverError``/``HostUnreachable``.
    First-result: return True if handled; None lets the engine use the VM's driver or queue
    the command on the resource itself. Started plugins."""


@hookspec
def qrm_kernel_added(request: Any, kernel: Any) -> None:
    """A kernel was added; a plugin may place extra boot files next to it. Enabled plugins."""


@hookspec
def qrm_resource_assigned(request: Any, resource: Any, kernel: Any) -> None:
    """``resource`` will boot ``kernel`` next (its boot configuration was just rewritten).
    Enabled plugins, inside the transaction."""


@hookspec
def qrm_storage_drivers(request: Any) -> list[Any]:
    """Return the plugin's ``StorageDriver`` objects bound to ``request``. Started plugins."""


@hookspec
def qrm_virtualization_drivers(request: Any) -> list[Any]:
    """Return the plugin's ``VirtualizationDriver`` objects bound to ``request``. Started
    plugins."""


@hookspec
def qrm_monitor(request: Any) -> None:
    """Periodic work of a plugin (the ``plugins.monitor`` job, every 5 s). Started plugins,
    in the job's own transaction."""


@hookspec(firstresult=True)
def qrm_billing_charge(request: Any, cloud_appliance: Any, period_start: Any,
                       components: list[dict]) -> Any:
    """Replace the price of one appliance-hour. First-result: return a ``Decimal`` amount of
    CCUs to charge (0 for free), or None to use the product prices in ``components``. Enabled
    plugins, inside the billing transaction."""


@hookspec
def qrm_resource_failed(request: Any, resource: Any) -> None:
    """``resource`` stopped reporting and was marked ``error`` (called once per failure, not on
    every check). Enabled plugins, inside the health job's transaction."""


@hookspec
def qrm_boot_files(request: Any) -> list[dict]:
    """Files the plugin offers to booting resources: ``[{"name", "path"}]``. Enabled plugins."""


@hookspec
def qrm_demo(request: Any, actor: Any) -> None:
    """Build the plugin's part of the demo datacenter (``qrm demo``). Started plugins, inside
    the demo's transaction; must be idempotent (``qrm demo`` runs at every ``make run``)."""
