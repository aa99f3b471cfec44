"""Plugin discovery (entry points), persisted states and life-cycle actions."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pluggy
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import DriverError, InvalidState, NotFound
from engine.events.services import EventService
from engine.i18n import _
from engine.plugins import hookspecs
from engine.plugins.models import Plugin, PluginState
from engine.security import Actor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "qrm.plugins"


def discover_plugins() -> dict[str, ModuleType]:
    """Load every plugin module registered in the ``qrm.plugins`` entry-point group."""
    plugins: dict[str, ModuleType] = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        plugins[entry_point.name] = entry_point.load()
    return dict(sorted(plugins.items()))


#: model modules of other packages (billing), registered like plugins
MODELS_ENTRY_POINT_GROUP = "qrm.models"


def load_plugin_models() -> None:
    """Import every plugin (its models come with it) and every module of the ``qrm.models``
    entry-point group (billing's), so that the metadata is complete."""
    discover_plugins()
    for entry_point in importlib.metadata.entry_points(group=MODELS_ENTRY_POINT_GROUP):
        entry_point.load()


class PluginRegistry:
    """The process-wide pluggy manager with every discovered plugin registered.

    Which plugins a hook call reaches is decided per call from the states in the database,
    so a state changed by another process takes effect at once.
    """

    def __init__(self, plugins: dict[str, Any] | None = None) -> None:
        self.pm = pluggy.PluginManager("qrm")
        self.pm.add_hookspecs(hookspecs)
        self.plugins = discover_plugins() if plugins is None else dict(plugins)
        for name, module in self.plugins.items():
            self.pm.register(module, name=name)
        # A misspelt hook implementation fails at start-up, not silently at run time.
        self.pm.check_pending()

    @property
    def all_hooks(self) -> Any:
        return self.pm.hook

    def relay(self, names: Iterable[str]) -> Any:
        """A hook relay that reaches only the plugins named."""
        return _SubsetRelay(self, frozenset(names))

    def info(self, name: str) -> dict[str, str]:
        module = self.plugins[name]
        impl = getattr(module, "qrm_plugin_info", None)
        info = impl() if impl else {}
        return {"name": name, "type": info.get("type", "misc"),
                "description": info.get("description", "")}


class _SubsetRelay:
    def __init__(self, registry: PluginRegistry, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def __getattr__(self, hook_name: str) -> Any:
        excluded = [module for name, module in self._registry.plugins.items()
                    if name not in self._names]
        return self._registry.pm.subset_hook_caller(hook_name, remove_plugins=excluded)


class PluginService:
    """Plugin states and actions, plus the hook relays and drivers for one request."""

    def __init__(self, db: Session, registry: PluginRegistry, request: Any,
                 events: EventService) -> None:
        self.db, self.registry, self.request, self.events = db, registry, request, events
        self._states: dict[str, PluginState] | None = None

    @classmethod
    def create_service(cls, _context: Any, request: Any) -> PluginService:
        return cls(request.dbsession, request.registry["plugins"], request,
                   request.find_service(EventService))

    # -- states -----------------------------------------------------------------------------
    def states(self) -> dict[str, PluginState]:
        if self._states is None or self._states.keys() != self.registry.plugins.keys():
            stored = {p.name: p.state for p in self.db.scalars(select(Plugin))}
            self._states = {name: stored.get(name, PluginState.DISABLED)
                            for name in self.registry.plugins}
        return self._states

    def names_in(self, *states: PluginState) -> list[str]:
        return [name for name, state in self.states().items() if state in states]

    @property
    def hook(self) -> Any:
        """Hooks reaching enabled (and started) plugins."""
        return self.registry.relay(self.names_in(PluginState.ENABLED, PluginState.STARTED))

    @property
    def started_hook(self) -> Any:
        """Hooks reaching started plugins only (their services run)."""
        return self.registry.relay(self.names_in(PluginState.STARTED))

    def list(self) -> list[dict[str, Any]]:
        return [dict(self.registry.info(name), state=state.value)
                for name, state in self.states().items()]

    # -- actions ----------------------------------------------------------------------------
    _ACTIONS = {
        # action: (states it is allowed from, resulting state, hook action)
        "enable": ((PluginState.DISABLED,), PluginState.ENABLED, "init"),
        "start": ((PluginState.ENABLED,), PluginState.STARTED, "start"),
        "stop": ((PluginState.STARTED,), PluginState.ENABLED, "stop"),
        "disable": ((PluginState.ENABLED,), PluginState.DISABLED, "uninstall"),
    }

    def act(self, name: str, action: str, *, actor: Actor) -> PluginState:
        """Run ``enable``/``start``/``stop``/``disable`` on plugin ``name``."""
        if name not in self.registry.plugins:
            raise NotFound(_("no plugin named ${name}", mapping={"name": repr(name)}),
                           field="name")
        if action not in self._ACTIONS:
            raise InvalidState(_("unknown plugin action ${action}",
                                 mapping={"action": repr(action)}), field="action")
        allowed_from, new_state, hook_action = self._ACTIONS[action]
        current = self.states()[name]
        if current not in allowed_from:
            raise InvalidState(
                _("plugin ${name} is ${state}; ${action} needs it ${allowed}",
                  mapping={"name": name, "state": current.value, "action": action,
                           "allowed": " or ".join(state.value for state in allowed_from)}),
                field="action",
            )
        self.registry.relay([name]).qrm_plugin_action(request=self.request, name=name,
                                                      action=hook_action)
        row = self.db.get(Plugin, name)
        if row is None:
            row = Plugin(name=name)
            self.db.add(row)
        row.state = new_state
        self._states = None
        self.events.log(source="plugins", name=f"plugin.{action}", actor=actor,
                        message=f"plugin {name}: {current.value} -> {new_state.value}",
                        object_type="plugin")
        self.db.flush()
        return new_state

    # -- drivers ----------------------------------------------------------------------------
    def storage_driver(self, storage_type: str) -> Any:
        for drivers in self.started_hook.qrm_storage_drivers(request=self.request):
            for driver in drivers:
                if driver.storage_type == storage_type:
                    return driver
        raise DriverError(_("no started plugin provides storage type ${type}",
                            mapping={"type": repr(storage_type)}))

    def virtualization_driver(self, vm_type: str) -> Any:
        for drivers in self.started_hook.qrm_virtualization_drivers(request=self.request):
            for driver in drivers:
                if driver.vm_type == vm_type:
                    return driver
        raise DriverError(_("no started plugin provides virtualization type ${type}",
                            mapping={"type": repr(vm_type)}))
