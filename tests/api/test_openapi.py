"""The OpenAPI document is valid, covers every route, and matches real responses."""

from __future__ import annotations

import re

import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from tests.authenticator import Authenticator
from tests.conftest import ORIGIN


@pytest.fixture
def doc(api):
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def test_the_document_is_valid_openapi(doc):
    validate(doc)


def test_every_route_is_described(api, doc):
    described = {
        (re.sub(r"\{[^}]+\}", "{}", path), method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method != "parameters"
    }
    for route in api.client.app.routes:
        if isinstance(route, Route) and route.path not in ("/openapi.json", "/docs"):
            for method in route.methods - {"HEAD"}:
                assert (re.sub(r"\{[^}]+\}", "{}", route.path), method) in described, route.path


class Checker:
    """Validates each response against the document's schema for its operation and status."""

    def __init__(self, doc):
        self.doc = doc
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in doc["paths"]
        ]
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, response):
        path = response.request.url.path
        method = response.request.method.lower()
        template = next(p for rx, p in self.templates if rx.match(path))
        op = self.doc["paths"][template][method]
        status = str(response.status_code)
        assert status in op["responses"], (method, template, status)
        self.seen.add((method, template, status))
        content = op["responses"][status].get("content")
        if content is None:
            assert response.status_code == 204 and not response.content
            return
        schema = {**content["application/json"]["schema"], "components": self.doc["components"]}
        jsonschema.validate(response.json(), schema)


def test_real_responses_match_the_document(api, doc, domain):
    check = Checker(doc)
    domain.limiter.max_pending_challenges = 20  # reached below, for a 429
    original = api.client.request

    def request(*args, **kwargs):
        response = original(*args, **kwargs)
        check(response)
        return response

    api.client.request = request
    try:
        api.create_service()
        api.create_service(**{"Passkeys.Attestation": "direct"})
        api.get(api.svc)
        api.get("/v2/Services", params={"PageSize": 1})
        api.post_form(api.svc, {"FriendlyName": "renamed"})
        factor = api.register("user-0001")
        pending = api.create_factor("user-0002")
        # A model the packaged metadata reports REVOKED: its factor says so.
        truu = Authenticator(aaguid=bytes.fromhex("ba86dc56635f4141aef600227b1b9af6"))
        assert api.register("user-0004", authenticator=truu)["metadata"]["authenticator_status"]
        api.get(f"{api.svc}/Entities/user-0004/Factors")
        challenge = api.challenge(identity="user-0001")
        api.approve(api.authenticator.get(challenge["options"], ORIGIN))
        api.approve(api.authenticator.get(challenge["options"], ORIGIN))  # 403 replay
        api.challenge()
        for _ in range(20):  # the entity's most pending challenges; the next is a 429
            api.challenge(identity="user-0001")
        api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})
        api.get(f"{api.svc}/Entities")
        api.post_form(f"{api.svc}/Entities", {"Identity": "user-0003"})
        api.post_form(f"{api.svc}/Entities", {"Identity": "user-0003"})  # 409
        api.get(f"{api.svc}/Entities/user-0001")
        api.get(f"{api.svc}/Entities/user-0001/Factors")
        api.get(f"{api.svc}/Entities/user-0001/Factors/{factor['sid']}")
        api.post_form(
            f"{api.svc}/Entities/user-0001/Factors/{factor['sid']}", {"FriendlyName": "laptop"}
        )
        api.get(f"{api.svc}/Entities/user-0001/Challenges", params={"Status": "approved"})
        api.get(f"{api.svc}/Entities/user-0001/Challenges/{challenge['sid']}")
        hook = api.post_form(
            f"{api.svc}/Webhooks",
            # A public address literal (no DNS here); disabled, so nothing is ever sent to it.
            {
                "FriendlyName": "h",
                "WebhookUrl": "https://8.8.8.8/x",
                "EventTypes": "*",
                "Status": "disabled",
            },
        )
        api.post_form(f"{api.svc}/Webhooks", {"FriendlyName": "h", "WebhookUrl": "ftp://x"})
        api.get(f"{api.svc}/Webhooks")
        api.get(f"{api.svc}/Webhooks/{hook.json()['sid']}")
        api.post_form(f"{api.svc}/Webhooks/{hook.json()['sid']}", {"Status": "disabled"})
        api.delete(f"{api.svc}/Webhooks/{hook.json()['sid']}")
        api.delete(f"{api.svc}/Entities/user-0002/Factors/{pending['sid']}")
        api.delete(f"{api.svc}/Entities/user-0003")
        api.get(f"{api.svc}/Entities/nobody-0000")  # 404
        api.post_json(f"{api.svc}/Passkeys/VerifyFactor", {})  # 400
        api.get("/v2/Services", auth=("AC" + "0" * 32, "x"))  # 401
        api.get("/v2/AuditEvents", params={"ServiceSid": api.service_sid, "PageSize": 5})
        api.delete(api.svc)
    finally:
        api.client.request = original
    statuses = {s for _, _, s in check.seen}
    assert {"200", "201", "204", "400", "401", "403", "404", "409", "429"} <= statuses
    assert len({(m, t) for m, t, _ in check.seen}) >= 20


def test_docs_page_renders_the_document_without_any_cdn(api):
    r = api.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'fetch("/openapi.json")' in r.text
    assert "http" not in re.sub(r'href="/openapi.json"', "", r.text.split("<script>")[1])
