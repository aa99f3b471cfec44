"""The simulated datacenter plugin (``sim``): hosts, VMs and volumes kept in the database."""

from plugins.sim import models  # noqa: F401  (registers the plugin's tables)
