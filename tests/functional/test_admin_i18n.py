"""The console in English and German: Accept-Language, the language switch, the catalogs."""

from __future__ import annotations

import pathlib

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

import admin
from admin.config_texts import DESCRIPTIONS
from engine.cloud.config import CONFIG_KEYS
from tests.functional.test_admin_support import admin_login, form_to, text_of

LOCALE = pathlib.Path(admin.__file__).parent / "locale"


def hashable(value):
    """A message id or string (plural ones are lists)."""
    return tuple(value) if isinstance(value, list | tuple) else value


def test_page_is_german_with_accept_language_de(testapp, demo_cloud):
    """With Accept-Language: de the console speaks German and formats numbers the German way."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de-DE,de;q=0.9,en;q=0.5"
    login = testapp.get("/admin/login")
    assert login.html.find("html")["lang"] == "de"
    assert "An der Verwaltungskonsole anmelden" in login

    admin_login(testapp)
    users = testapp.get("/admin/cloud/users")

    assert "Cloud-Benutzer anlegen" in users
    row = users.html.find("tr", attrs={"data-user": "demo"})
    assert [cell.get_text(" ", strip=True) for cell in row.find_all("td")][3:5] == [
        "aktiv", "1.000"]
    dashboard = testapp.get("/admin/")
    assert "Heute berechnete CCUs" in dashboard
    assert "Übersicht" in dashboard.html.find("nav").get_text()


def test_language_switch_is_kept_across_log_in(testapp, demo_cloud):
    """A language chosen on the log-in page stays after logging in, whatever the browser asks."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "en"
    login = testapp.get("/admin/login")
    switch = form_to(login, "/admin/language")

    page = switch.submit("language", value="de").follow()
    assert "Anmelden" in page

    dashboard = admin_login(testapp)
    assert dashboard.html.find("html")["lang"] == "de"
    form_to(dashboard, "/admin/language").submit("language", value="en").follow()
    assert "Dashboard" in testapp.get("/admin/").html.find("nav").get_text()


def test_german_amounts_are_read_the_german_way(testapp, demo_cloud, pyramid_request):
    """In German, ``-12,5`` is minus twelve and a half CCUs."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    admin_login(testapp)
    demo = testapp.get("/admin/cloud/users").html.find("tr", attrs={"data-user": "demo"})
    form = testapp.get(demo.find("a")["href"]).forms["credit-form"]
    form["amount"], form["comment"] = "-12,5", "Korrektur"

    page = form.submit().follow()

    assert text_of(page, "balance") == "Guthaben 987,5 CCUs"


def test_refusal_is_explained_in_german(testapp, demo_cloud):
    """A refused form names its kind and the service's reason in German next to the field."""
    testapp.extra_environ["HTTP_ACCEPT_LANGUAGE"] = "de"
    admin_login(testapp)
    form = testapp.get("/admin/cloud/config").forms["config-form"]
    form["max_disk_size"] = "viel"

    page = form.submit(status=400)

    assert text_of(page, "error-config-max_disk_size") == (
        "Ungültige Eingabe: max_disk_size muss eine ganze Zahl sein")


@pytest.mark.parametrize("language", ["en", "de"])
def test_catalogs_are_compiled_from_the_current_template(language):
    """Every message of admin.pot is in the language's .po, and the .mo matches the .po."""
    with (LOCALE / "admin.pot").open("rb") as handle:
        template = {hashable(message.id) for message in read_po(handle) if message.id}
    with (LOCALE / language / "LC_MESSAGES" / "admin.po").open("rb") as handle:
        catalog = read_po(handle)
    with (LOCALE / language / "LC_MESSAGES" / "admin.mo").open("rb") as handle:
        compiled = read_mo(handle)

    assert {hashable(message.id) for message in catalog if message.id} == template
    translated = {hashable(m.id): hashable(m.string) for m in catalog
                  if m.id and all(m.string if m.pluralizable else [m.string])}
    assert {hashable(m.id): hashable(m.string) for m in compiled
            if hashable(m.id) in translated} == translated


def test_german_catalog_translates_every_message():
    """No message of the console is left untranslated in German."""
    with (LOCALE / "de" / "LC_MESSAGES" / "admin.po").open("rb") as handle:
        catalog = read_po(handle)

    untranslated = [message.id for message in catalog if message.id and (
        not all(message.string) if message.pluralizable else not message.string)]
    assert untranslated == []


def test_every_config_description_is_in_the_catalog():
    """Each configuration key's description is marked for translation (none can be missed)."""
    assert {key.description for key in CONFIG_KEYS} <= set(DESCRIPTIONS)


def test_template_holds_every_message_of_the_console():
    """admin.pot is up to date: extracting the console's sources finds nothing else."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.frontend import parse_mapping_cfg

    root = LOCALE.parent
    with (root / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found = {hashable(message[2]) for message in extract_from_dir(
        str(root), method_map, options_map)}
    with (LOCALE / "admin.pot").open("rb") as handle:
        template = {hashable(message.id) for message in read_po(handle) if message.id}

    assert found == template
