"""Where the log-in and language forms send the browser back to: only a local path a
``Location`` header can carry; anything else (CR/LF, another site) goes to the default page,
never a server error nor an injected header."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DEMO_PASSWORD

INJECTED = "\r\nX-Injected: 1"


def _token(page: Any) -> str:
    return page.html.find("input", attrs={"name": "csrf_token"})["value"]


def _assert_redirect(response: Any, location: str) -> None:
    assert (response.status_int, response.headers["Location"]) == (303, location)
    assert "X-Injected" not in response.headers


@pytest.mark.parametrize("bad", [INJECTED, "\n", "\x00", " x", "\u00e9"])
def test_portal_forms_ignore_unsafe_targets(testapp: Any, demo_cloud: dict[str, Any],
                                            bad: str) -> None:
    page = testapp.get("/login", params={"came_from": "/requests" + bad})
    assert page.status_int == 200
    token = _token(page)
    _assert_redirect(testapp.post("/language", {"csrf_token": token, "language": "de",
                                                "next": "/requests" + bad}),
                     "http://localhost/")
    _assert_redirect(testapp.post("/login", {"csrf_token": token, "name": "demo",
                                             "password": DEMO_PASSWORD,
                                             "came_from": "/account" + bad}),
                     "http://localhost/requests")


@pytest.mark.parametrize("bad", [INJECTED, "\n", "\x00", " x", "\u00e9"])
def test_console_forms_ignore_unsafe_targets(testapp: Any, demo_cloud: dict[str, Any],
                                             bad: str) -> None:
    page = testapp.get("/admin/login", params={"next": "/admin/events" + bad})
    assert page.status_int == 200
    assert "next" not in page.forms["login-form"].fields
    token = _token(page)
    _assert_redirect(testapp.post("/admin/language", {"csrf_token": token, "language": "de",
                                                      "next": "/admin/events" + bad}),
                     "http://localhost/admin/")
    _assert_redirect(testapp.post("/admin/login", {"csrf_token": token, "name": "admin",
                                                   "password": DEMO_PASSWORD,
                                                   "next": "/admin/events" + bad}),
                     "http://localhost/admin/")
    # a clean target still works
    page = testapp.get("/admin/login", params={"next": "/admin/events"})
    assert page.status_int == 303
    assert page.headers["Location"].endswith("/admin/events")
