"""Service errors: English for the APIs, the user's language for the faces, complete catalogs."""

from __future__ import annotations

import datetime as dt
import pathlib
import re
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from engine.cloud.services import CloudRequestService, CloudUserService
from engine.db import utcnow
from engine.errors import InvalidState, LimitExceeded, NotFound, QrmError, ValidationError
from engine.i18n import translate_error
from engine.security import Actor
from tests.conftest import new_request

ROOT = pathlib.Path(__file__).resolve().parents[3]
LOCALE = ROOT / "engine" / "locale"
ADMIN = Actor.admin("admin")


def read_catalog(path: pathlib.Path, locale: str | None = None) -> Any:
    with path.open("rb") as catalog_file:
        return read_po(catalog_file, locale=locale)


def submit(services: CloudRequestService, **overrides: Any) -> Any:
    values = {"cloud_user": "demo", "start": None, "stop": utcnow() + dt.timedelta(days=1),
              "kernel": "default", "image": "debian-12", "memory_mb": 512, "cpus": 1,
              "disk_mb": 5000, "network_cards": 1, "quantity": 1,
              "virtualization": "sim-vm", **overrides}
    return services.submit(actor=ADMIN, **values)


def refusal(action: Any) -> QrmError:
    with pytest.raises(QrmError) as raised:
        action()
    return raised.value


@pytest.fixture
def refusals(demo_cloud: dict[str, Any]) -> dict[str, Any]:
    """One error of each representative kind, raised by the services of the demo cloud."""
    request = demo_cloud["request"]
    users = request.find_service(CloudUserService)
    requests = request.find_service(CloudRequestService)
    users.set_limits("demo", actor=ADMIN, memory_limit_mb=1000)
    denied = submit(requests)
    requests.deny(denied.id, actor=ADMIN)
    return {
        "too short": refusal(lambda: users.create("ab", "password-1", "ab@example.org",
                                                  actor=ADMIN)),
        "over limit": refusal(lambda: submit(requests, quantity=2)),
        "unknown kernel": refusal(lambda: submit(requests, kernel="no-such-kernel")),
        "transition": refusal(lambda: requests.approve(denied.id, actor=ADMIN)),
        "denied id": denied.id,
    }


def test_english_messages_and_fields_are_unchanged(refusals):
    too_short, over_limit = refusals["too short"], refusals["over limit"]
    unknown_kernel, transition = refusals["unknown kernel"], refusals["transition"]

    assert isinstance(too_short, ValidationError)
    assert (too_short.message, too_short.field) == (
        "cloud_user must be 3 to 50 characters long", "cloud_user")
    assert isinstance(over_limit, LimitExceeded)
    assert (over_limit.message, over_limit.field) == (
        "memory_mb: demo holds 0 and asks for 1024, but the limit is 1000", "memory_mb")
    assert isinstance(unknown_kernel, NotFound)
    assert (unknown_kernel.message, unknown_kernel.field) == (
        "no kernel named 'no-such-kernel'", "kernel")
    assert isinstance(transition, InvalidState)
    assert transition.message == (
        f"request {refusals['denied id']} is denied and cannot become approved")
    assert type(transition.message) is str
    assert str(transition) == transition.message


def test_messages_are_german_in_a_german_request(refusals, registry):
    with new_request(registry) as request:
        request.locale_name = "de"
        german = {name: translate_error(request, error) for name, error in refusals.items()
                  if isinstance(error, QrmError)}

    assert german == {
        "too short": "cloud_user muss 3 bis 50 Zeichen lang sein",
        "over limit": "memory_mb: demo belegt bereits 0 und beantragt 1024, das Limit liegt "
                      "jedoch bei 1000",
        "unknown kernel": "kein Kernel namens 'no-such-kernel'",
        "transition": f"Anfrage {refusals['denied id']} hat den Status denied und kann nicht "
                      "in den Status approved wechseln",
    }


@pytest.mark.parametrize("language", ["en", "de"])
def test_message_raised_as_plain_text_is_shown_as_it_is(registry, language):
    plain = NotFound("raised without a translation")
    with new_request(registry) as request:
        request.locale_name = language
        assert plain.translation is None
        assert translate_error(request, plain) == "raised without a translation"


def test_english_request_shows_the_english_text(refusals, registry):
    with new_request(registry) as request:
        request.locale_name = "en"
        assert translate_error(request, refusals["unknown kernel"]) == (
            "no kernel named 'no-such-kernel'")


def test_template_holds_every_message_of_the_services():
    """engine.pot is current: extracting engine/ and billing/ finds exactly its messages."""
    with (ROOT / "engine" / "babel.cfg").open() as mapping_file:
        method_map, options_map = parse_mapping_cfg(mapping_file)
    in_sources = {message for package in ("engine", "billing", "legacy")
                  for _file, _line, message, _comments, _context
                  in extract_from_dir(str(ROOT / package), method_map, options_map)}

    assert {message.id for message in read_catalog(LOCALE / "engine.pot")
            if message.id} == in_sources


@pytest.mark.parametrize("language", ["en", "de"])
def test_catalogs_hold_the_template_and_are_compiled(language):
    template = {message.id for message in read_catalog(LOCALE / "engine.pot") if message.id}
    catalog = read_catalog(LOCALE / language / "LC_MESSAGES" / "engine.po", language)
    with (LOCALE / language / "LC_MESSAGES" / "engine.mo").open("rb") as compiled_file:
        compiled = read_mo(compiled_file)

    assert {message.id for message in catalog if message.id} == template
    assert {m.id: m.string for m in compiled if m.id} == {
        m.id: m.string for m in catalog if m.id and m.string}


def test_german_catalog_translates_every_message_with_its_placeholders():
    catalog = read_catalog(LOCALE / "de" / "LC_MESSAGES" / "engine.po", "de")

    assert [m.id for m in catalog if m.id and (not m.string or m.fuzzy)] == []
    for message in catalog:
        if message.id:
            assert set(re.findall(r"\$\{\w+\}", message.id)) == set(
                re.findall(r"\$\{\w+\}", message.string)), message.id
