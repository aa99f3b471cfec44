"""Recently verified credentials, so that an API client calling many times a minute does not
pay an argon2 verification (tens of milliseconds and 64 MiB) per call.

What is kept is an HMAC, keyed with the server's key, of the role, the name, the password and
the account's *stored hash*, with the moment it expires: never the password, nothing that
would let anyone find it. A hit needs the very same name and password *and* the hash that is
stored now, which the caller reads from the database on every call, so a changed password
(a new hash, on any worker) misses at once; the account's status is checked by the caller on
every call, hit or not, so a disabled or removed account is refused on its next call. A
wrong password never matches a cached right one: it is a different key, verified with
argon2 and counted by the log-in throttle as before.

The memory is per process, bounded (least recently used entries go first) and short-lived
(``qrm.api.credential_cache_ttl`` seconds, 60 by default; 0 turns it off). Nothing another
process needs is kept here: a miss only costs the argon2 verification it saves otherwise.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.accounts.digest import load_secret_key
from engine.security import verify_password

DEFAULT_TTL_S = 60.0
DEFAULT_MAX_ENTRIES = 10_000
REGISTRY_KEY = "qrm.verified_credentials"


class VerifiedCredentials:
    """A bounded, expiring set of (role, name, password, stored hash) verified lately."""

    def __init__(self, key: bytes, *, ttl_s: float = DEFAULT_TTL_S,
                 max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # a key of its own, derived from the server's: the cache's HMACs are not usable as
        # anything else the server signs with that key
        self._key = hmac.new(key, b"qrm verified credentials", hashlib.sha256).digest()
        self.ttl_s, self.max_entries, self._clock = ttl_s, max_entries, clock
        self._expiry: collections.OrderedDict[bytes, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0 and self.max_entries > 0

    def __len__(self) -> int:
        return len(self._expiry)

    def _fingerprint(self, role: str, name: str, password: str, password_hash: str) -> bytes:
        message = b"\0".join(part.encode("utf-8", "surrogatepass")
                             for part in (role, name, password, password_hash))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verify(self, role: str, name: str, password: str, password_hash: str | None) -> bool:
        """Whether ``password`` is right for the account whose stored hash is
        ``password_hash`` (None: no such account): from memory when this very combination
        was verified within the TTL, else with argon2 (and remembered when right)."""
        if password_hash is None or not self.enabled:
            return verify_password(password_hash, password)
        fingerprint = self._fingerprint(role, name, password, password_hash)
        now = self._clock()
        with self._lock:
            expiry = self._expiry.get(fingerprint)
            if expiry is not None and expiry > now:
                self._expiry.move_to_end(fingerprint)
                return True
        if not verify_password(password_hash, password):
            return False
        with self._lock:
            self._expiry[fingerprint] = now + self.ttl_s
            self._expiry.move_to_end(fingerprint)
            while len(self._expiry) > self.max_entries:
                self._expiry.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._expiry.clear()


def make_verified_credentials(settings: dict[str, Any]) -> VerifiedCredentials:
    """The cache as the settings ask: ``qrm.api.credential_cache_ttl`` (seconds) and
    ``qrm.api.credential_cache_size`` (entries), keyed with the server key (a random key of
    this process when the server has none: the memory is this process's only)."""
    secret = load_secret_key(settings)
    key = secret.encode() if secret else secrets.token_bytes(32)
    return VerifiedCredentials(
        key, ttl_s=float(settings.get("qrm.api.credential_cache_ttl", DEFAULT_TTL_S)),
        max_entries=int(settings.get("qrm.api.credential_cache_size", DEFAULT_MAX_ENTRIES)))


def verified_credentials(request: Any) -> VerifiedCredentials:
    """The process's cache (one per registry, made on first use)."""
    registry = request.registry
    cache = registry.get(REGISTRY_KEY)
    if cache is None:
        cache = registry[REGISTRY_KEY] = make_verified_credentials(registry.settings)
    return cache
