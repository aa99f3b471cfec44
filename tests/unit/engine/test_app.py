from tests.conftest import commit


def test_health_page_reports_ok(testapp):
    """The health page answers with the database reachable."""
    response = testapp.get("/health")
    assert response.json == {"status": "ok", "service": "qrm-cloud"}


def test_every_view_names_a_permission(registry):
    introspector = registry.introspector
    missing = []
    for item in introspector.get_category("views") or []:
        view = item["introspectable"]
        permissions = [related["value"] for related in item["related"]
                       if related.category_name == "permissions"]
        if view["route_name"] and not permissions and not view.get("context"):
            missing.append(view["route_name"])
    assert missing == []


def test_commit_helper_keeps_request_usable(pyramid_request):
    from engine.events.services import EventService
    from engine.security import Actor

    events = pyramid_request.find_service(EventService)
    events.log(source="test", name="x", message="m", actor=Actor.system())
    commit(pyramid_request)
    assert events.recent(limit=1)[0].name == "x"


def test_pages_carry_security_headers(testapp):
    """Every response forbids framing and foreign scripts."""
    response = testapp.get("/health")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
