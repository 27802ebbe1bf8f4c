"""The official `twilio` SDK (sync client, unmodified) against a real passkeyd process.

Every request goes over loopback HTTP to the process started by the `server` fixture; the SDK
is pointed at it with `client.verify.base_url`, as in section (g) of the API reference. The
browser side of each ceremony is the software authenticator in `tests/authenticator.py`.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.rest.verify.v2.service import ServiceContext, ServiceInstance
from twilio.rest.verify.v2.service.approve_challenge import (
    ApproveChallengeInstance,
    ApproveChallengeList,
)
from twilio.rest.verify.v2.service.new_challenge import NewChallengeInstance, NewChallengeList
from twilio.rest.verify.v2.service.new_factor import NewFactorInstance, NewFactorList
from twilio.rest.verify.v2.service.new_verify_factor import (
    NewVerifyFactorInstance,
    NewVerifyFactorList,
)

from tests.authenticator import AAGUID, Authenticator, unb64url

if TYPE_CHECKING:
    from tests.e2e.conftest import Server

ORIGIN = "https://example.com"
ORIGINS = ["https://example.com", "https://login.example.com"]
RP_ID = "example.com"
RP_NAME = "My domain"
QUICKSTART_PASSKEYS = {
    "relying_party": {"id": RP_ID, "name": RP_NAME, "origins": ORIGINS},
    "authenticator_attachment": "platform",
    "discoverable_credentials": "preferred",
    "user_verification": "preferred",
}
# A non-empty mapping without TWILIO_EDGE / TWILIO_REGION, so the SDK ignores os.environ
# (an empty dict is falsy and would fall back to it, see section (g) pitfall 1).
ISOLATED_ENV = {"TWILIO_EDGE": "", "TWILIO_REGION": ""}

Connect = Callable[..., Client]
Service = ServiceContext | ServiceInstance


# --- SDK clients -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connect(server: Server) -> Iterator[Connect]:
    """Builds SDK clients aimed at the local server: account token by default, or any creds."""
    sessions = []

    def make(
        username: str | None = None, password: str | None = None, account_sid: str | None = None
    ) -> Client:
        http_client = TwilioHttpClient(timeout=10)
        assert http_client.session is not None
        http_client.session.trust_env = False  # loopback only: no proxies from the environment
        sessions.append(http_client.session)
        client = Client(
            username or server.account_sid,
            password or server.auth_token,
            account_sid,
            http_client=http_client,
            environment=ISOLATED_ENV,
        )
        client.verify.base_url = server.base_url
        return client

    yield make
    for session in sessions:
        session.close()


@pytest.fixture(scope="module")
def client(connect: Connect) -> Client:
    return connect()


@pytest.fixture
def service(client: Client) -> ServiceInstance:
    """A fresh quickstart service for one test."""
    return create_quickstart_service(client)


# --- test data and flows -------------------------------------------------------------------------


def new_identity() -> str:
    """An identity as the quickstart asks for: hyphen-separated hex (a UUID)."""
    return str(uuid.uuid4())


def create_quickstart_service(client: Client, name: str = "Fancy Service") -> ServiceInstance:
    return client.verify.v2.services.create(
        friendly_name=name,
        passkeys_relying_party_id=RP_ID,
        passkeys_relying_party_name=RP_NAME,
        passkeys_relying_party_origins=",".join(ORIGINS),
        passkeys_authenticator_attachment="platform",
        passkeys_discoverable_credentials="preferred",
        passkeys_user_verification="preferred",
    )


def create_factor(service: Service, payload: dict[str, Any]) -> NewFactorInstance:
    return service.new_factors.create(NewFactorList.CreateNewPasskeysFactorRequest(payload))


def verify_factor(service: Service, credential: dict[str, Any]) -> NewVerifyFactorInstance:
    """Sends the browser's credential JSON as it is (the SDK keeps only the spec's keys)."""
    request = NewVerifyFactorList.VerifyPasskeysFactorRequest(credential)
    return service.new_verify_factors.update(request)


def create_challenge(service: Service, payload: dict[str, Any]) -> NewChallengeInstance:
    request = NewChallengeList.CreatePasskeysChallengeRequest(payload)
    return service.new_challenge().create(request)


def approve_challenge(service: Service, assertion: dict[str, Any]) -> ApproveChallengeInstance:
    request = ApproveChallengeList.ApprovePasskeysChallengeRequest(assertion)
    return service.approve_challenge.update(request)


def register(
    service: Service,
    authenticator: Authenticator,
    identity: str | None = None,
    friendly_name: str = "alice",
) -> tuple[NewFactorInstance, NewVerifyFactorInstance]:
    """P1 + browser create() + P2, with the factor's config left to the service."""
    payload: dict[str, Any] = {"friendly_name": friendly_name}
    if identity is not None:
        payload["identity"] = identity
    factor = create_factor(service, payload)
    assert factor.options is not None
    credential = authenticator.create(factor.options, ORIGIN)
    return factor, verify_factor(service, credential)


def sign_in(
    service: Service, authenticator: Authenticator, payload: dict[str, Any], origin: str = ORIGIN
) -> tuple[NewChallengeInstance, dict[str, Any], ApproveChallengeInstance]:
    """P3 + browser get() + P4; returns the challenge, the assertion and the approval."""
    challenge = create_challenge(service, payload)
    assert challenge.options is not None
    assertion = authenticator.get(challenge.options, origin)
    return challenge, assertion, approve_challenge(service, assertion)


def assert_twilio_error(call: Callable[[], Any], status: int, code: int) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as raised:
        call()
    error = raised.value
    assert (error.status, error.code) == (status, code), error.msg
    return error


def is_sid(value: Any, prefix: str) -> bool:
    return isinstance(value, str) and re.fullmatch(prefix + "[0-9a-f]{32}", value) is not None


def credential_ids(options: dict[str, Any]) -> list[str]:
    return [c["id"] for c in options["publicKey"].get("allowCredentials") or []]


# --- the quickstart ------------------------------------------------------------------------------


def test_quickstart_registers_and_approves_a_passkey_unchanged(server: Server, client: Client):
    created = create_quickstart_service(client)
    assert is_sid(created.sid, "VA")
    assert created.account_sid == server.account_sid
    assert created.friendly_name == "Fancy Service"
    assert created.passkeys == QUICKSTART_PASSKEYS
    assert isinstance(created.date_created, datetime)
    assert isinstance(created.date_updated, datetime)
    service = client.verify.v2.services(created.sid)
    identity = new_identity()
    authenticator = Authenticator()

    factor = create_factor(
        service, {"friendly_name": "alice", "identity": identity, "config": QUICKSTART_PASSKEYS}
    )
    assert factor.status == "unverified"
    assert factor.factor_type == "passkeys"
    assert is_sid(factor.sid, "YF") and is_sid(factor.entity_sid, "YE")
    assert (factor.service_sid, factor.account_sid) == (created.sid, server.account_sid)
    assert factor.identity == identity
    assert factor.friendly_name == "alice"
    assert factor.binding is None
    assert factor.config == QUICKSTART_PASSKEYS
    assert isinstance(factor.date_created, datetime)
    public_key = factor.options["publicKey"]
    assert isinstance(public_key["pubKeyCredParams"], list)
    assert {"type": "public-key", "alg": -7} in public_key["pubKeyCredParams"]
    assert isinstance(public_key["challenge"], str) and len(unb64url(public_key["challenge"])) >= 16
    assert public_key["rp"] == {"id": RP_ID, "name": RP_NAME}
    assert public_key["user"]["name"] == public_key["user"]["displayName"] == "alice"
    assert unb64url(public_key["user"]["id"]).decode() == factor.entity_sid

    credential = authenticator.create(factor.options, ORIGIN)
    verified = verify_factor(service, credential)
    assert verified.status == "verified"
    assert verified.sid == factor.sid
    assert verified.identity == identity
    assert verified.metadata is not None
    assert verified.metadata["aaguid"] == str(uuid.UUID(bytes=AAGUID))
    assert isinstance(verified.date_updated, datetime)

    challenge = create_challenge(service, {"identity": identity})
    assert challenge.status == "pending"
    assert is_sid(challenge.sid, "YC")
    assert challenge.factor_type == "passkeys"
    assert challenge.identity == identity
    assert isinstance(challenge.date_created, datetime)
    assert credential_ids(challenge.options) == [credential["id"]]

    assertion = authenticator.get(challenge.options, ORIGIN)
    approved = approve_challenge(service, assertion)
    assert approved.status == "approved"
    assert approved.sid == challenge.sid
    assert approved.factor_sid == factor.sid
    assert approved.identity == identity
    assert approved.entity_sid == factor.entity_sid
    assert isinstance(approved.date_created, datetime)
    assert isinstance(approved.date_updated, datetime)


def test_usernameless_challenge_is_approved_and_names_the_identity(service: ServiceInstance):
    authenticator = Authenticator()
    identity = new_identity()
    factor, _ = register(service, authenticator, identity)

    challenge, _, approved = sign_in(service, authenticator, {})

    assert challenge.status == "pending"
    assert challenge.identity == ""
    assert credential_ids(challenge.options) == []
    assert approved.status == "approved"
    assert approved.identity == identity
    assert approved.factor_sid == factor.sid
    assert approved.entity_sid == factor.entity_sid


def test_factor_without_config_or_identity_gets_both_from_the_service(client: Client):
    created = create_quickstart_service(client)
    service = client.verify.v2.services(created.sid)
    authenticator = Authenticator()

    factor, verified = register(service, authenticator, identity=None, friendly_name="bob")

    assert re.fullmatch(r"[0-9a-f]+(-[0-9a-f]+)*", factor.identity or "")
    assert 8 <= len(factor.identity) <= 64
    assert factor.config == created.passkeys
    selection = factor.options["publicKey"]["authenticatorSelection"]
    assert selection["authenticatorAttachment"] == "platform"
    assert selection["residentKey"] == "preferred"
    assert selection["userVerification"] == "preferred"
    assert verified.status == "verified"
    _, _, approved = sign_in(service, authenticator, {"identity": factor.identity})
    assert (approved.status, approved.identity) == ("approved", factor.identity)


# --- auth ---------------------------------------------------------------------------------------


def test_api_key_client_runs_the_whole_flow(server: Server, connect: Connect):
    key = server.create_api_key()
    assert key["sid"].startswith("SK")
    key_client = connect(key["sid"], key["secret"], server.account_sid)
    created = create_quickstart_service(key_client, "Key service")
    assert created.account_sid == server.account_sid
    service = key_client.verify.v2.services(created.sid)
    authenticator = Authenticator()
    identity = new_identity()

    factor, verified = register(service, authenticator, identity)
    _, _, approved = sign_in(service, authenticator, {"identity": identity})

    assert verified.status == "verified"
    assert (approved.status, approved.factor_sid) == ("approved", factor.sid)


def test_api_key_with_a_wrong_secret_is_refused_with_20003(server: Server, connect: Connect):
    key = server.create_api_key()
    bad_client = connect(key["sid"], key["secret"] + "x", server.account_sid)

    assert_twilio_error(lambda: create_quickstart_service(bad_client), 401, 20003)


def test_account_with_a_wrong_auth_token_is_refused_with_20003(
    server: Server, connect: Connect, service: ServiceInstance
):
    bad_client = connect(server.account_sid, "wrong-" + server.auth_token)

    assert_twilio_error(bad_client.verify.v2.services(service.sid).fetch, 401, 20003)


# --- entities, factors, challenges ------------------------------------------------------------


def test_entity_can_be_created_listed_fetched_and_deleted(service: ServiceInstance):
    identity = new_identity()

    entity = service.entities.create(identity=identity)
    assert is_sid(entity.sid, "YE")
    assert entity.identity == identity
    assert isinstance(entity.date_created, datetime)
    assert [e.identity for e in service.entities.list()] == [identity]
    fetched = service.entities(identity).fetch()
    assert (fetched.sid, fetched.identity) == (entity.sid, identity)

    assert service.entities(identity).delete() is True
    assert_twilio_error(service.entities(identity).fetch, 404, 20404)
    assert service.entities.list() == []


def test_entity_lists_its_passkey_factor_which_can_be_fetched_and_renamed(
    service: ServiceInstance,
):
    identity = new_identity()
    factor, _ = register(service, Authenticator(), identity)
    entity = service.entities(identity)

    factors = entity.factors.list()
    assert [(f.sid, f.factor_type, f.status) for f in factors] == [
        (factor.sid, "passkeys", "verified")
    ]
    fetched = entity.factors(factor.sid).fetch()
    assert (fetched.sid, fetched.identity, fetched.friendly_name) == (factor.sid, identity, "alice")
    assert fetched.config == QUICKSTART_PASSKEYS

    renamed = entity.factors(factor.sid).update(friendly_name="alice's laptop")
    assert renamed.friendly_name == "alice's laptop"
    assert entity.factors(factor.sid).fetch().friendly_name == "alice's laptop"


def test_entity_challenges_can_be_listed_by_status_and_fetched(service: ServiceInstance):
    authenticator = Authenticator()
    identity = new_identity()
    factor, _ = register(service, authenticator, identity)
    approved_challenge, _, _ = sign_in(service, authenticator, {"identity": identity})
    pending_challenge = create_challenge(service, {"identity": identity})
    entity = service.entities(identity)

    approved = entity.challenges.list(status="approved")
    assert [c.sid for c in approved] == [approved_challenge.sid]
    assert [c.sid for c in entity.challenges.list(status="pending")] == [pending_challenge.sid]

    fetched = entity.challenges(approved_challenge.sid).fetch()
    assert fetched.status == "approved"
    assert (fetched.factor_sid, fetched.identity) == (factor.sid, identity)
    assert fetched.factor_type == "passkeys"
    assert isinstance(fetched.date_created, datetime)


def test_entities_list_follows_absolute_next_page_urls(server: Server, service: ServiceInstance):
    identities = sorted(new_identity() for _ in range(5))
    for identity in identities:
        service.entities.create(identity=identity)

    first_page = service.entities.page(page_size=2)
    first_records = [e.identity for e in first_page]  # a page iterates its records once
    assert len(first_records) == 2
    assert (first_page.next_page_url or "").startswith(server.base_url + "/v2/")
    assert sorted(e.identity for e in service.entities.list(page_size=2)) == identities
    second_page = first_page.next_page()
    assert second_page is not None
    back = second_page.previous_page()
    assert back is not None and [e.identity for e in back] == first_records
    assert first_page.previous_page() is None
    limited = service.entities.list(limit=3)
    assert len(limited) == 3
    assert {e.identity for e in limited} <= set(identities)


# --- errors ---------------------------------------------------------------------------------------


def test_unknown_service_is_404_with_code_20404(client: Client):
    unknown = client.verify.v2.services("VA" + secrets.token_hex(16))

    assert_twilio_error(unknown.fetch, 404, 20404)


def test_replayed_assertion_is_refused_with_60322(service: ServiceInstance):
    authenticator = Authenticator()
    identity = new_identity()
    register(service, authenticator, identity)
    _, assertion, approved = sign_in(service, authenticator, {"identity": identity})
    assert approved.status == "approved"

    assert_twilio_error(lambda: approve_challenge(service, assertion), 403, 60322)


def test_another_account_cannot_see_the_service(
    server: Server, connect: Connect, service: ServiceInstance
):
    other = server.create_account("other")
    assert other["sid"] != server.account_sid
    other_client = connect(other["sid"], other["auth_token"])

    assert_twilio_error(other_client.verify.v2.services(service.sid).fetch, 404, 20404)


# --- services -------------------------------------------------------------------------------------


def test_service_update_changes_only_the_given_passkeys_setting(client: Client):
    created = create_quickstart_service(client, "Partial update")

    updated = client.verify.v2.services(created.sid).update(passkeys_user_verification="required")

    assert updated.passkeys == {**QUICKSTART_PASSKEYS, "user_verification": "required"}
    assert updated.friendly_name == "Partial update"
    fetched = client.verify.v2.services(created.sid).fetch()
    assert fetched.passkeys == updated.passkeys
    assert fetched.friendly_name == "Partial update"


def test_deleted_service_is_gone(client: Client):
    created = create_quickstart_service(client, "Short-lived")

    assert client.verify.v2.services(created.sid).delete() is True

    assert_twilio_error(client.verify.v2.services(created.sid).fetch, 404, 20404)
