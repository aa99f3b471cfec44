"""The cloud."""

from typing import Any


def includeme(config: Any) -> None:
    """Wired in engine/cloud/services.py (see below)."""
