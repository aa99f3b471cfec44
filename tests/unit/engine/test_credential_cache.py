"""The memory of verified credentials: no argon2 per API call, and exactly as safe."""

from __future__ import annotations

import pytest

import engine.accounts.credentials as credentials_module
from engine.accounts.credentials import VerifiedCredentials
from engine.accounts.services import AccountService
from engine.cloud.models import CloudUserStatus
from engine.cloud.services import CloudUserService
from engine.errors import AuthenticationFailed
from engine.scheduler.runner import run_in_transaction
from engine.security import Actor, hash_password

ADMIN = Actor.admin("admin")


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = credentials_module.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        calls.append(password)
        return real(password_hash, password)

    monkeypatch.setattr(credentials_module, "verify_password", counting)
    return calls


def test_a_hit_skips_argon2_and_a_wrong_password_never_matches_a_cached_right_one(
        argon2_calls: list[str]) -> None:
    cache = VerifiedCredentials(b"server-key")
    stored = hash_password("right-password")
    assert cache.verify("clouduser", "bob", "right-password", stored)
    assert cache.verify("clouduser", "bob", "right-password", stored)
    assert len(argon2_calls) == 1
    assert not cache.verify("clouduser", "bob", "wrong-password", stored)
    assert not cache.verify("admin", "bob", "right-password", hash_password("other"))
    assert not cache.verify("clouduser", "bob", "right-password", None)


def test_a_new_stored_hash_expiry_and_the_bound_make_it_verify_again(
        argon2_calls: list[str]) -> None:
    now = [0.0]
    cache = VerifiedCredentials(b"key", ttl_s=60, max_entries=2, clock=lambda: now[0])
    old, new = hash_password("pw-1"), hash_password("pw-1")
    assert cache.verify("clouduser", "bob", "pw-1", old)
    assert cache.verify("clouduser", "bob", "pw-1", new)  # a changed hash misses
    assert len(argon2_calls) == 2
    now[0] = 61.0
    assert cache.verify("clouduser", "bob", "pw-1", old)  # expired: argon2 again
    assert len(argon2_calls) == 3
    cache.verify("clouduser", "carol", "pw-1", old)
    assert len(cache) == 2


def test_the_cache_never_holds_the_password() -> None:
    cache = VerifiedCredentials(b"key")
    cache.verify("clouduser", "bob", "secret-password-9", hash_password("secret-password-9"))
    held = repr(vars(cache)).encode()
    assert b"secret-password-9" not in held
    assert all(len(key) == 32 for key in cache._expiry)


def test_password_change_disable_and_remove_refuse_the_next_log_in(pyramid_request) -> None:
    users = pyramid_request.find_service(CloudUserService)
    for name in ("dora", "emil", "fred"):
        users.create(name, "password-1", f"{name}@example.org", actor=ADMIN)
        assert users.authenticate(name, "password-1").name == name  # now remembered
    users.set_password("dora", "password-2", actor=ADMIN)
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        users.authenticate("dora", "password-1")
    assert users.authenticate("dora", "password-2").name == "dora"
    users.set_status("emil", CloudUserStatus.DISABLED, actor=ADMIN)
    with pytest.raises(AuthenticationFailed, match="disabled"):
        users.authenticate("emil", "password-1")
    users.remove("fred", actor=ADMIN)
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        users.authenticate("fred", "password-1")


def test_admin_password_change_and_disable_refuse_the_next_log_in(pyramid_request) -> None:
    accounts = pyramid_request.find_service(AccountService)
    admin = accounts.create_admin("gina", "password-1", actor=ADMIN)
    assert accounts.authenticate_admin("gina", "password-1").name == "gina"
    accounts.set_admin_password("gina", "password-2", actor=ADMIN)
    with pytest.raises(AuthenticationFailed):
        accounts.authenticate_admin("gina", "password-1")
    assert accounts.authenticate_admin("gina", "password-2").name == "gina"
    admin.active = False
    with pytest.raises(AuthenticationFailed, match="disabled"):
        accounts.authenticate_admin("gina", "password-2")


def test_a_cached_success_does_not_pass_a_lock_out(committing_registry) -> None:
    def users(request):
        return request.find_service(CloudUserService)

    run_in_transaction(committing_registry, lambda r: users(r).create(
        "hans", "password-1", "hans@example.org", actor=ADMIN))
    run_in_transaction(committing_registry, lambda r: users(r).authenticate(
        "hans", "password-1"))  # remembered now
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="wrong user name"):
            run_in_transaction(committing_registry,
                               lambda r: users(r).authenticate("hans", "wrong"))
    with pytest.raises(AuthenticationFailed, match="too many failed log-ins"):
        run_in_transaction(committing_registry,
                           lambda r: users(r).authenticate("hans", "password-1"))
