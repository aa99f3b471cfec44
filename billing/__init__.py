"""Billing."""

from typing import Any


def includeme(config: Any) -> None:
    """Wired below."""
