"""Entities, the Factors under an entity, and the Challenges under an entity (form-encoded)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import ORIGIN, Api, FakeClock

ENTITY_SID = re.compile(r"^YE[0-9a-f]{32}$")
FACTOR_SID = re.compile(r"^YF[0-9a-f]{32}$")
CHALLENGE_SID = re.compile(r"^YC[0-9a-f]{32}$")
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BASE = "http://testserver"
FORM = "application/x-www-form-urlencoded"
AAGUID = "fbfc3007-154e-4ecc-8c0b-6e020557d7bd"  # the test authenticator's (iCloud Keychain)


def assert_twilio_error(r: Any, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    return body


def entity_url(api: Api, identity: str) -> str:
    return f"{api.svc}/Entities/{identity}"


def sign_in(api: Api, identity: str | None = None, **challenge: Any) -> Any:
    """Start a challenge (for `identity`, or usernameless) and answer it; the P4 response."""
    if identity is not None:
        challenge["identity"] = identity
    created = api.challenge(**challenge)
    return api.approve(api.authenticator.get(created["options"], ORIGIN))


def rows_mentioning(api: Api, table: str, value: str) -> list[tuple[Any, ...]]:
    return [row for row in api.snapshot()[table] if value in row]


# --- entities -----------------------------------------------------------------------------


def test_create_entity(api: Api) -> None:
    api.create_service()

    r = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})

    assert r.status_code == 201, r.text
    body = r.json()
    assert ENTITY_SID.match(body["sid"])
    assert body["identity"] == "user-0001"
    assert body["account_sid"] == api.account_sid
    assert body["service_sid"] == api.service_sid
    assert DATE.match(body["date_created"]) and DATE.match(body["date_updated"])
    url = f"{BASE}/v2/Services/{api.service_sid}/Entities/user-0001"
    assert body["url"] == url
    assert body["links"] == {
        "factors": f"{url}/Factors",
        "new_factors": f"{url}/Factors",
        "challenges": f"{url}/Challenges",
    }


@pytest.mark.parametrize(
    "identity",
    [
        "abcd1234",
        "a" * 64,
        "DD6840aec40ad01ebc2001c0330000aa33",
        "ff483d1f-f591-898a-9942-916050d2ca3f",
    ],
)
def test_create_entity_accepts_valid_identities(api: Api, identity: str) -> None:
    api.create_service()

    r = api.post_form(f"{api.svc}/Entities", {"Identity": identity})

    assert r.status_code == 201, r.text
    assert r.json()["identity"] == identity
    assert api.get(entity_url(api, identity)).json()["sid"] == r.json()["sid"]


def test_create_duplicate_entity_is_409(api: Api) -> None:
    api.create_service()
    first = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})
    assert first.status_code == 201
    before = api.snapshot()

    r = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})

    assert_twilio_error(r, 409, 60301)
    assert api.snapshot() == before
    assert api.get(entity_url(api, "user-0001")).json()["sid"] == first.json()["sid"]


def test_a_form_field_given_twice_with_different_values_is_refused(api: Api) -> None:
    """`Identity=a&Identity=b`: which one was meant (or which a proxy appended) is not
    guessed; the last one was taken. The same value twice is that value."""
    api.create_service()
    before = api.snapshot()
    r = api.post_raw(f"{api.svc}/Entities", "Identity=user-0001&Identity=user-0002", FORM)
    assert "given twice" in assert_twilio_error(r, 400, 60200)["message"]
    assert api.snapshot() == before
    r = api.post_raw(f"{api.svc}/Entities", "Identity=user-0001&Identity=user-0001", FORM)
    assert r.status_code == 201 and r.json()["identity"] == "user-0001"
    listed = api.get(f"{api.svc}/Entities?PageSize=5&PageSize=6")
    assert "'PageSize' is given twice" in assert_twilio_error(listed, 400, 60200)["message"]


def test_same_identity_in_two_services_is_two_entities(api: Api) -> None:
    api.create_service()
    first = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"}).json()
    api.create_service()

    r = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})

    assert r.status_code == 201, r.text
    assert r.json()["sid"] != first["sid"]


@pytest.mark.parametrize(
    "form",
    [
        {"Identity": "abc"},
        {"Identity": "a_b_c_d_e_f"},
        {"Identity": "abcdefg"},  # 7 characters
        {"Identity": "a" * 65},
        {"Identity": "-user-0001"},
        {"Identity": "user--0001"},
        {"Identity": "user 0001"},
        {"Identity": ""},
        {},
    ],
)
def test_create_entity_with_invalid_identity_is_400(api: Api, form: dict[str, str]) -> None:
    api.create_service()
    before = api.snapshot()

    r = api.post_form(f"{api.svc}/Entities", form)

    assert_twilio_error(r, 400, 60367)
    assert api.snapshot() == before


def test_create_entity_in_unknown_service_is_404(api: Api) -> None:
    before = api.snapshot()

    r = api.post_form("/v2/Services/VA" + "0" * 32 + "/Entities", {"Identity": "user-0001"})

    assert_twilio_error(r, 404, 20404)
    assert api.snapshot() == before


def test_list_entities(api: Api) -> None:
    api.create_service()
    identities = ["user-0001", "user-0002", "user-0003"]
    sids = [api.post_form(f"{api.svc}/Entities", {"Identity": i}).json()["sid"] for i in identities]

    r = api.get(f"{api.svc}/Entities")

    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["sid"] for e in body["entities"]] == sids
    assert [e["identity"] for e in body["entities"]] == identities
    meta = body["meta"]
    assert meta["key"] == "entities"
    assert meta["page"] == 0
    assert meta["page_size"] == 50
    assert meta["next_page_url"] is None
    assert meta["first_page_url"] == f"{BASE}{api.svc}/Entities?PageSize=50&Page=0"


def test_list_entities_paginates(api: Api) -> None:
    api.create_service()
    identities = [f"user-000{i}" for i in range(5)]
    for identity in identities:
        assert api.post_form(f"{api.svc}/Entities", {"Identity": identity}).status_code == 201

    seen: list[str] = []
    url: str | None = f"{api.svc}/Entities?PageSize=2"
    while url is not None:
        body = api.get(url).json()
        assert body["meta"]["key"] == "entities"
        seen.extend(e["identity"] for e in body["entities"])
        url = body["meta"]["next_page_url"]
        assert len(seen) <= 5

    assert seen == identities


def test_list_entities_pages_back_with_previous_page_urls(api: Api) -> None:
    api.create_service()
    identities = [f"user-000{i}" for i in range(5)]
    for identity in identities:
        assert api.post_form(f"{api.svc}/Entities", {"Identity": identity}).status_code == 201

    pages: list[list[str]] = []
    body = api.get(f"{api.svc}/Entities?PageSize=2").json()
    assert body["meta"]["previous_page_url"] is None  # the first page
    while True:
        pages.append([e["identity"] for e in body["entities"]])
        if body["meta"]["next_page_url"] is None:
            break
        body = api.get(body["meta"]["next_page_url"]).json()
    assert pages == [identities[0:2], identities[2:4], identities[4:5]]

    back: list[list[str]] = []
    numbers: list[int] = []
    while body["meta"]["previous_page_url"] is not None:
        body = api.get(body["meta"]["previous_page_url"]).json()
        back.append([e["identity"] for e in body["entities"]])
        numbers.append(body["meta"]["page"])
    assert back == [identities[2:4], identities[0:2]]
    assert numbers == [1, 0]
    # and forward again from a page reached backward
    again = api.get(body["meta"]["next_page_url"]).json()
    assert [e["identity"] for e in again["entities"]] == identities[2:4]
    assert again["meta"]["previous_page_url"] is not None


def test_a_malformed_page_token_is_refused(api: Api) -> None:
    api.create_service()
    for token in ("PX3", "PB", "PT-1", "PBx"):
        assert_twilio_error(api.get(f"{api.svc}/Entities?PageToken={token}"), 400, 60374)


@pytest.mark.parametrize(("size", "why"), [("0", "at least 1"), ("-1", "at least 1"),
                                          ("-0", "at least 1"), ("-x", "an integer")])  # fmt: skip
def test_a_page_size_below_one_says_so(api: Api, size: str, why: str) -> None:
    """-1 was said to be no integer (found by the compatibility review)."""
    api.create_service()
    r = api.client.get(f"{api.svc}/Entities", params={"PageSize": size}, auth=api.auth)
    assert assert_twilio_error(r, 400, 60373)["message"].endswith(f"must be {why}")


@pytest.mark.parametrize("size", [" 5 ", "+3", "5_0", "\u0665", "\u00b2", "x"])
def test_a_page_size_not_in_ascii_digits_is_refused(api: Api, size: str) -> None:
    """int() reads " 5 ", "+3", "5_0" (as 50) and Arabic-Indic digits; they were served."""
    api.create_service()
    r = api.client.get(f"{api.svc}/Entities", params={"PageSize": size}, auth=api.auth)
    assert_twilio_error(r, 400, 60373)


def test_a_page_size_over_the_most_is_the_most_however_long(api: Api) -> None:
    api.create_service()
    r = api.client.get(f"{api.svc}/Entities", params={"PageSize": "9" * 30}, auth=api.auth)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["page_size"] == 1000


def test_fetch_entity(api: Api) -> None:
    api.create_service()
    created = api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"}).json()

    r = api.get(entity_url(api, "user-0001"))

    assert r.status_code == 200, r.text
    assert r.json() == created


def test_fetch_unknown_entity_is_404(api: Api) -> None:
    api.create_service()

    assert_twilio_error(api.get(entity_url(api, "nobody-0000")), 404, 20404)


def test_registering_a_passkey_creates_the_entity(api: Api) -> None:
    api.create_service()
    factor = api.register("user-0001")

    r = api.get(entity_url(api, "user-0001"))

    assert r.status_code == 200, r.text
    assert r.json()["sid"] == factor["entity_sid"]


def test_a_factor_for_an_identity_created_meanwhile_joins_its_entity(
    api: Api, domain: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first registrations of one identity race: the one that finds its entity taken
    when it writes joins the entity the other created, and stores nothing of its own."""
    api.create_service()
    first = api.create_factor("user-0001")
    looked_up = []
    real = domain.store.get_entity

    def not_yet(*args: Any) -> Any:  # the first lookup ran before the other request wrote
        looked_up.append(args)
        return None if len(looked_up) == 1 else real(*args)

    monkeypatch.setattr(domain.store, "get_entity", not_yet)
    second = api.create_factor("user-0001")
    assert len(looked_up) == 2
    assert second["entity_sid"] == first["entity_sid"]
    assert len(api.snapshot()["entities"]) == 1
    assert len(api.snapshot()["factors"]) == 2


def test_delete_entity(api: Api) -> None:
    api.create_service()
    api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})
    api.post_form(f"{api.svc}/Entities", {"Identity": "user-0002"})

    r = api.delete(entity_url(api, "user-0001"))

    assert r.status_code == 204
    assert r.content == b""
    assert_twilio_error(api.get(entity_url(api, "user-0001")), 404, 20404)
    assert_twilio_error(api.delete(entity_url(api, "user-0001")), 404, 20404)
    remaining = api.get(f"{api.svc}/Entities").json()["entities"]
    assert [e["identity"] for e in remaining] == ["user-0002"]


def test_delete_entity_deletes_its_factors_and_challenges(api: Api) -> None:
    api.create_service()
    old = api.register("user-0001")
    assert sign_in(api, "user-0001").status_code == 200
    api.challenge(identity="user-0001")  # left pending
    other = api.register("user-0002")
    entity_sid = old["entity_sid"]
    assert rows_mentioning(api, "factors", entity_sid)
    assert len(rows_mentioning(api, "challenges", entity_sid)) == 2

    r = api.delete(entity_url(api, "user-0001"))

    assert r.status_code == 204
    assert not rows_mentioning(api, "entities", entity_sid)
    assert not rows_mentioning(api, "factors", entity_sid)
    assert not rows_mentioning(api, "challenges", entity_sid)
    assert rows_mentioning(api, "factors", other["sid"])  # the other user keeps their passkey
    assert_twilio_error(api.get(f"{entity_url(api, 'user-0001')}/Factors"), 404, 20404)
    assert_twilio_error(api.get(f"{entity_url(api, 'user-0001')}/Factors/{old['sid']}"), 404, 20404)

    # The same identity can register anew: a new entity with only the new passkey.
    new = api.register("user-0001")
    assert new["entity_sid"] != entity_sid
    assert new["sid"] != old["sid"]
    factors = api.get(f"{entity_url(api, 'user-0001')}/Factors").json()["factors"]
    assert [f["sid"] for f in factors] == [new["sid"]]
    assert api.get(f"{entity_url(api, 'user-0001')}/Challenges").json()["challenges"] == []
    approved = sign_in(api, "user-0001")
    assert approved.status_code == 200, approved.text
    assert approved.json()["factor_sid"] == new["sid"]

    # The deleted passkey no longer signs in (usernameless, so the authenticator may pick it).
    challenge = api.challenge()
    old_credential = next(iter(api.authenticator.credentials))
    assertion = api.authenticator.get(challenge["options"], ORIGIN, credential_id=old_credential)
    assert_twilio_error(api.approve(assertion), 404, 60390)


def test_delete_entity_cancels_a_pending_registration(api: Api) -> None:
    api.create_service()
    pending = api.create_factor("user-0001")
    credential = api.authenticator.create(pending["options"], ORIGIN)

    assert api.delete(entity_url(api, "user-0001")).status_code == 204

    assert_twilio_error(api.verify_factor(credential), 404, 60391)
    assert not rows_mentioning(api, "factors", pending["sid"])
    assert_twilio_error(api.get(entity_url(api, "user-0001")), 404, 20404)


# --- factors under an entity --------------------------------------------------------------


def test_list_factors_of_an_entity(api: Api) -> None:
    api.create_service()
    factor = api.register("user-0001")
    api.register("user-0002")

    r = api.get(f"{entity_url(api, 'user-0001')}/Factors")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["meta"]["key"] == "factors"
    assert body["meta"]["next_page_url"] is None
    assert len(body["factors"]) == 1
    listed = body["factors"][0]
    assert FACTOR_SID.match(listed["sid"])
    assert listed["sid"] == factor["sid"]
    assert listed["factor_type"] == "passkeys"
    assert listed["status"] == "verified"
    assert listed["identity"] == "user-0001"
    assert listed["entity_sid"] == factor["entity_sid"]
    assert listed["account_sid"] == api.account_sid
    assert listed["service_sid"] == api.service_sid
    assert listed["friendly_name"] == "alice"
    assert listed["metadata"]["aaguid"] == AAGUID
    assert "options" not in listed
    assert "binding" not in listed
    assert listed["config"]["relying_party"] == {
        "id": "example.com",
        "name": "Example",
        "origins": [ORIGIN],
    }
    assert listed["url"] == f"{BASE}{entity_url(api, 'user-0001')}/Factors/{factor['sid']}"
    assert DATE.match(listed["date_created"]) and DATE.match(listed["date_updated"])


def test_list_factors_includes_unverified_factor(api: Api) -> None:
    api.create_service()
    verified = api.register("user-0001")
    pending = api.create_factor("user-0001")

    factors = api.get(f"{entity_url(api, 'user-0001')}/Factors").json()["factors"]

    by_sid = {f["sid"]: f for f in factors}
    assert set(by_sid) == {verified["sid"], pending["sid"]}
    assert by_sid[pending["sid"]]["status"] == "unverified"
    assert by_sid[pending["sid"]]["metadata"] is None
    assert "options" not in by_sid[pending["sid"]]


def test_fetch_factor(api: Api) -> None:
    api.create_service()
    factor = api.register("user-0001")
    listed = api.get(f"{entity_url(api, 'user-0001')}/Factors").json()["factors"][0]

    r = api.get(f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}")

    assert r.status_code == 200, r.text
    assert r.json() == listed
    assert r.json()["status"] == "verified"
    assert "options" not in r.json()


def test_fetch_factor_after_sign_in_has_date_last_approved(api: Api, clock: FakeClock) -> None:
    api.create_service()
    factor = api.register("user-0001")
    clock.advance(30)
    assert sign_in(api, "user-0001").status_code == 200

    body = api.get(f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}").json()

    assert body["metadata"]["aaguid"] == AAGUID
    assert DATE.match(body["metadata"]["date_last_approved"])


def test_rename_factor(api: Api, clock: FakeClock) -> None:
    api.create_service()
    factor = api.register("user-0001")
    url = f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}"
    clock.advance(60)

    r = api.post_form(url, {"FriendlyName": "Work laptop"})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["friendly_name"] == "Work laptop"
    assert body["sid"] == factor["sid"]
    assert body["status"] == "verified"
    assert body["date_updated"] != factor["date_updated"]
    assert "options" not in body
    assert api.get(url).json()["friendly_name"] == "Work laptop"
    listed = api.get(f"{entity_url(api, 'user-0001')}/Factors").json()["factors"]
    assert listed[0]["friendly_name"] == "Work laptop"
    # Renaming does not disturb signing in.
    assert sign_in(api, "user-0001").status_code == 200


def test_rename_factor_with_empty_name_is_refused(api: Api) -> None:
    api.create_service()
    factor = api.register("user-0001")
    url = f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}"
    before = api.snapshot()

    r = api.post_form(url, {"FriendlyName": "  "})

    assert r.status_code == 400, r.text
    assert api.snapshot() == before
    assert api.get(url).json()["friendly_name"] == "alice"


def test_an_auth_payload_is_refused_with_where_passkeys_are_verified(api: Api) -> None:
    """AuthPayload verifies push and TOTP factors. Sent for a passkey, it was ignored with a
    200 and the factor left unverified, which told a developer nothing."""
    api.create_service()
    factor = api.create_factor("user-0001")
    url = f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}"
    before = api.snapshot()

    r = api.post_form(url, {"AuthPayload": "123456", "FriendlyName": "renamed"})

    body = assert_twilio_error(r, 400, 60300)
    assert "/Passkeys/VerifyFactor" in body["message"]
    assert api.snapshot() == before
    # An unknown factor is still a 404, as without AuthPayload.
    missing = f"{entity_url(api, 'user-0001')}/Factors/YF{'0' * 32}"
    assert_twilio_error(api.post_form(missing, {"AuthPayload": "123456"}), 404, 20404)


def test_push_and_totp_config_is_refused_for_a_passkey(api: Api) -> None:
    """Config.NotificationToken, Config.TimeStep and the like configure push and TOTP
    factors. Sent for a passkey (twilio-node's factors(sid).update({"config.timeStep": 30})),
    they were ignored with a 200, as if the factor had taken them."""
    api.create_service()
    factor = api.register("user-0001")
    url = f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}"
    before = api.snapshot()

    r = api.post_form(url, {"Config.TimeStep": "30", "FriendlyName": "renamed"})

    body = assert_twilio_error(r, 400, 60300)
    assert "Config.TimeStep" in body["message"] and "/Passkeys/Factors" in body["message"]
    assert api.snapshot() == before
    missing = f"{entity_url(api, 'user-0001')}/Factors/YF{'0' * 32}"
    assert_twilio_error(api.post_form(missing, {"Config.Alg": "sha1"}), 404, 20404)


def test_delete_factor_stops_sign_in(api: Api) -> None:
    api.create_service()
    factor = api.register("user-0001")
    url = f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}"
    pending = api.challenge(identity="user-0001")  # started before the delete

    r = api.delete(url)

    assert r.status_code == 204
    assert r.content == b""
    assert_twilio_error(api.get(url), 404, 20404)
    assert_twilio_error(api.delete(url), 404, 20404)
    assert api.get(f"{entity_url(api, 'user-0001')}/Factors").json()["factors"] == []
    assert not rows_mentioning(api, "factors", factor["sid"])

    assertion = api.authenticator.get(pending["options"], ORIGIN)
    assert_twilio_error(api.approve(assertion), 404, 60390)
    # A usernameless challenge does not find it either.
    fresh = api.challenge()
    assert_twilio_error(api.approve(api.authenticator.get(fresh["options"], ORIGIN)), 404, 60390)


def test_challenge_for_entity_whose_last_factor_was_deleted_is_60392(api: Api) -> None:
    """Reference (c): 60392 "Entity not found" is for "P3 identity with no entity or
    factors"; 60318 is for challenging an *unverified* factor, and none is left here."""
    api.create_service()
    factor = api.register("user-0001")
    assert api.delete(f"{entity_url(api, 'user-0001')}/Factors/{factor['sid']}").status_code == 204
    before = api.snapshot()

    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})

    assert_twilio_error(r, 404, 60392)
    assert api.snapshot() == before


def test_challenge_for_entity_created_without_factors_is_60392(api: Api) -> None:
    api.create_service()
    assert api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"}).status_code == 201
    before = api.snapshot()

    r = api.post_json(f"{api.svc}/Passkeys/Challenges", {"identity": "user-0001"})

    assert_twilio_error(r, 404, 60392)
    assert api.snapshot() == before


def test_factor_under_another_identitys_url_is_404(api: Api) -> None:
    api.create_service()
    alice = api.register("user-0001")
    api.register("user-0002")
    wrong = f"{entity_url(api, 'user-0002')}/Factors/{alice['sid']}"
    before = api.snapshot()

    assert_twilio_error(api.get(wrong), 404, 20404)
    assert_twilio_error(api.post_form(wrong, {"FriendlyName": "stolen"}), 404, 20404)
    assert_twilio_error(api.delete(wrong), 404, 20404)

    assert api.snapshot() == before
    assert sign_in(api, "user-0001").status_code == 200


def test_factor_of_another_service_is_404(api: Api) -> None:
    api.create_service()
    factor = api.register("user-0001")
    first_service = api.service_sid
    api.create_service()
    api.register("user-0001")  # same identity, second service
    wrong = f"{api.svc}/Entities/user-0001/Factors/{factor['sid']}"
    before = api.snapshot()

    assert_twilio_error(api.get(wrong), 404, 20404)
    assert_twilio_error(api.post_form(wrong, {"FriendlyName": "x"}), 404, 20404)
    assert_twilio_error(api.delete(wrong), 404, 20404)
    assert api.snapshot() == before
    right = f"/v2/Services/{first_service}/Entities/user-0001/Factors/{factor['sid']}"
    assert api.get(right).status_code == 200


def test_unknown_factor_is_404(api: Api) -> None:
    api.create_service()
    api.register("user-0001")

    url = f"{entity_url(api, 'user-0001')}/Factors/YF" + "0" * 32
    assert_twilio_error(api.get(url), 404, 20404)
    assert_twilio_error(api.post_form(url, {"FriendlyName": "x"}), 404, 20404)
    assert_twilio_error(api.delete(url), 404, 20404)


def test_factors_of_unknown_entity_is_404(api: Api) -> None:
    api.create_service()

    body = assert_twilio_error(api.get(f"{entity_url(api, 'nobody-0000')}/Factors"), 404, 20404)
    # Named as requested (it named the entity alone; found by the compatibility review).
    requested = f"/Services/{api.service_sid}/Entities/nobody-0000/Factors"
    assert body["message"] == f"The requested resource {requested} was not found"


def test_create_passkeys_factor_under_entity_is_60369(api: Api) -> None:
    api.create_service()
    api.post_form(f"{api.svc}/Entities", {"Identity": "user-0001"})
    before = api.snapshot()

    r = api.post_form(
        f"{entity_url(api, 'user-0001')}/Factors",
        {"FactorType": "passkeys", "FriendlyName": "laptop"},
    )

    body = assert_twilio_error(r, 400, 60369)
    assert "/Passkeys/Factors" in body["message"]
    assert api.snapshot() == before


# --- challenges under an entity -----------------------------------------------------------


@pytest.fixture
def two_challenges(api: Api) -> dict[str, Any]:
    """user-0001 with one approved and one pending challenge."""
    api.create_service()
    factor = api.register("user-0001")
    first = api.challenge(identity="user-0001")
    second = api.challenge(identity="user-0001")
    r = api.approve(api.authenticator.get(first["options"], ORIGIN))
    assert r.status_code == 200, r.text
    return {"factor": factor, "approved": first, "pending": second}


def list_challenges(api: Api, query: str = "") -> list[dict[str, Any]]:
    r = api.get(f"{entity_url(api, 'user-0001')}/Challenges{query}")
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["key"] == "challenges"
    return r.json()["challenges"]


def test_list_challenges(api: Api, two_challenges: dict[str, Any]) -> None:
    approved, pending = two_challenges["approved"], two_challenges["pending"]

    listed = list_challenges(api)

    assert [c["sid"] for c in listed] == [approved["sid"], pending["sid"]]
    assert all(CHALLENGE_SID.match(c["sid"]) for c in listed)
    assert [c["status"] for c in listed] == ["approved", "pending"]
    for c in listed:
        assert c["factor_type"] == "passkeys"
        assert c["identity"] == "user-0001"
        assert c["entity_sid"] == two_challenges["factor"]["entity_sid"]
        assert "options" not in c


def test_list_challenges_filtered_by_status(api: Api, two_challenges: dict[str, Any]) -> None:
    approved, pending = two_challenges["approved"], two_challenges["pending"]

    assert [c["sid"] for c in list_challenges(api, "?Status=approved")] == [approved["sid"]]
    assert [c["sid"] for c in list_challenges(api, "?Status=pending")] == [pending["sid"]]
    assert list_challenges(api, "?Status=expired") == []
    assert list_challenges(api, "?Status=denied") == []


def test_list_challenges_filtered_by_factor(api: Api, two_challenges: dict[str, Any]) -> None:
    factor = two_challenges["factor"]
    approved = two_challenges["approved"]
    named = api.challenge(identity="user-0001", factor_sid=factor["sid"])

    listed = list_challenges(api, f"?FactorSid={factor['sid']}")

    # The approved one learned its factor; the one named at creation carries it too.
    assert [c["sid"] for c in listed] == [approved["sid"], named["sid"]]
    assert all(c["factor_sid"] == factor["sid"] for c in listed)
    assert list_challenges(api, "?FactorSid=YF" + "0" * 32) == []


def test_list_challenges_in_descending_order(api: Api, two_challenges: dict[str, Any]) -> None:
    approved, pending = two_challenges["approved"], two_challenges["pending"]

    desc = list_challenges(api, "?Order=desc")
    asc = list_challenges(api, "?Order=asc")

    assert [c["sid"] for c in desc] == [pending["sid"], approved["sid"]]
    assert [c["sid"] for c in asc] == [approved["sid"], pending["sid"]]


def test_list_challenges_paginates_keeping_filters(api: Api) -> None:
    api.create_service()
    api.register("user-0001")
    sids = [api.challenge(identity="user-0001")["sid"] for _ in range(3)]
    first = api.challenge(identity="user-0001")
    assert api.approve(api.authenticator.get(first["options"], ORIGIN)).status_code == 200

    seen: list[str] = []
    url: str | None = (
        f"{entity_url(api, 'user-0001')}/Challenges?Status=pending&Order=desc&PageSize=1"
    )
    while url is not None:
        body = api.get(url).json()
        assert len(body["challenges"]) <= 1
        assert all(c["status"] == "pending" for c in body["challenges"])
        seen.extend(c["sid"] for c in body["challenges"])
        url = body["meta"]["next_page_url"]
        if url is not None:
            assert "Status=pending" in url and "Order=desc" in url
        assert len(seen) <= 4

    assert seen == list(reversed(sids))
    back: list[str] = []
    while body["meta"]["previous_page_url"] is not None:
        assert "Status=pending" in body["meta"]["previous_page_url"]
        body = api.get(body["meta"]["previous_page_url"]).json()
        back.extend(c["sid"] for c in body["challenges"])
    assert back == sids[1:]  # back from the last page (the oldest) to the first (the newest)


def test_fetch_challenge(api: Api, two_challenges: dict[str, Any]) -> None:
    approved, pending = two_challenges["approved"], two_challenges["pending"]
    factor = two_challenges["factor"]
    base_url = f"{BASE}{entity_url(api, 'user-0001')}/Challenges"

    r = api.get(f"{entity_url(api, 'user-0001')}/Challenges/{approved['sid']}")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sid"] == approved["sid"]
    assert body["status"] == "approved"
    assert body["responded_reason"] == "none"
    assert body["factor_sid"] == factor["sid"]
    assert body["entity_sid"] == factor["entity_sid"]
    assert body["identity"] == "user-0001"
    assert body["account_sid"] == api.account_sid
    assert body["service_sid"] == api.service_sid
    assert body["factor_type"] == "passkeys"
    assert DATE.match(body["date_created"])
    assert DATE.match(body["date_responded"])
    assert DATE.match(body["expiration_date"])
    created_at = datetime.strptime(body["date_created"], "%Y-%m-%dT%H:%M:%SZ")
    expires_at = datetime.strptime(body["expiration_date"], "%Y-%m-%dT%H:%M:%SZ")
    assert expires_at - created_at == timedelta(seconds=600)
    assert body["url"] == f"{base_url}/{approved['sid']}"
    assert body["links"] == {"notifications": f"{base_url}/{approved['sid']}/Notifications"}
    assert "options" not in body

    r = api.get(f"{entity_url(api, 'user-0001')}/Challenges/{pending['sid']}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "pending"
    assert body["date_responded"] is None
    assert body["url"] == f"{base_url}/{pending['sid']}"
    assert "options" not in body
    assert body in list_challenges(api)


def test_pending_challenge_expires(
    api: Api, clock: FakeClock, two_challenges: dict[str, Any]
) -> None:
    approved, pending = two_challenges["approved"], two_challenges["pending"]
    url = f"{entity_url(api, 'user-0001')}/Challenges/{pending['sid']}"

    clock.advance(599)
    assert api.get(url).json()["status"] == "pending"
    clock.advance(2)

    assert api.get(url).json()["status"] == "expired"
    statuses = {c["sid"]: c["status"] for c in list_challenges(api)}
    assert statuses == {approved["sid"]: "approved", pending["sid"]: "expired"}
    assert [c["sid"] for c in list_challenges(api, "?Status=expired")] == [pending["sid"]]
    assert list_challenges(api, "?Status=pending") == []
    assert [c["sid"] for c in list_challenges(api, "?Status=approved")] == [approved["sid"]]
    # And it can no longer be approved.
    assertion = api.authenticator.get(pending["options"], ORIGIN)
    assert_twilio_error(api.approve(assertion), 403, 60323)


@pytest.mark.parametrize(
    "query", ["?Status=bogus", "?Status=PENDING", "?Order=sideways", "?FactorSid=not-a-sid"]
)
def test_list_challenges_with_invalid_filter_is_60306(
    api: Api, two_challenges: dict[str, Any], query: str
) -> None:
    r = api.get(f"{entity_url(api, 'user-0001')}/Challenges{query}")

    assert_twilio_error(r, 400, 60306)


def test_challenge_under_another_identitys_url_is_404(
    api: Api, two_challenges: dict[str, Any]
) -> None:
    api.register("user-0002")
    sid = two_challenges["approved"]["sid"]

    assert_twilio_error(api.get(f"{entity_url(api, 'user-0002')}/Challenges/{sid}"), 404, 20404)
    assert list_challenges_of(api, "user-0002") == []


def list_challenges_of(api: Api, identity: str) -> list[dict[str, Any]]:
    r = api.get(f"{entity_url(api, identity)}/Challenges")
    assert r.status_code == 200, r.text
    return r.json()["challenges"]


def test_challenge_of_another_service_is_404(api: Api, two_challenges: dict[str, Any]) -> None:
    sid = two_challenges["approved"]["sid"]
    api.create_service()
    api.register("user-0001")

    assert_twilio_error(api.get(f"{entity_url(api, 'user-0001')}/Challenges/{sid}"), 404, 20404)
    assert list_challenges(api) == []


def test_unknown_challenge_is_404(api: Api, two_challenges: dict[str, Any]) -> None:
    url = f"{entity_url(api, 'user-0001')}/Challenges/YC" + "0" * 32

    assert_twilio_error(api.get(url), 404, 20404)


def test_challenges_of_unknown_entity_is_404(api: Api) -> None:
    api.create_service()

    body = assert_twilio_error(api.get(f"{entity_url(api, 'nobody-0000')}/Challenges"), 404, 20404)
    # Named as requested (it named the entity alone; found by the compatibility review).
    requested = f"/Services/{api.service_sid}/Entities/nobody-0000/Challenges"
    assert body["message"] == f"The requested resource {requested} was not found"


# --- tenant isolation ---------------------------------------------------------------------


def test_other_account_gets_404_on_every_entity_url(
    api: Api, other_api: Api, two_challenges: dict[str, Any]
) -> None:
    other_api.create_service()  # the other account has a service of its own
    factor = two_challenges["factor"]
    challenge = two_challenges["approved"]
    entity = entity_url(api, "user-0001")
    before = api.snapshot()

    calls = [
        ("POST", f"{api.svc}/Entities", {"Identity": "user-0009"}),
        ("GET", f"{api.svc}/Entities", None),
        ("GET", entity, None),
        ("DELETE", entity, None),
        ("GET", f"{entity}/Factors", None),
        ("POST", f"{entity}/Factors", {"FactorType": "passkeys", "FriendlyName": "x"}),
        ("GET", f"{entity}/Factors/{factor['sid']}", None),
        ("POST", f"{entity}/Factors/{factor['sid']}", {"FriendlyName": "stolen"}),
        ("DELETE", f"{entity}/Factors/{factor['sid']}", None),
        ("GET", f"{entity}/Challenges", None),
        ("GET", f"{entity}/Challenges?Status=approved", None),
        ("GET", f"{entity}/Challenges/{challenge['sid']}", None),
    ]
    for method, url, form in calls:
        if method == "GET":
            r = other_api.get(url)
        elif method == "DELETE":
            r = other_api.delete(url)
        else:
            r = other_api.post_form(url, form)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["code"] == 20404, (method, url, r.text)

    assert api.snapshot() == before
    assert list_challenges(api) != []
    assert sign_in(api, "user-0001").status_code == 200


def test_other_account_cannot_reach_entities_through_its_own_service(
    api: Api, other_api: Api
) -> None:
    """Same identity in another account's service is a different entity."""
    api.create_service()
    mine = api.register("user-0001")
    other_api.create_service()

    assert_twilio_error(other_api.get(f"{other_api.svc}/Entities/user-0001"), 404, 20404)
    r = other_api.post_form(f"{other_api.svc}/Entities", {"Identity": "user-0001"})
    assert r.status_code == 201, r.text
    assert r.json()["sid"] != mine["entity_sid"]
    assert other_api.get(f"{other_api.svc}/Entities/user-0001/Factors").json()["factors"] == []
    assert_twilio_error(
        other_api.get(f"{other_api.svc}/Entities/user-0001/Factors/{mine['sid']}"), 404, 20404
    )
