"""WS-Security PasswordDigest: sealed password copies, refusals, and no key, no digest."""

from __future__ import annotations

import pytest

from engine.accounts.digest import DigestSecrets, load_secret_key, password_digest
from engine.cloud.services import CloudUserService
from engine.errors import AuthenticationFailed
from engine.security import Actor


def test_sealed_password_opens_only_with_the_same_key():
    sealed = DigestSecrets("key-one").seal("password-1")
    assert "password-1" not in sealed
    assert DigestSecrets("key-one").open(sealed) == "password-1"
    assert DigestSecrets("key-two").open(sealed) is None
    assert DigestSecrets(None).seal("password-1") is None


def test_digest_login_checks_password_and_status(pyramid_request):
    users = pyramid_request.find_service(CloudUserService)
    users.create("dora", "password-1", "d@example.org", actor=Actor.system("test"))
    created = "2026-11-24T10:00:00Z"
    good = password_digest(b"nonce-1", created, "password-1")
    assert users.authenticate_digest("dora", digest=good, nonce=b"nonce-1",
                                     created=created).name == "dora"
    with pytest.raises(AuthenticationFailed, match="wrong"):
        users.authenticate_digest("dora", digest=password_digest(b"nonce-2", created, "nope"),
                                  nonce=b"nonce-2", created=created)
    with pytest.raises(AuthenticationFailed, match="wrong"):
        users.authenticate_digest("nobody", digest=good, nonce=b"nonce-3", created=created)


def test_without_a_server_key_digests_are_refused_with_advice(pyramid_request):
    users = pyramid_request.find_service(CloudUserService)
    users.digests = DigestSecrets(None)
    with pytest.raises(AuthenticationFailed, match="PasswordText"):
        users.authenticate_digest("dora", digest="x", nonce=b"n", created="c")


def test_development_key_file_is_created_once(tmp_path):
    settings = {"qrm.secret_key_file": str(tmp_path / "var" / "secret.key")}
    key = load_secret_key(settings)
    assert key
    assert load_secret_key(settings) == key
    assert oct((tmp_path / "var" / "secret.key").stat().st_mode)[-3:] == "600"
    assert load_secret_key({}) is None
