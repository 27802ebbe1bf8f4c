"""A resource in the path that is not there is 404 20404 whatever the request's parameters
hold, as a fetch or a valid request to it answers: the service update's other settings
(CodeLength, booleans, Passkeys.Algorithms) and the list queries (PageSize, PageToken,
Order, Status, FactorSid) were refused (400) before the path was looked at, while the
update's Passkeys.* values and every other endpoint's fields already answered 404."""

from __future__ import annotations

import pytest

from tests.api.test_services import assert_twilio_error
from tests.conftest import Api

MISSING_SERVICE = "/v2/Services/VA" + "1" * 32


@pytest.mark.parametrize(
    "form",
    [
        {"CodeLength": "99"},
        {"LookupEnabled": "maybe"},
        {"Totp.Skew": "9"},
        {"DefaultTemplateSid": "not-a-sid"},
        {"Passkeys.Algorithms": "not-an-algorithm"},
        {"Passkeys.UserVerification": "bogus"},  # (already 404: checked in the update)
    ],
)
def test_update_of_a_missing_service_is_404_whatever_the_form(
    api: Api, form: dict[str, str]
) -> None:
    body = assert_twilio_error(api.post_form(MISSING_SERVICE, form), 404, 20404)
    assert body["message"] == f"The requested resource {MISSING_SERVICE[3:]} was not found"


def test_update_of_a_service_still_refuses_its_bad_settings(api: Api) -> None:
    api.create_service()
    assert_twilio_error(api.post_form(api.svc, {"CodeLength": "99"}), 400, 60200)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/Entities", "PageSize=0"),
        ("/Entities", "PageToken=junk"),
        ("/Webhooks", "PageSize=abc"),
        ("/Webhooks", "PageToken=junk"),
        ("/Entities/user-0001/Factors", "PageSize=0"),
        ("/Entities/user-0001/Challenges", "Order=sideways"),
        ("/Entities/user-0001/Challenges", "Status=bogus"),
        ("/Entities/user-0001/Challenges", "FactorSid=YFzz"),
    ],
)
def test_list_under_a_missing_service_is_404_whatever_the_query(
    api: Api, path: str, query: str
) -> None:
    assert_twilio_error(api.get(f"{MISSING_SERVICE}{path}?{query}"), 404, 20404)


@pytest.mark.parametrize(
    ("under", "query"),
    [
        ("/Factors", "PageSize=0"),
        ("/Factors", "PageToken=junk"),
        ("/Challenges", "PageSize=-1"),
        ("/Challenges", "Order=sideways"),
        ("/Challenges", "Status=bogus"),
        ("/Challenges", "FactorSid=YFzz"),
    ],
)
def test_list_under_a_missing_entity_is_404_naming_the_list(
    api: Api, under: str, query: str
) -> None:
    api.create_service()
    url = f"{api.svc}/Entities/nobody-0000{under}"
    body = assert_twilio_error(api.get(f"{url}?{query}"), 404, 20404)
    assert body["message"] == f"The requested resource {url[3:]} was not found"


def test_list_queries_are_still_refused_where_the_list_is(api: Api) -> None:
    api.create_service()
    api.register("user-0001")
    assert_twilio_error(api.get(f"{api.svc}/Entities?PageSize=0"), 400, 60373)
    assert_twilio_error(api.get(f"{api.svc}/Webhooks?PageToken=junk"), 400, 60374)
    assert_twilio_error(api.get(f"{api.svc}/Entities/user-0001/Factors?PageSize=0"), 400, 60373)
    challenges = f"{api.svc}/Entities/user-0001/Challenges"
    assert_twilio_error(api.get(f"{challenges}?Status=bogus"), 400, 60306)
    assert_twilio_error(api.get(f"{challenges}?Order=sideways"), 400, 60306)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001", "config": 5}),
        ("/Passkeys/Factors", {"friendly_name": "a", "identity": "user-0001", "bogus": 1}),
        ("/Passkeys/Factors", {"config": {"relying_party": {"origins": "x"}}}),
        ("/Passkeys/Challenges", {"identity": "user-0001", "bogus": 1}),
        ("/Passkeys/VerifyFactor", {"bogus": 1}),
        ("/Passkeys/ApproveChallenge", {"bogus": 1}),
    ],
)
def test_a_ceremony_under_a_missing_service_is_404_whatever_the_body(
    api: Api, path: str, body: dict[str, object]
) -> None:
    """P1 with an invalid config answered 60370, and P1/P3 with an unknown field 60300,
    before the path was looked at; P2 and P4 already answered 404."""
    body_ = assert_twilio_error(api.post_json(MISSING_SERVICE + path, body), 404, 20404)
    assert body_["message"] == f"The requested resource {MISSING_SERVICE[3:]} was not found"


def test_a_ceremony_under_a_service_still_refuses_its_bad_fields(api: Api) -> None:
    api.create_service()
    r = api.post_json(f"{api.svc}/Passkeys/Factors", {"identity": "user-0001", "config": 5})
    assert_twilio_error(r, 400, 60370)
    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"bogus": 1})
    assert_twilio_error(r, 400, 60300)
