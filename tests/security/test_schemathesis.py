"""Schemathesis against the API described by /openapi.json, in process, as a real account.

For every operation of the document, schema-valid and schema-violating requests: never a
5xx, every status documented for the operation, every body valid against the documented
schema for that status, and without credentials a 401. Most cases name real objects of
the account (service, entity, factor, challenge, webhook), so they reach past the 404.
Runs as its own strategy generator, with requests sent through Starlette's TestClient (the
schemathesis ASGI transport would keep the app's lifespan running after the test).
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import Server
from .strategies import Tally, fuzz
from .support import assert_twilio_error, report

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PUBLIC = {"/healthz", "/readyz", "/metrics"}
# 1 case in 10 without credentials, 1 in 10 with schemathesis's random Basic credentials.
# 3 cases in 4 name the account's real objects in the path.
REAL_FIRST = st.integers(0, 3).map(lambda i: i != 3)
CREDENTIALS = st.sampled_from(["real"] * 8 + ["none", "generated"])  # "real" first: shrinks there


def _transport_kwargs(case: Any, credentials: str, auth: tuple[str, str]) -> dict[str, Any]:
    """What schemathesis would hand `requests`, as Starlette's (httpx) TestClient takes it.

    `credentials`: "real" (the account's), "generated" (schemathesis's random Basic
    credentials), or "none".
    """
    kw = case.as_transport_kwargs(base_url="http://testserver")
    headers = {k: v for k, v in (kw.get("headers") or {}).items() if k.lower() != "cookie"}
    if credentials != "generated":
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    out: dict[str, Any] = {
        "method": kw["method"],
        "url": kw["url"],
        "headers": headers,
        "params": kw.get("params"),
        "auth": auth if credentials == "real" else None,
    }
    if "json" in kw:
        out["json"] = kw["json"]
    data = kw.get("data")
    if isinstance(data, str | bytes):
        out["content"] = data
    elif data is not None:
        out["data"] = data
    return out


def test_every_operation_conforms_to_the_openapi_document(server: Server):
    api = server.account("schema")
    api.create_service()
    factor = api.register("user-0001")
    challenge = api.challenge(identity="user-0001")
    hook = api.post_form(
        f"{api.svc}/Webhooks",
        {"FriendlyName": "h", "WebhookUrl": "http://127.0.0.1:9/x", "EventTypes": "*"},
    ).json()
    real = {
        "Sid": api.service_sid,
        "ServiceSid": api.service_sid,
        "Identity": "user-0001",
    }
    sub_sids = {"Factors": factor["sid"], "Challenges": challenge["sid"], "Webhooks": hook["sid"]}
    document = api.client.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    totals = {"operations": 0, "cases": 0, "5xx": 0}
    statuses: dict[str, int] = {}
    failures: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        totals["operations"] += 1
        tally = Tally()
        strategy = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )

        @fuzz(60)
        @given(case=strategy, use_real=REAL_FIRST, credentials=CREDENTIALS)
        def prop(case: Any, use_real: bool, credentials: str) -> None:
            if use_real and case.path_parameters is not None:
                params = dict(case.path_parameters)
                for name in params:
                    if name in real:
                        params[name] = real[name]
                if "Sid" in params and operation.path.endswith("{Sid}"):
                    kind = re.findall(r"/(Factors|Challenges|Webhooks)/\{Sid\}", operation.path)
                    params["Sid"] = sub_sids[kind[0]] if kind else api.service_sid
                case.path_parameters = params
            kwargs = _transport_kwargs(case, credentials, api.auth)
            response = tally.run(api.client.request, **kwargs)
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            if response.status_code >= 500:
                totals["5xx"] += 1
            case.validate_response(response, checks=CHECKS)
            if credentials != "real" and operation.path not in PUBLIC:
                assert response.status_code == 401, response.text
            if response.status_code >= 400:
                assert_twilio_error(response)
            if response.status_code == 204 and operation.method.upper() == "DELETE":
                restore()

        def restore() -> None:
            """A case deleted one of the real objects: make the set again."""
            api.create_service()
            real["Sid"] = real["ServiceSid"] = api.service_sid
            sub_sids["Factors"] = api.register("user-0001")["sid"]
            sub_sids["Challenges"] = api.challenge(identity="user-0001")["sid"]
            sub_sids["Webhooks"] = api.post_form(
                f"{api.svc}/Webhooks",
                {"FriendlyName": "h", "WebhookUrl": "http://127.0.0.1:9/x", "EventTypes": "*"},
            ).json()["sid"]

        try:
            prop()
        except Exception as exc:  # one operation's failure must not hide the others'
            failures.append(f"{operation.method.upper()} {operation.path}: {exc!r}"[:2000])
        totals["cases"] += tally.count

    report(
        f"schemathesis: {totals['operations']} operations, {totals['cases']} cases,"
        f" {totals['5xx']} 5xx, {len(failures)} operations failing;"
        f" statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n\n".join(failures)
    assert totals["operations"] >= 30  # every operation of the document was exercised
    assert {"200", "201", "204", "400", "401", "404"} <= set(statuses), statuses
