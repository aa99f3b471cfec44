"""Log-in: argon2 hashes, one generic error, throttling across processes."""

from __future__ import annotations

import pytest

from engine.accounts.services import AccountService
from engine.cloud.services import CloudUserService
from engine.errors import AuthenticationFailed
from engine.security import Actor, hash_password, verify_password


def test_passwords_are_argon2_hashes():
    password_hash = hash_password("correct horse")
    assert password_hash.startswith("$argon2")
    assert verify_password(password_hash, "correct horse")
    assert not verify_password(password_hash, "wrong horse")
    assert not verify_password(None, "anything")


def test_admin_login_and_generic_error(pyramid_request):
    accounts = pyramid_request.find_service(AccountService)
    accounts.create_admin("alice", "password-1", actor=Actor.system("test"))
    assert accounts.authenticate_admin("alice", "password-1").name == "alice"
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        accounts.authenticate_admin("alice", "nope")
    with pytest.raises(AuthenticationFailed, match="wrong user name or password"):
        accounts.authenticate_admin("nobody", "nope")


def test_repeated_failures_lock_the_name_even_for_the_right_password(committing_registry):
    from engine.scheduler.runner import run_in_transaction

    def users(request):
        return request.find_service(CloudUserService)

    run_in_transaction(committing_registry, lambda r: users(r).create(
        "bob", "password-1", "bob@example.org", actor=Actor.system("test")))
    for _ in range(5):
        # each failed log-in aborts its own transaction; the failure stays recorded
        with pytest.raises(AuthenticationFailed, match="wrong user name"):
            run_in_transaction(committing_registry,
                               lambda r: users(r).authenticate("bob", "wrong"))
    with pytest.raises(AuthenticationFailed, match="too many failed log-ins"):
        run_in_transaction(committing_registry,
                           lambda r: users(r).authenticate("bob", "password-1"))


def test_disabled_cloud_user_cannot_log_in(pyramid_request):
    from engine.cloud.models import CloudUserStatus

    users = pyramid_request.find_service(CloudUserService)
    users.create("carol", "password-1", "c@example.org", actor=Actor.system("test"))
    users.set_status("carol", CloudUserStatus.DISABLED, actor=Actor.admin("admin"))
    with pytest.raises(AuthenticationFailed, match="disabled"):
        users.authenticate("carol", "password-1")
