"""The passkey quickstart through whichever twilio-python release is first on sys.path, as a
user pinned to it writes it. Run by tests/e2e/test_twilio_python_releases.py.

    python flow.py BASE_URL ACCOUNT_SID AUTH_TOKEN

Prints one line per step, `ok <step>` or `FAIL <step>: <why>`, and exits 1 on any FAIL.
How requests are built follows each release's request classes:
- before 9.10.4 they read and send a credential's keys in snake_case (`raw_id`,
  `client_data_json`, ...), so a browser's credential is converted to that first;
- before 9.11.1 they do not wrap nested objects, so `config`, its `relying_party` and a
  credential's `response` are given as the SDK's own classes;
- 9.8.3 sends a challenge's request as a form field holding the object's repr, which
  passkeyd refuses (400 60300) rather than reading as a usernameless challenge.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[3]))  # the repository, after the SDK

import twilio  # noqa: E402
from tests.authenticator import Authenticator  # noqa: E402
from twilio.base.exceptions import TwilioRestException  # noqa: E402
from twilio.http.http_client import TwilioHttpClient  # noqa: E402
from twilio.rest import Client  # noqa: E402
from twilio.rest.verify.v2.service.approve_challenge import ApproveChallengeList  # noqa: E402
from twilio.rest.verify.v2.service.new_challenge import NewChallengeList  # noqa: E402
from twilio.rest.verify.v2.service.new_factor import NewFactorList  # noqa: E402
from twilio.rest.verify.v2.service.new_verify_factor import NewVerifyFactorList  # noqa: E402

BASE, ACCOUNT, TOKEN = sys.argv[1:4]
VERSION = tuple(int(part) for part in twilio.__version__.split("."))
SNAKE_CASE = VERSION < (9, 10, 4)
WRAP_NESTED = VERSION < (9, 11, 1)
FORM_CHALLENGE = VERSION == (9, 8, 3)
ORIGIN = "https://example.com"
CONFIG = {
    "relying_party": {"id": "example.com", "name": "Example", "origins": [ORIGIN]},
    "authenticator_attachment": "platform",
    "discoverable_credentials": "preferred",
    "user_verification": "preferred",
}
SNAKE = {
    "rawId": "raw_id",
    "authenticatorAttachment": "authenticator_attachment",
    "clientDataJSON": "client_data_json",
    "attestationObject": "attestation_object",
    "authenticatorData": "authenticator_data",
    "userHandle": "user_handle",
}
failures = 0


def check(name: str, ok: bool, why: Any = "") -> None:
    global failures
    print(f"ok {name}" if ok else f"FAIL {name}: {why}", flush=True)
    failures += not ok


def credential_request(outer: Any, inner: Any, credential: dict[str, Any]) -> Any:
    if SNAKE_CASE:
        credential = {SNAKE.get(k, k): v for k, v in credential.items()}
        credential["response"] = {SNAKE.get(k, k): v for k, v in credential["response"].items()}
    if WRAP_NESTED:
        credential["response"] = inner(credential["response"])
    return outer(credential)


http = TwilioHttpClient(timeout=10)
assert http.session is not None
http.session.trust_env = False  # loopback only
client = Client(ACCOUNT, TOKEN, http_client=http, environment={"TWILIO_EDGE": ""})
client.verify.base_url = BASE
print("twilio", twilio.__version__, flush=True)

service = client.verify.v2.services.create(
    friendly_name="Releases",
    passkeys_relying_party_id="example.com",
    passkeys_relying_party_name="Example",
    passkeys_relying_party_origins=ORIGIN,
    passkeys_authenticator_attachment="platform",
    passkeys_discoverable_credentials="preferred",
    passkeys_user_verification="preferred",
)
check("service", service.passkeys == CONFIG, service.passkeys)
svc = client.verify.v2.services(service.sid)

identity = str(uuid.uuid4())
config: Any = CONFIG
if WRAP_NESTED:
    config = NewFactorList.CreateNewPasskeysFactorRequestConfig(
        {
            **CONFIG,
            "relying_party": NewFactorList.CreateNewPasskeysFactorRequestConfigRelyingParty(
                CONFIG["relying_party"]
            ),
        }
    )
factor = svc.new_factors.create(
    NewFactorList.CreateNewPasskeysFactorRequest(
        {"friendly_name": "alice", "identity": identity, "config": config}
    )
)
check("factor", factor.status == "unverified" and factor.identity == identity, factor.status)

authenticator = Authenticator()
credential = authenticator.create(factor.options, ORIGIN)
verified = svc.new_verify_factors.update(
    credential_request(
        NewVerifyFactorList.VerifyPasskeysFactorRequest,
        NewVerifyFactorList.VerifyPasskeysFactorRequestResponse,
        credential,
    )
)
check("verify factor", verified.status == "verified", verified.status)

request = NewChallengeList.CreatePasskeysChallengeRequest({"identity": identity})
if FORM_CHALLENGE:
    try:
        svc.new_challenge().create(request)
    except TwilioRestException as exc:
        check(
            "a challenge sent as a form field is refused",
            (exc.status, exc.code) == (400, 60300) and "9.8.4" in exc.msg,
            (exc.status, exc.code, exc.msg),
        )
    else:
        check("a challenge sent as a form field is refused", False, "it was created")
else:
    challenge = svc.new_challenge().create(request)
    pk = challenge.options["publicKey"]
    check(
        "challenge for the identity",
        challenge.identity == identity and len(pk["allowCredentials"]) == 1,
        (challenge.identity, pk.get("allowCredentials")),
    )
    assertion = authenticator.get(challenge.options, ORIGIN)
    approved = svc.approve_challenge.update(
        credential_request(
            ApproveChallengeList.ApprovePasskeysChallengeRequest,
            ApproveChallengeList.ApprovePasskeysChallengeRequestResponse,
            assertion,
        )
    )
    check(
        "approve",
        approved.status == "approved" and approved.sid == challenge.sid,
        (approved.status, approved.sid),
    )
sys.exit(1 if failures else 0)
