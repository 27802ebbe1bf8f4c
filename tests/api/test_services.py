"""Services over HTTP (form-encoded): create, fetch, list, update, delete, auth, routing."""

from __future__ import annotations

import re
from typing import Any

import pytest

from passkeyd.domain import Domain
from passkeyd.domain.policy import MAX_AAGUIDS, MAX_NAME_LENGTH, MAX_ORIGIN_LENGTH, MAX_ORIGINS
from tests.conftest import ORIGIN, Api, FakeClock

SERVICE_SID = re.compile(r"^VA[0-9a-f]{32}$")
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
BASE = "http://testserver"

FULL_FORM = {
    "FriendlyName": "My passkeys",
    "Passkeys.RelyingParty.Id": "example.com",
    "Passkeys.RelyingParty.Name": "Example",
    "Passkeys.RelyingParty.Origins": "https://example.com,https://www.example.com",
    "Passkeys.AuthenticatorAttachment": "platform",
    "Passkeys.DiscoverableCredentials": "preferred",
    "Passkeys.UserVerification": "required",
}


def assert_twilio_error(r: Any, status: int, code: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str) and body["message"]
    assert "type" not in body and "title" not in body  # would make the SDK raise another class
    return body


def make_services(api: Api, count: int) -> list[str]:
    sids = []
    for i in range(count):
        r = api.post_form("/v2/Services", {"FriendlyName": f"svc {i}"})
        assert r.status_code == 201, r.text
        sids.append(r.json()["sid"])
    return sids


# --- create -------------------------------------------------------------------------------


def test_create_service_with_friendly_name_and_csv_origins(api: Api) -> None:
    r = api.post_form("/v2/Services", FULL_FORM)

    assert r.status_code == 201, r.text
    body = r.json()
    sid = body["sid"]
    assert SERVICE_SID.match(sid)
    assert body["account_sid"] == api.account_sid
    assert body["friendly_name"] == "My passkeys"
    assert body["passkeys"] == {
        "relying_party": {
            "id": "example.com",
            "name": "Example",
            "origins": ["https://example.com", "https://www.example.com"],
        },
        "authenticator_attachment": "platform",
        "discoverable_credentials": "preferred",
        "user_verification": "required",
    }
    assert DATE.match(body["date_created"]) and DATE.match(body["date_updated"])
    assert body["date_created"] == body["date_updated"]
    url = f"{BASE}/v2/Services/{sid}"
    assert body["url"] == url
    assert body["links"] == {
        "verification_checks": f"{url}/VerificationCheck",
        "verifications": f"{url}/Verifications",
        "rate_limits": f"{url}/RateLimits",
        "messaging_configurations": f"{url}/MessagingConfigurations",
        "entities": f"{url}/Entities",
        "webhooks": f"{url}/Webhooks",
        "access_tokens": f"{url}/AccessTokens",
    }


def test_create_service_has_default_verify_fields(api: Api) -> None:
    body = api.create_service()

    assert body["code_length"] == 6
    assert body["lookup_enabled"] is False
    assert body["psd2_enabled"] is False
    assert body["skip_sms_to_landlines"] is False
    assert body["dtmf_input_required"] is False
    assert body["tts_name"] is None
    assert body["do_not_share_warning_enabled"] is False
    assert body["custom_code_enabled"] is False
    assert body["default_template_sid"] is None
    assert body["verify_event_subscription_enabled"] is False
    assert body["push"] == {
        "include_date": False,
        "apn_credential_sid": None,
        "fcm_credential_sid": None,
    }
    assert body["totp"] == {"issuer": None, "time_step": 30, "code_length": 6, "skew": 1}
    assert body["whatsapp"] == {"msg_service_sid": None, "from": None}


def test_create_service_with_name_instead_of_friendly_name(api: Api) -> None:
    """The quickstart's curl example sends `Name=`."""
    form = {k: v for k, v in FULL_FORM.items() if k != "FriendlyName"}
    form["Name"] = "Seed service"

    r = api.post_form("/v2/Services", form)

    assert r.status_code == 201, r.text
    assert r.json()["friendly_name"] == "Seed service"
    fetched = api.get(f"/v2/Services/{r.json()['sid']}").json()
    assert fetched["friendly_name"] == "Seed service"


def test_create_service_with_repeated_origin_keys(api: Api) -> None:
    form: dict[str, Any] = dict(FULL_FORM)
    form["Passkeys.RelyingParty.Origins"] = ["https://example.com", "https://login.example.com"]

    r = api.post_form("/v2/Services", form)

    assert r.status_code == 201, r.text
    assert r.json()["passkeys"]["relying_party"]["origins"] == [
        "https://example.com",
        "https://login.example.com",
    ]


def test_create_service_trims_and_drops_empty_csv_origins(api: Api) -> None:
    form = dict(FULL_FORM, **{"Passkeys.RelyingParty.Origins": " https://a.example.com , ,x.io"})

    r = api.post_form("/v2/Services", form)

    assert r.status_code == 201, r.text
    assert r.json()["passkeys"]["relying_party"]["origins"] == ["https://a.example.com", "x.io"]


def test_create_service_without_passkeys_has_null_leaves(api: Api) -> None:
    r = api.post_form("/v2/Services", {"FriendlyName": "Plain"})

    assert r.status_code == 201, r.text
    expected = {
        "relying_party": {"id": None, "name": None, "origins": None},
        "authenticator_attachment": None,
        "discoverable_credentials": None,
        "user_verification": None,
    }
    assert r.json()["passkeys"] == expected
    assert api.get(f"/v2/Services/{r.json()['sid']}").json()["passkeys"] == expected


def test_create_service_echoes_empty_passkey_strings(api: Api) -> None:
    """An empty string the client set is echoed as "" (unset leaves stay null)."""
    r = api.post_form(
        "/v2/Services", {"FriendlyName": "Empty", "Passkeys.AuthenticatorAttachment": ""}
    )

    assert r.status_code == 201, r.text
    passkeys = r.json()["passkeys"]
    assert passkeys["authenticator_attachment"] == ""
    assert passkeys["discoverable_credentials"] is None
    assert passkeys["relying_party"]["id"] is None


def test_create_service_returns_settings_it_was_given(api: Api) -> None:
    form = {
        "FriendlyName": "Configured",
        "CodeLength": "8",
        "LookupEnabled": "true",
        "Totp.Issuer": "Acme",
        "Push.IncludeDate": "true",
    }

    r = api.post_form("/v2/Services", form)

    assert r.status_code == 201, r.text
    body = r.json()
    assert body["code_length"] == 8
    assert body["lookup_enabled"] is True
    assert body["totp"]["issuer"] == "Acme"
    assert body["totp"]["time_step"] == 30  # untouched defaults survive a nested change
    assert body["push"]["include_date"] is True


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Passkeys.AuthenticatorAttachment", "sideways"),
        ("Passkeys.UserVerification", "maybe"),
        ("Passkeys.DiscoverableCredentials", "sometimes"),
        ("CodeLength", "abc"),
        ("CodeLength", " 5 "),
        ("CodeLength", "\u0665"),  # ARABIC-INDIC DIGIT FIVE, which int() reads as 5
        ("CodeLength", "9" * 5000),  # over int()'s digit limit: a ValueError
        ("LookupEnabled", "perhaps"),
        ("DefaultTemplateSid", "0" * 34),  # the spec's pattern is ^HJ[0-9a-fA-F]{32}$
        ("Push.ApnCredentialSid", "HJ" + "a" * 32),
        ("Push.FcmCredentialSid", "CR" + "a" * 33),
        ("Whatsapp.MsgServiceSid", "x"),
    ],
)
def test_create_service_refuses_invalid_value(api: Api, key: str, value: str) -> None:
    before = api.snapshot()

    r = api.post_form("/v2/Services", dict(FULL_FORM, **{key: value}))

    assert_twilio_error(r, 400, 60200)
    assert api.snapshot() == before
    assert api.get("/v2/Services").json()["services"] == []


@pytest.mark.parametrize(
    "rp_id",
    [
        "https://example.com",
        "example.com:8443",
        "example.com/login",
        # IP addresses, which browsers refuse as an RP id: to the URL parser, a host whose
        # last label is a number is an IPv4 address.
        "127.0.0.1",
        "10.1",
        "example.0x7f",
        # A final newline (a `$` anchor took it; the options then named an RP id no browser
        # takes, and every registration failed: found by the bad-input review).
        "example.com\n",
    ],
)
def test_create_service_refuses_an_rp_id_that_is_not_a_domain(api: Api, rp_id: str) -> None:
    before = api.snapshot()

    r = api.post_form("/v2/Services", dict(FULL_FORM, **{"Passkeys.RelyingParty.Id": rp_id}))

    assert_twilio_error(r, 400, 60372)
    assert api.snapshot() == before


@pytest.mark.parametrize("form", [{}, {"FriendlyName": ""}, {"FriendlyName": "   "}])
def test_create_service_requires_friendly_name(api: Api, form: dict[str, str]) -> None:
    before = api.snapshot()

    r = api.post_form("/v2/Services", {**form, "Passkeys.RelyingParty.Id": "example.com"})

    assert_twilio_error(r, 400, 60200)
    assert api.snapshot() == before


# --- fetch and list -----------------------------------------------------------------------


def test_fetch_service(api: Api) -> None:
    created = api.create_service()

    r = api.get(api.svc)

    assert r.status_code == 200, r.text
    assert r.json() == created


def test_fetch_unknown_service_is_404(api: Api) -> None:
    r = api.get("/v2/Services/VA" + "0" * 32)

    body = assert_twilio_error(r, 404, 20404)
    assert "VA" + "0" * 32 in body["message"]


def test_list_services(api: Api) -> None:
    sids = make_services(api, 3)

    r = api.get("/v2/Services")

    assert r.status_code == 200, r.text
    body = r.json()
    assert [s["sid"] for s in body["services"]] == sids
    assert body["services"][0]["friendly_name"] == "svc 0"
    meta = body["meta"]
    assert meta["key"] == "services"
    assert meta["page"] == 0
    assert meta["page_size"] == 50
    assert meta["first_page_url"] == f"{BASE}/v2/Services?PageSize=50&Page=0"
    assert meta["url"] == f"{BASE}/v2/Services?PageSize=50&Page=0"
    assert meta["next_page_url"] is None
    assert meta["previous_page_url"] is None


def test_list_services_when_there_are_none(api: Api) -> None:
    r = api.get("/v2/Services")

    assert r.status_code == 200, r.text
    assert r.json()["services"] == []
    assert r.json()["meta"]["next_page_url"] is None


def test_list_services_tolerates_form_content_type_on_get(api: Api) -> None:
    """The SDK sends a form Content-Type with an empty body on a first-page GET."""
    sids = make_services(api, 1)

    r = api.get("/v2/Services", headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert r.status_code == 200, r.text
    assert [s["sid"] for s in r.json()["services"]] == sids


def test_list_services_paginates_with_absolute_next_page_urls(api: Api) -> None:
    sids = make_services(api, 5)

    seen: list[str] = []
    pages = []
    url: str | None = "/v2/Services?PageSize=2"
    while url is not None:
        r = api.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["meta"]["key"] == "services"
        assert body["meta"]["page_size"] == 2
        assert body["meta"]["first_page_url"] == f"{BASE}/v2/Services?PageSize=2&Page=0"
        if pages:
            assert body["meta"]["url"] == url  # a page names itself as it was reached
        pages.append(body["meta"]["page"])
        seen.extend(s["sid"] for s in body["services"])
        url = body["meta"]["next_page_url"]
        if url is not None:
            assert url.startswith(f"{BASE}/v2/Services?")
        assert len(pages) <= 5, "pagination does not end"

    assert seen == sids
    assert len(set(seen)) == 5
    assert pages == [0, 1, 2]


def test_list_services_page_size_exactly_fills_last_page(api: Api) -> None:
    sids = make_services(api, 4)

    first = api.get("/v2/Services?PageSize=2").json()
    second = api.get(first["meta"]["next_page_url"]).json()

    assert [s["sid"] for s in first["services"] + second["services"]] == sids
    # Four records in pages of two: the second page is the last, with no empty third page.
    assert second["meta"]["next_page_url"] is None


@pytest.mark.parametrize("size", ["0", "-1", "abc", "1.5"])
def test_list_services_invalid_page_size(api: Api, size: str) -> None:
    make_services(api, 1)

    r = api.get(f"/v2/Services?PageSize={size}")

    assert_twilio_error(r, 400, 60373)


def test_list_services_page_size_above_1000_is_clamped(api: Api) -> None:
    sids = make_services(api, 2)

    r = api.get("/v2/Services?PageSize=5000")

    assert r.status_code == 200, r.text
    assert r.json()["meta"]["page_size"] == 1000
    assert [s["sid"] for s in r.json()["services"]] == sids


@pytest.mark.parametrize(
    "token", ["garbage", "PTabc", "PT", "PT-1", "PT1%0A", "PT" + "A" * 22, "PT" + "A" * 23]
)
def test_list_services_invalid_page_token(api: Api, token: str) -> None:
    make_services(api, 1)

    r = api.get(f"/v2/Services?PageSize=2&Page=1&PageToken={token}")

    assert_twilio_error(r, 400, 60374)


# --- update -------------------------------------------------------------------------------


def test_update_is_partial(api: Api, clock: FakeClock) -> None:
    created = api.create_service()
    clock.advance(90)

    r = api.post_form(api.svc, {"Passkeys.UserVerification": "required"})

    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["passkeys"]["user_verification"] == "required"
    assert updated["date_updated"] != created["date_updated"]
    assert DATE.match(updated["date_updated"])
    assert updated["date_created"] == created["date_created"]
    # Everything else is exactly as before.
    changed = {"passkeys", "date_updated"}
    assert {k: v for k, v in updated.items() if k not in changed} == {
        k: v for k, v in created.items() if k not in changed
    }
    assert {k: v for k, v in updated["passkeys"].items() if k != "user_verification"} == {
        k: v for k, v in created["passkeys"].items() if k != "user_verification"
    }
    fetched = api.get(api.svc).json()
    assert fetched["passkeys"] == {
        "relying_party": {"id": "example.com", "name": "Example", "origins": [ORIGIN]},
        "authenticator_attachment": "platform",
        "discoverable_credentials": "preferred",
        "user_verification": "required",
    }


def test_update_friendly_name_only(api: Api, clock: FakeClock) -> None:
    created = api.create_service()
    clock.advance(5)

    r = api.post_form(api.svc, {"FriendlyName": "Renamed"})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["friendly_name"] == "Renamed"
    assert body["passkeys"] == created["passkeys"]
    assert body["code_length"] == created["code_length"]
    assert body["date_updated"] != created["date_updated"]
    assert api.get(api.svc).json()["friendly_name"] == "Renamed"


def test_update_origins_replaces_the_list(api: Api) -> None:
    api.create_service()

    r = api.post_form(api.svc, {"Passkeys.RelyingParty.Origins": "https://a.example.com"})

    assert r.status_code == 200, r.text
    assert r.json()["passkeys"]["relying_party"] == {
        "id": "example.com",
        "name": "Example",
        "origins": ["https://a.example.com"],
    }


def test_update_with_invalid_value_changes_nothing(api: Api) -> None:
    api.create_service()
    before = api.snapshot()

    r = api.post_form(
        api.svc, {"FriendlyName": "New name", "Passkeys.AuthenticatorAttachment": "sideways"}
    )

    assert_twilio_error(r, 400, 60200)
    assert api.snapshot() == before
    assert api.get(api.svc).json()["friendly_name"] == "Test service"


def test_update_unknown_service_is_404(api: Api) -> None:
    r = api.post_form("/v2/Services/VA" + "1" * 32, {"FriendlyName": "x"})

    assert_twilio_error(r, 404, 20404)


# --- delete -------------------------------------------------------------------------------


def test_delete_service(api: Api) -> None:
    api.create_service()

    r = api.delete(api.svc)

    assert r.status_code == 204
    assert r.content == b""
    assert_twilio_error(api.get(api.svc), 404, 20404)
    assert api.get("/v2/Services").json()["services"] == []
    assert_twilio_error(api.delete(api.svc), 404, 20404)


def test_delete_service_removes_its_entities_factors_and_challenges(api: Api) -> None:
    api.create_service()
    api.register("user-0001")
    api.challenge(identity="user-0001")
    keep = Api(api.client, api.db_path, api.account_sid, api.auth)
    keep.create_service()
    keep.register("user-0002")
    keep.challenge(identity="user-0002")
    before = api.snapshot()
    assert any(row for row in before["factors"] if api.service_sid in row)

    r = api.delete(api.svc)

    assert r.status_code == 204
    after = api.snapshot()
    for table in ("entities", "factors", "challenges"):
        assert not [row for row in after[table] if api.service_sid in row], table
        assert [row for row in after[table] if keep.service_sid in row], table
    assert_twilio_error(api.get(f"{api.svc}/Entities"), 404, 20404)
    assert_twilio_error(api.get(f"{api.svc}/Entities/user-0001/Factors"), 404, 20404)
    # The other service is untouched.
    assert len(keep.get(f"{keep.svc}/Entities/user-0002/Factors").json()["factors"]) == 1


# --- auth and tenancy ---------------------------------------------------------------------


def test_missing_authorization_is_401(api: Api) -> None:
    api.create_service()
    before = api.snapshot()

    for r in (
        api.client.get("/v2/Services"),
        api.client.get(api.svc),
        api.client.post("/v2/Services", data={"FriendlyName": "x"}),
        api.client.post(api.svc, data={"FriendlyName": "x"}),
        api.client.delete(api.svc),
    ):
        assert_twilio_error(r, 401, 20003)
    assert api.snapshot() == before


@pytest.mark.parametrize(
    "auth",
    [
        ("wrong", "token"),
        ("AC" + "0" * 32, "token"),
        ("SK" + "0" * 32, "secret"),
    ],
)
def test_bad_credentials_are_401(api: Api, auth: tuple[str, str]) -> None:
    r = api.get("/v2/Services", auth=auth)

    assert_twilio_error(r, 401, 20003)


@pytest.mark.parametrize(
    "header",
    [b"Basic \xe9\xe9\xe9\xe9", b"Basic", b"Basic !!!", b"Basic dXNlcg==", b"Bearer abc"],
)
def test_malformed_authorization_headers_are_401(api: Api, header: bytes) -> None:
    """Not a 500: a credential that is not base64 ASCII (a byte over 127 included) is
    refused like any other."""
    r = api.client.get("/v2/Services", headers={"Authorization": header})

    assert_twilio_error(r, 401, 20003)


def test_an_unknown_user_with_the_password_checked_in_its_place_is_401(
    api: Api, domain: Domain
) -> None:
    """An unknown user name (or a revoked key) is checked against the hash of a constant
    password, so that it costs what a known one does: that password must not let it in."""
    api.create_service()
    revoked, secret = domain.accounts.create_api_key(api.account_sid)
    assert api.get(api.svc, auth=(revoked.sid, secret)).status_code == 200
    assert domain.store.revoke_api_key(api.account_sid, revoked.sid)
    dummy = "passkeyd: no such user"  # accounts._DUMMY_HASH is its SHA-256
    before = api.snapshot()
    for user in ("AC" + "0" * 32, "SK" + "0" * 32, revoked.sid, "nobody", ""):
        for r in (
            api.get("/v2/Services", auth=(user, dummy)),
            api.get(api.svc, auth=(user, dummy)),
            api.post_json(f"{api.svc}/Passkeys/Challenges", {}, auth=(user, dummy)),
        ):
            assert_twilio_error(r, 401, 20003)
    assert api.snapshot() == before


def test_valid_credentials_under_another_scheme_than_basic_are_401(api: Api) -> None:
    """Only `Basic` carries credentials: the same base64 `sid:token` after `Bearer` (or
    any other word) is refused, not read as Basic."""
    import base64

    api.create_service()
    encoded = base64.b64encode(":".join(api.auth).encode()).decode()
    assert api.client.get(api.svc, headers={"Authorization": f"Basic {encoded}"}).is_success
    assert api.client.get(api.svc, headers={"Authorization": f"basic {encoded}"}).is_success
    before = api.snapshot()
    for scheme in ("Bearer", "Token", "Digest", "Basicx"):
        headers = {"Authorization": f"{scheme} {encoded}"}
        for r in (
            api.client.get("/v2/Services", headers=headers),
            api.client.get(api.svc, headers=headers),
            api.client.post(api.svc, data={"FriendlyName": "renamed"}, headers=headers),
        ):
            assert_twilio_error(r, 401, 20003)
    assert api.snapshot() == before


def test_wrong_token_is_401(api: Api) -> None:
    api.create_service()
    before = api.snapshot()

    assert_twilio_error(api.get(api.svc, auth=(api.account_sid, "not-the-token")), 401, 20003)
    assert_twilio_error(
        api.post_form("/v2/Services", {"FriendlyName": "x"}, auth=(api.account_sid, "nope")),
        401,
        20003,
    )
    assert_twilio_error(api.delete(api.svc, auth=(api.account_sid, "")), 401, 20003)
    assert api.snapshot() == before


def test_malformed_authorization_header_is_401(api: Api) -> None:
    for header in ("Bearer abc", "Basic", "Basic !!!notbase64", "Basic dXNlcm5hbWU="):
        r = api.client.get("/v2/Services", headers={"Authorization": header})
        assert_twilio_error(r, 401, 20003)


def test_two_authorization_headers_are_refused_whichever_comes_first(
    api: Api, other_api: Api
) -> None:
    """Which credential counted depended on which header a proxy put first: the first one."""
    import base64

    def basic(auth: tuple[str, str]) -> str:
        return "Basic " + base64.b64encode(":".join(auth).encode()).decode()

    api.create_service()
    before = api.snapshot()
    for pair in ((api.auth, other_api.auth), (other_api.auth, api.auth), (api.auth, api.auth)):
        headers = [("Authorization", basic(auth)) for auth in pair]
        for r in (
            api.client.get("/v2/Services", headers=headers),
            api.client.post(api.svc, data={"FriendlyName": "renamed"}, headers=headers),
        ):
            assert_twilio_error(r, 400, 60200)
            assert "two Authorization headers" in r.json()["message"]
    assert api.snapshot() == before


def test_other_account_cannot_see_or_touch_the_service(api: Api, other_api: Api) -> None:
    created = api.create_service()
    api.register("user-0001")
    before = api.snapshot()

    assert_twilio_error(other_api.get(api.svc), 404, 20404)
    assert_twilio_error(
        other_api.post_form(
            api.svc, {"FriendlyName": "hijacked", "Passkeys.RelyingParty.Id": "evil.com"}
        ),
        404,
        20404,
    )
    assert_twilio_error(other_api.delete(api.svc), 404, 20404)
    assert other_api.get("/v2/Services").json()["services"] == []

    assert api.snapshot() == before
    assert api.get(api.svc).json() == created


def test_list_shows_only_the_callers_services(api: Api, other_api: Api) -> None:
    mine = make_services(api, 2)
    theirs = make_services(other_api, 3)

    assert [s["sid"] for s in api.get("/v2/Services").json()["services"]] == mine
    assert [s["sid"] for s in other_api.get("/v2/Services").json()["services"]] == theirs
    # Another account's page token is refused (it was read as a position in this list).
    first = other_api.get("/v2/Services?PageSize=1").json()
    r = api.get(first["meta"]["next_page_url"])
    assert_twilio_error(r, 400, 60374)
    assert "not one this list gave" in r.json()["message"]


def test_page_tokens_tell_nothing_and_hold_only_for_their_list(api: Api, other_api: Api) -> None:
    """A token was the record's sequence number, which every account shares: one account
    could count another's records (sign-ins among them) between two of its own pages."""
    from urllib.parse import parse_qs, urlsplit

    def token(url: str) -> str:
        return parse_qs(urlsplit(url).query)["PageToken"][0]

    mine = make_services(api, 3)
    page = api.get("/v2/Services?PageSize=1").json()
    tokens = [token(page["meta"]["next_page_url"])]
    make_services(other_api, 5)  # the other account's activity in between
    page = api.get(page["meta"]["next_page_url"]).json()
    assert [s["sid"] for s in page["services"]] == mine[1:2]
    tokens += [token(page["meta"]["next_page_url"]), token(page["meta"]["previous_page_url"])]
    for t in tokens:
        assert re.fullmatch(r"P[TB][A-Za-z0-9_-]{22}", t), t
    # Two tokens for neighbouring records share nothing a reader could count with.
    assert len(set(tokens[0][2:]) & set(tokens[1][2:])) < 16
    # The last page, then back: the same list, as before.
    last = api.get(page["meta"]["next_page_url"]).json()
    assert [s["sid"] for s in last["services"]] == mine[2:]
    back = api.get(last["meta"]["previous_page_url"]).json()
    assert [s["sid"] for s in back["services"]] == mine[1:2]
    # Elsewhere, each is refused: another list of the same account, the other direction,
    # another account, a position written in the clear (as tokens were).
    api.service_sid = mine[0]
    for path, t in (
        (f"{api.svc}/Entities", tokens[0]),
        ("/v2/Services", "PB" + tokens[0][2:]),
        ("/v2/Services", "PT1"),
    ):
        assert_twilio_error(api.get(f"{path}?PageToken={t}"), 400, 60374)
    r = other_api.get(f"/v2/Services?PageToken={tokens[0]}")
    assert_twilio_error(r, 400, 60374)


# --- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/v2/Nothing", "/Nothing"),
        ("/v1/Services", "/v1/Services"),
        ("/v2/Services/VA" + "a" * 32 + "/Nope", "/Services/VA" + "a" * 32 + "/Nope"),
    ],
)
def test_unknown_route_is_twilio_404(api: Api, path: str, named: str) -> None:
    """Named as Twilio names it (and as passkeyd's other 404s do): without `/v2`."""
    r = api.get(path)

    body = assert_twilio_error(r, 404, 20404)
    assert body["message"] == f"The requested resource {named} was not found"


def test_wrong_method_is_405(api: Api) -> None:
    api.create_service()

    r = api.client.put("/v2/Services", data={"FriendlyName": "x"}, auth=api.auth)
    assert r.status_code == 405, r.text
    assert r.json()["status"] == 405
    assert isinstance(r.json()["code"], int)

    r = api.client.patch(api.svc, data={"FriendlyName": "x"}, auth=api.auth)
    assert r.status_code == 405, r.text
    r = api.client.delete("/v2/Services", auth=api.auth)
    assert r.status_code == 405, r.text


def test_trailing_slash_is_a_twilio_404_not_a_redirect(api):
    r = api.get("/v2/Services/", follow_redirects=False)
    assert (r.status_code, r.json()["code"]) == (404, 20404)


def test_405_names_the_allowed_methods(api):
    r = api.client.put("/v2/Services", auth=api.auth)
    assert r.status_code == 405
    assert "POST" in r.headers["Allow"] and "GET" in r.headers["Allow"]


def test_an_rp_id_is_kept_in_lower_case_as_browsers_take_it(api: Api) -> None:
    """Browsers refuse `Example.COM` in the options, and hash the lower-case id."""
    service = api.create_service(**{"Passkeys.RelyingParty.Id": "Example.COM"})
    assert service["passkeys"]["relying_party"]["id"] == "example.com"
    factor = api.register("user-0001")
    assert factor["status"] == "verified"


@pytest.mark.parametrize(
    ("origins", "why"),
    [
        # A JSON array sent as the form field's text: two "origins" that match nothing.
        ('["https://a.example.com","https://b.example.com"]', "no scheme and host"),
        ("https://example.com:99999", "not a URL"),
        ("https://[::1", "not a URL"),
        ("https://[::g]", "not a URL"),
        ("https://exa'mple.com", "a host a browser would not send"),
        ("https://example.com:0", "port 0"),
        ("http://0x7f.1:3000", "IPv4 address not written as a browser sends it"),
        ("http://127.1", "IPv4 address not written as a browser sends it"),
        ("https://[fe80::1%25eth0]", "zone id"),
        # Typos that were stored and matched nothing (found by a review of the README's
        # claim): every sign-in from the origin meant was refused, and `https//example.com`
        # put `https://https` in the service's /.well-known/webauthn.
        ("https:/example.com", "lacks the // after its scheme"),
        ("HTTPS:example.com", "lacks the // after its scheme"),
        ("https//example.com", "has a path but no scheme"),
        ("example.com/login", "has a path but no scheme"),
        # With a port, such entries were taken for app origins and stored verbatim.
        ("example.com:8443/login", "has a path but no scheme"),
        ("https//example.com:443", "has a path but no scheme"),
        ("ws://example.com", "a scheme no page has"),
    ],
)
def test_origins_that_could_never_match_are_refused(api: Api, origins: str, why: str) -> None:
    before = api.snapshot()
    form = dict(FULL_FORM, **{"Passkeys.RelyingParty.Origins": origins})
    r = api.post_form("/v2/Services", form)
    assert_twilio_error(r, 400, 60200)
    assert why in r.json()["message"]
    r = api.post_form("/v2/Services", dict(FULL_FORM, **{"Passkeys.TopOrigins": origins}))
    assert_twilio_error(r, 400, 60200)
    assert api.snapshot() == before


@pytest.mark.parametrize(
    "origin",
    [
        "https://login.example.com",
        "http://localhost:5173",
        "https://[2001:db8::1]:8443",
        "example.com",
        "android:apk-key-hash:Zm9vYmFy",
        "ios:bundle-id:com.example.app",
        "chrome-extension://abcdefghijklmnop",
        "http://127.0.0.1:3000",
        "https://example.com.",
        "example.com/",
        "localhost:3000",
        "localhost:3000/",
        "example.com:8443/",
        "[::1]:8443",
    ],
)
def test_origins_a_browser_or_app_sends_are_accepted(api: Api, origin: str) -> None:
    r = api.post_form("/v2/Services", dict(FULL_FORM, **{"Passkeys.RelyingParty.Origins": origin}))
    assert r.status_code == 201, r.text


def test_a_value_a_later_release_refuses_does_not_block_other_changes(
    api: Api, domain: Domain
) -> None:
    """A service stored by an earlier release with an origin this one refuses can still be
    renamed (and the origin replaced); only the values given in an update are checked."""
    from dataclasses import replace

    sid = api.create_service()["sid"]
    stored = domain.store.get_service(api.account_sid, sid)
    assert stored is not None
    domain.store.update_service(
        api.account_sid,
        sid,
        lambda s: replace(s, passkeys=replace(s.passkeys, rp_origins=("https://example.com:0",))),
    )
    r = api.post_form(f"/v2/Services/{sid}", {"FriendlyName": "renamed"})
    assert r.status_code == 200, r.text
    r = api.post_form(f"/v2/Services/{sid}", {"Passkeys.RelyingParty.Origins": "https://[::1"})
    assert_twilio_error(r, 400, 60200)
    r = api.post_form(f"/v2/Services/{sid}", {"Passkeys.RelyingParty.Origins": ORIGIN})
    assert r.json()["passkeys"]["relying_party"]["origins"] == [ORIGIN]


def test_a_request_whose_service_is_deleted_before_it_writes_is_404(
    api: Api, domain: Domain
) -> None:
    """Its reads (the service among them) came before the deletion, its write after: it
    answered 201 under a service that no longer existed, leaving rows of no service."""
    from passkeyd.domain.errors import NotFound
    from passkeyd.domain.models import PasskeySettings

    sid = api.create_service()["sid"]
    api.register("user-0001")
    pending = [
        domain.authentications.create_challenge_steps(
            api.account_sid, sid, identity=None, factor_sid=None
        ),
        domain.authentications.create_challenge_steps(
            api.account_sid, sid, identity="user-0001", factor_sid=None
        ),
        domain.registrations.create_factor_steps(
            api.account_sid, sid, friendly_name="a", identity="user-0002", config=PasskeySettings()
        ),
        domain.registrations.create_factor_steps(
            api.account_sid, sid, friendly_name="a", identity="user-0001", config=PasskeySettings()
        ),
    ]
    for steps in pending:
        next(steps)  # everything up to the write
    assert api.delete(f"/v2/Services/{sid}").status_code == 204
    for steps in pending:
        with pytest.raises(NotFound):
            next(steps)
    assert api.snapshot()["entities"] == [] and api.snapshot()["challenges"] == []


@pytest.mark.parametrize("body", [b"FriendlyName=%FF%FE", b"FriendlyName=\xff\xfe"])
def test_a_form_value_that_is_not_utf8_is_refused_escaped_or_not(api, body) -> None:
    """Raw bytes were refused, but percent-escaped ones were stored as U+FFFD."""
    before = api.snapshot()
    r = api.client.post(
        "/v2/Services",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=api.auth,
    )
    assert (r.status_code, r.json()["code"]) == (400, 60200), r.text
    assert "not UTF-8" in r.json()["message"]
    assert api.snapshot() == before


def _many(count: int, make) -> str:
    return ",".join(make(i) for i in range(count))


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("Passkeys.RelyingParty.Name", "n" * (MAX_NAME_LENGTH + 1), "too long"),
        (
            "Passkeys.RelyingParty.Origins",
            _many(MAX_ORIGINS + 1, lambda i: f"https://o{i}.example.com"),
            f"more than {MAX_ORIGINS}",
        ),
        (
            "Passkeys.RelyingParty.Origins",
            "https://" + "a" * MAX_ORIGIN_LENGTH + ".example.com",
            f"longer than {MAX_ORIGIN_LENGTH}",
        ),
        (
            "Passkeys.TopOrigins",
            _many(MAX_ORIGINS + 1, lambda i: f"https://t{i}.example.net"),
            f"more than {MAX_ORIGINS}",
        ),
        (
            "Passkeys.AaguidAllow",
            _many(MAX_AAGUIDS + 1, lambda i: f"{i:08x}-0000-4000-8000-000000000000"),
            f"more than {MAX_AAGUIDS}",
        ),
        (
            "Passkeys.AaguidDeny",
            _many(MAX_AAGUIDS + 1, lambda i: f"{i:08x}-0000-4000-8000-000000000000"),
            f"more than {MAX_AAGUIDS}",
        ),
    ],  # fmt: skip
)
def test_settings_past_their_bounds_are_refused_and_change_nothing(
    api: Api, field: str, value: str, says: str
) -> None:
    """Each bound on what a service stores (it is read at every ceremony) refuses a value
    past it with 60200, naming the setting, on creation and on update alike."""
    r = api.post_form("/v2/Services", dict(FULL_FORM, **{field: value}))
    body = assert_twilio_error(r, 400, 60200)
    assert field in body["message"] and says in body["message"], body["message"]
    sid = api.create_service()["sid"]
    before = api.snapshot()
    body = assert_twilio_error(api.post_form(f"/v2/Services/{sid}", {field: value}), 400, 60200)
    assert says in body["message"]
    assert api.snapshot() == before
