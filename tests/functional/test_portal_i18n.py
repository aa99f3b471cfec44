"""The portal's languages: negotiation, the switch, formatting, and complete catalogs."""

from __future__ import annotations

import pathlib

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from engine.cloud.services import CloudRequestService
from tests.conftest import commit, run_jobs
from tests.functional.test_portal_support import (
    ADMIN,
    admin_session,
    all_requests,
    cloud_user,
    field_error,
    log_in,
    page,
    submit_request,
    text_of,
)

PORTAL = pathlib.Path(__file__).resolve().parents[2] / "portal"
LOCALE = PORTAL / "locale"


def read_catalog(path: pathlib.Path, locale: str | None = None):
    with path.open("rb") as catalog_file:
        return read_po(catalog_file, locale=locale)


def visible_text(response) -> str:
    tree = page(response)
    for hidden in tree.xpath("//script|//style"):
        hidden.drop_tree()
    return " ".join(tree.text_content().split())


def test_accept_language_de_gives_german_pages(testapp, demo_cloud):
    """Without a choice, the browser's language decides."""
    home = testapp.get("/", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert page(home).get("lang") == "de"
    assert "Ihre Systeme, wann Sie sie brauchen" in home.text
    assert "Anmelden" in home.text
    assert "Log in" not in visible_text(home)
    assert "Your systems" in testapp.get("/", headers={"Accept-Language": "fr"}).text


def test_language_switch_overrides_accept_language(testapp, demo_cloud):
    """The chosen language wins over the browser's, and survives logging in and out."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    form = testapp.get("/login").forms["language-form"]
    form["language"] = "en"
    back = form.submit(status=303)
    assert back.location.endswith("/login")
    assert "Log in" in back.follow().text

    log_in(testapp)
    assert "New request" in testapp.get("/requests").text
    testapp.get("/").forms["logout-form"].submit()
    assert "Your systems" in testapp.get("/").text


def test_language_switch_of_a_cloud_user_is_saved_in_the_account(testapp, demo_cloud,
                                                                 pyramid_request):
    """A logged-in user's choice is stored with the account too."""
    log_in(testapp)
    form = testapp.get("/account").forms["language-form"]
    form["language"] = "de"
    account = form.submit().follow()
    assert "Konto von demo" in account.text
    assert cloud_user(pyramid_request).language == "de"


def test_admin_session_can_switch_language_without_an_account_change(testapp, demo_cloud,
                                                                     pyramid_request):
    """The switch is public: an admin's session changes only its own language."""
    admin_session(testapp, pyramid_request)
    form = testapp.get("/").forms["language-form"]
    form["language"] = "de"
    assert "Anmelden" in form.submit().follow().text
    assert cloud_user(pyramid_request).language == "en"


def test_german_formats_numbers_dates_and_money_the_german_way(testapp, demo_cloud,
                                                               pyramid_request, registry):
    """CCUs, times and money follow the user's locale."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    log_in(testapp)
    assert text_of(testapp.get("/account"), "balance") == "1.000 CCUs"
    form = testapp.get("/requests/new").forms["request-form"]
    form["memory_mb"] = "2048"
    priced = form.submit("action", value="quote")
    assert "$" in text_of(priced, "price")
    assert "," in text_of(priced, "price")

    submit_request(testapp, virtualization="sim-vm", stop="2030-12-24T18:30")
    (cloud_request,) = all_requests(pyramid_request)
    pyramid_request.find_service(CloudRequestService).approve(cloud_request.id, actor=ADMIN)
    commit(pyramid_request)
    run_jobs(registry)
    detail = testapp.get(f"/requests/{cloud_request.id}")
    assert "24.12.2030, 18:30:00" in detail.text
    assert text_of(detail, "request-status") == "Aktiv"
    assert "Läuft" in text_of(detail, "appliances-table")


def test_refused_request_is_explained_in_german(testapp, demo_cloud):
    """The service's reason is shown in German too, after the kind of refusal."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    log_in(testapp)

    response = submit_request(testapp, kernel="no-such-kernel")

    assert field_error(response, "kernel") == (
        "Diese Auswahl ist nicht verfügbar. (kein Kernel namens 'no-such-kernel')")


@pytest.mark.parametrize("path", ["/", "/login", "/register", "/requests/new", "/requests",
                                  "/requests/1", "/account", "/requests/999"])
def test_german_pages_show_no_english_catalog_text(testapp, demo_cloud, path):
    """Every catalog string on a German page is translated (none slips through in English)."""
    english = {message.id for message in read_catalog(LOCALE / "de/LC_MESSAGES/portal.po")
               if message.id and message.string != message.id and " " in message.id
               and "${" not in message.id}
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    if path != "/register":
        log_in(testapp)
        submit_request(testapp)
    text = visible_text(testapp.get(path, status=(200, 404)))
    assert [message for message in english if message in text] == []


def test_german_catalog_translates_every_portal_string():
    """The German catalog is complete, current with the sources, and compiled."""
    template = read_catalog(LOCALE / "portal.pot")
    german = read_catalog(LOCALE / "de/LC_MESSAGES/portal.po", "de")
    with (PORTAL / "babel.cfg").open() as mapping_file:
        method_map, options_map = parse_mapping_cfg(mapping_file)
    in_sources = {message for _file, _line, message, _comments, _context
                  in extract_from_dir(str(PORTAL), method_map, options_map)}

    assert {message.id for message in template if message.id} == in_sources
    assert {message.id for message in german if message.id} == in_sources
    assert [m.id for m in german if m.id and (not m.string or m.fuzzy)] == []
    with (LOCALE / "de/LC_MESSAGES/portal.mo").open("rb") as compiled_file:
        compiled = read_mo(compiled_file)
    assert {m.id: m.string for m in compiled if m.id} == {
        m.id: m.string for m in german if m.id}
    english = read_catalog(LOCALE / "en/LC_MESSAGES/portal.po", "en")
    assert {message.id for message in english if message.id} == in_sources


def test_placeholders_survive_translation():
    """Every ${name} of a message is in its German translation too."""
    import re

    for message in read_catalog(LOCALE / "de/LC_MESSAGES/portal.po", "de"):
        if message.id:
            assert set(re.findall(r"\$\{\w+\}", message.id)) == set(
                re.findall(r"\$\{\w+\}", message.string)), message.id


