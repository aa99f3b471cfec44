"""Agent tokens and hand-over codes: random, shown once, stored only as SHA-256.

Both are 256-bit random strings, so a plain SHA-256 is enough to store them (no password
stretching is needed for secrets nobody chose); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_secret() -> str:
    """A fresh token or code: URL- and kernel-command-line-safe."""
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def matches(secret: str | None, stored_digest: str | None) -> bool:
    """Whether ``secret`` is the one whose digest is stored (False when either is missing)."""
    if not secret or not stored_digest:
        return False
    return hmac.compare_digest(digest(secret), stored_digest)
