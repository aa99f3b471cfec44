"""Import every model module of the engine, so the mappers are complete.

Plugins' and billing's models arrive through ``engine.plugins.manager.load_plugin_models``
(entry points ``qrm.plugins`` and ``qrm.models``), so the engine never imports them by name.
"""

from engine.accounts import models as accounts_models
from engine.cloud import models as cloud_models
from engine.commands import models as commands_models
from engine.datacenter import models as datacenter_models
from engine.db import Base, metadata
from engine.events import models as events_models
from engine.plugins import models as plugins_models
from engine.scheduler import models as scheduler_models

__all__ = [
    "Base", "accounts_models", "cloud_models", "commands_models",
    "datacenter_models", "events_models", "metadata", "plugins_models", "scheduler_models",
]
