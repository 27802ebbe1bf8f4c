"""`passkeyd conformance`: the FIDO conformance tools' server API, as a process on loopback in
front of a real passkeyd process, driven with the messages the tools send (the shapes of
fido-alliance/conformance-test-tools-resources, Conformance-Test-API.md: no `rawId`,
`getClientExtensionResults`, `userHandle: ""`) and the software authenticator."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2 as httpx
import pytest

from tests import pki
from tests.authenticator import BE, BS, UP, Authenticator, b64url, unb64url
from tests.e2e.processes import HOST, STARTUP_TIMEOUT, child_env, free_port, healthy

if TYPE_CHECKING:
    from tests.e2e.conftest import Server


class Conformance:
    def __init__(self, server: Server, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.origin = f"http://localhost:{self.port}"
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        command = [
            sys.executable, "-m", "passkeyd.cli", "conformance", "--host", HOST,
            "--port", str(self.port), "--passkeyd-url", server.base_url, "--wait", "0", *args,
        ]  # fmt: skip
        env = child_env(
            PASSKEYD_ACCOUNT_SID=server.account_sid, PASSKEYD_AUTH_TOKEN=server.auth_token
        )
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not healthy(self.url + "/healthz"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"passkeyd conformance did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        self.http = httpx.Client(base_url=self.url, timeout=10, trust_env=False)

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(path, json=body)

    def stop(self) -> None:
        if getattr(self, "http", None) is not None:
            self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def tool(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Conformance]:
    running = Conformance(server, tmp_path_factory.mktemp("conformance") / "conformance.log")
    try:
        yield running
    finally:
        running.stop()


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert (body["status"], body["errorMessage"]) == ("ok", "")
    return body


def failed(r: httpx.Response, status: int = 400) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == "failed" and isinstance(body["errorMessage"], str), body
    assert body["errorMessage"]
    return str(body["errorMessage"])


def as_the_tools_send(credential: dict[str, Any]) -> dict[str, Any]:
    """The browser's credential.toJSON() as the conformance tools send it: no rawId, and
    the extension outputs under getClientExtensionResults."""
    sent = {k: v for k, v in credential.items() if k not in ("rawId", "clientExtensionResults")}
    sent["getClientExtensionResults"] = credential.get("clientExtensionResults") or {}
    return sent


def register(tool: Conformance, username: str, key: Authenticator, **asked: Any) -> Any:
    options = ok(
        tool.post("/attestation/options", {"username": username, "displayName": "Ada L.", **asked})
    )
    credential = key.create({"publicKey": options}, tool.origin)
    return options, tool.post("/attestation/result", as_the_tools_send(credential))


def test_a_registration_and_a_sign_in_as_the_tools_run_them(tool: Conformance) -> None:
    key = Authenticator()
    options, result = register(
        tool,
        "johndoe@example.com",
        key,
        authenticatorSelection={
            "requireResidentKey": False,
            "authenticatorAttachment": "cross-platform",
            "userVerification": "preferred",
        },
        attestation="direct",
        extensions={"example.extension": True},
    )
    ok(result)
    assert options["user"]["name"] == "johndoe@example.com"
    assert options["user"]["displayName"] == "Ada L."
    assert 0 < len(unb64url(options["user"]["id"])) <= 64
    assert options["rp"]["name"] and options["rp"]["id"] == "localhost"
    assert 16 <= len(unb64url(options["challenge"])) <= 64
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["authenticatorSelection"]["authenticatorAttachment"] == "cross-platform"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "direct"
    assert options["extensions"]["example.extension"] is True
    assert isinstance(options["timeout"], int)

    asked = ok(
        tool.post(
            "/assertion/options",
            {"username": "johndoe@example.com", "userVerification": "required",
             "extensions": {"example.extension": True}},
        )
    )  # fmt: skip
    assert asked["rpId"] == "localhost"
    assert asked["userVerification"] == "required"
    assert asked["extensions"] == {"example.extension": True}
    ((credential_id, _),) = key.credentials.items()
    assert [unb64url(c["id"]) for c in asked["allowCredentials"]] == [credential_id]
    assertion = key.get({"publicKey": asked}, tool.origin, user_handle=b"")
    sent = as_the_tools_send(assertion)
    sent["response"]["userHandle"] = ""  # as the tools' example sends it
    ok(tool.post("/assertion/result", sent))
    assert "already" in failed(tool.post("/assertion/result", sent), 403).lower()


def test_two_options_carry_two_challenges(tool: Conformance) -> None:
    body = {"username": "twice@example.com", "displayName": "Twice"}
    first = ok(tool.post("/attestation/options", body))
    second = ok(tool.post("/attestation/options", body))
    assert first["challenge"] != second["challenge"]


@pytest.mark.parametrize(
    "body",
    [
        {"displayName": "No name"},
        {"username": "", "displayName": "Empty"},
        {"username": 7, "displayName": "Number"},
        {"username": "no-display@example.com"},
        {"username": "x@example.com", "displayName": "X", "authenticatorSelection": []},
        {"username": "x@example.com", "displayName": "X", "extensions": "all"},
    ],
)
def test_malformed_creation_option_requests_fail(tool: Conformance, body: Any) -> None:
    failed(tool.post("/attestation/options", body))


def test_a_creation_option_value_passkeyd_refuses_fails_with_its_reason(
    tool: Conformance,
) -> None:
    body = {"username": "x@example.com", "displayName": "X", "attestation": "always"}
    assert "attestation" in failed(tool.post("/attestation/options", body))
    selection = {"userVerification": "sometimes"}
    body = {"username": "x@example.com", "displayName": "X", "authenticatorSelection": selection}
    assert "user_verification" in failed(tool.post("/attestation/options", body))


def test_not_json_or_not_an_object_fails(tool: Conformance) -> None:
    for path in ("/attestation/options", "/attestation/result", "/assertion/options"):
        assert "JSON" in failed(tool.http.post(path, content=b"{username"))
        assert "object" in failed(tool.post(path, ["username"]))


def test_an_attestation_for_another_challenge_or_origin_fails(tool: Conformance) -> None:
    key = Authenticator()
    options = ok(
        tool.post("/attestation/options", {"username": "eve@example.com", "displayName": "E"})
    )
    stranger = key.create({"publicKey": options}, tool.origin, challenge=b64url(b"\x01" * 32))
    failed(tool.post("/attestation/result", as_the_tools_send(stranger)), 404)
    elsewhere = key.create({"publicKey": options}, "https://evil.example")
    assert "origin" in failed(tool.post("/attestation/result", as_the_tools_send(elsewhere)))
    sent = as_the_tools_send(key.create({"publicKey": options}, tool.origin))
    for field, value in (("id", None), ("type", None), ("response", None),
                         ("id", sent["id"] + "=="), ("id", sent["id"] + "+/"),
                         ("type", "public_key"), ("response", "none")):  # fmt: skip
        broken = {k: v for k, v in sent.items() if k != field}
        if value is not None:
            broken[field] = value
        assert field in failed(tool.post("/attestation/result", broken))
    ok(tool.post("/attestation/result", as_the_tools_send(key.create(
        {"publicKey": options}, tool.origin))))  # fmt: skip


def test_a_sign_in_that_required_user_verification_fails_without_it(tool: Conformance) -> None:
    key = Authenticator()
    ok(register(tool, "uv@example.com", key)[1])
    asked = ok(
        tool.post(
            "/assertion/options", {"username": "uv@example.com", "userVerification": "required"}
        )
    )
    without = key.get({"publicKey": asked}, tool.origin, flags=UP | BE | BS)
    assert "user verified" in failed(
        tool.post("/assertion/result", as_the_tools_send(without)), 403
    )
    bad_signature = key.get({"publicKey": asked}, tool.origin, signature=b"\x30\x00")
    assert "signature" in failed(
        tool.post("/assertion/result", as_the_tools_send(bad_signature)), 403
    )
    ok(
        tool.post(
            "/assertion/result", as_the_tools_send(key.get({"publicKey": asked}, tool.origin))
        )
    )


def test_sign_in_options_for_a_user_without_passkeys_fail(tool: Conformance) -> None:
    failed(tool.post("/assertion/options", {"username": "nobody@example.com"}), 404)
    failed(tool.post("/assertion/options", {}))
    failed(tool.post("/assertion/options", {"username": "x", "userVerification": 1}))


def test_its_service_checks_attestation_chains_and_accepts_self_attestation(
    tool: Conformance,
) -> None:
    """The service `passkeyd conformance` makes is `checked`: a packed attestation whose chain
    leads to no root in the metadata fails; self attestation registers."""
    root = pki.ca("Unlisted Root")
    aaguid = bytes.fromhex("11" * 16)
    leaf = pki.attestation_leaf(root, aaguid)
    unlisted = Authenticator(attestation="packed", aaguid=aaguid, x5c=[leaf.der],
                             attestation_key=leaf.key)  # fmt: skip
    message = failed(register(tool, "chain@example.com", unlisted, attestation="direct")[1], 403)
    assert "not listed in the FIDO Metadata Service" in message
    ok(register(tool, "self@example.com", Authenticator(attestation="packed"))[1])


def test_it_does_not_start_without_credentials_or_with_wrong_ones(
    server: Server, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "passkeyd.cli", "conformance", "--port", str(free_port()),
               "--passkeyd-url", server.base_url, "--wait", "0"]  # fmt: skip
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, capture_output=True, text=True, timeout=30, env=child_env()
    )
    assert done.returncode == 3 and "credentials are missing" in done.stderr
    wrong = child_env(PASSKEYD_ACCOUNT_SID=server.account_sid, PASSKEYD_AUTH_TOKEN="0" * 32)
    done = subprocess.run(  # noqa: S603 - fixed argv, no shell
        command, capture_output=True, text=True, timeout=30, env=wrong
    )
    assert done.returncode == 3 and "passkeyd refused a new service: 20003" in done.stderr


def test_options_carry_what_the_tools_compare_and_only_their_ceremonys_fields(
    tool: Conformance,
) -> None:
    """Req-1 P-1 compares authenticatorSelection and extensions with the request's, whole;
    the tools' WebAuthn client refuses sign-in options that carry creation fields (`rp`)."""
    selection = {"requireResidentKey": False, "userVerification": "preferred"}
    extensions = {"example.extension": True}
    options = ok(tool.post("/attestation/options", {
        "username": "shapes@example.com", "displayName": "S", "attestation": "direct",
        "authenticatorSelection": selection, "extensions": extensions,
    }))  # fmt: skip
    assert options["authenticatorSelection"] == selection
    assert options["extensions"] == extensions
    assert not {"rpId", "allowCredentials", "userVerification"} & set(options)
    key = Authenticator()
    ok(
        tool.post(
            "/attestation/result",
            as_the_tools_send(key.create({"publicKey": options}, tool.origin)),
        )
    )
    asked = ok(tool.post("/assertion/options", {"username": "shapes@example.com"}))
    creation_only = {"rp", "user", "pubKeyCredParams", "excludeCredentials",
                     "authenticatorSelection", "attestation"}  # fmt: skip
    assert not creation_only & set(asked)
    assert asked["rpId"] == "localhost"


def _padded(text: str) -> str:
    import base64

    return base64.b64encode(unb64url(text)).decode() + "=="


def test_base64_or_a_malformed_token_binding_is_refused(tool: Conformance) -> None:
    """The tools send authenticatorData and signature in padded base64 (Resp-1 F-14, F-18) and
    a clientData tokenBinding that is not a TokenBinding (Resp-2 F-15..F-17), and expect each
    refused; the same assertion, as sent, is accepted."""
    import json

    key = Authenticator()
    ok(register(tool, "encoding@example.com", key)[1])
    for field in ("authenticatorData", "signature"):
        asked = ok(tool.post("/assertion/options", {"username": "encoding@example.com"}))
        sent = as_the_tools_send(key.get({"publicKey": asked}, tool.origin))
        sent["response"][field] = _padded(sent["response"][field])
        assert field in failed(tool.post("/assertion/result", sent))
    for binding in ("present", {}, {"status": "bananas"}):
        asked = ok(tool.post("/assertion/options", {"username": "encoding@example.com"}))
        client_data = {"type": "webauthn.get", "challenge": asked["challenge"],
                       "origin": tool.origin, "tokenBinding": binding}  # fmt: skip
        sent = as_the_tools_send(
            key.get({"publicKey": asked}, tool.origin, client_data=json.dumps(client_data).encode())
        )
        assert "tokenBinding" in failed(tool.post("/assertion/result", sent))
    asked = ok(tool.post("/assertion/options", {"username": "encoding@example.com"}))
    client_data = {
        "type": "webauthn.get",
        "challenge": asked["challenge"],
        "origin": tool.origin,
        "tokenBinding": {"status": "not-supported"},
    }
    ok(
        tool.post(
            "/assertion/result",
            as_the_tools_send(
                key.get(
                    {"publicKey": asked}, tool.origin, client_data=json.dumps(client_data).encode()
                )
            ),
        )
    )


@pytest.mark.parametrize("alg", [-35, -36, -37])
def test_its_service_offers_every_algorithm_passkeyd_accepts(tool: Conformance, alg: int) -> None:
    """Resp-4 registers a self-attested passkey of each algorithm (ES384, ES512 and PS256 are
    among its optional ones); the service `passkeyd conformance` makes offers them all."""
    options, result = register(
        tool, f"alg{-alg}@example.com", Authenticator(alg=alg, attestation="packed")
    )
    assert {"type": "public-key", "alg": alg} in options["pubKeyCredParams"]
    ok(result)
