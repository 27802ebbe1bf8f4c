"""`passkeyd conformance` refuses bodies it cannot read as a ServerResponse, not a 500."""

from __future__ import annotations

from starlette.testclient import TestClient

from passkeyd.web.config import DemoConfig, parse_config
from passkeyd.web.conformance import create_app
from passkeyd.web.service import DemoService

# Its passkeyd does not answer here (a closed port): nothing these requests ask reaches it.
SERVICE = DemoService("VA" + "0" * 32, "localhost", ("http://localhost:3000",), "", True)


def _config() -> DemoConfig:
    return parse_config(
        ["--passkeyd-url", "http://127.0.0.1:9"],
        {"PASSKEYD_ACCOUNT_SID": "AC" + "0" * 32, "PASSKEYD_AUTH_TOKEN": "t" * 32},
        prog="passkeyd conformance",
        description="conformance",
        port=3000,
    )


def test_json_nested_past_the_recursion_limit_is_a_failed_server_response() -> None:
    config = _config()
    with TestClient(create_app(config, SERVICE), raise_server_exceptions=False) as client:
        for path in ("/attestation/options", "/attestation/result", "/assertion/options",
                     "/assertion/result"):  # fmt: skip
            r = client.post(path, content=b"[" * 60000,
                            headers={"content-type": "application/json"})  # fmt: skip
            assert r.status_code == 400, r.text
            assert r.json() == {"status": "failed", "errorMessage": "The request body is not JSON"}


def test_an_unknown_path_or_method_is_a_failed_server_response() -> None:
    """They were plain-text 404 and 405 (review)."""
    config = _config()
    assert config.rp_name == "passkeyd conformance"  # (it was the demo's name)
    assert config.attestation_policy is None  # (checked for a service it makes)
    with TestClient(create_app(config, SERVICE), raise_server_exceptions=False) as client:
        for method, path, status in (("GET", "/attestation/options", 405),
                                     ("POST", "/registration/options", 404)):  # fmt: skip
            r = client.request(method, path)
            assert r.status_code == status, r.text
            body = r.json()
            assert body["status"] == "failed" and "/attestation/options" in body["errorMessage"]


def test_a_client_data_json_nested_past_the_recursion_limit_is_no_500() -> None:
    """The response's clientDataJSON is read for its tokenBinding: 1,334 characters of
    base64url `[` raised RecursionError there, a plain-text 500. It is left to passkeyd
    (orjson refuses it, 1,024 levels deep at most), here unreachable: a ServerResponse."""
    import base64

    config = _config()
    nested = base64.urlsafe_b64encode(b"[" * 1000).rstrip(b"=").decode()
    credential = {"id": "AAAA", "type": "public-key", "response": {"clientDataJSON": nested}}
    with TestClient(create_app(config, SERVICE), raise_server_exceptions=False) as client:
        for path in ("/attestation/result", "/assertion/result"):
            r = client.post(path, json=credential)
            assert r.status_code != 500, r.text
            assert r.json()["status"] == "failed"
