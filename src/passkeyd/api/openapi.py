"""passkeyd's API as an OpenAPI 3.1 document, served at /openapi.json (and /docs).

Built here, beside the routes, and checked against real responses by the tests, so it
says what the service really accepts and returns.
"""

from __future__ import annotations

from typing import Any

from passkeyd import __version__
from passkeyd.domain.events import EVENT_TYPES
from passkeyd.webauthn.trust import REFUSED_STATUSES

STR: dict[str, Any] = {"type": "string"}
NSTR: dict[str, Any] = {"type": ["string", "null"]}
BOOL: dict[str, Any] = {"type": "boolean"}
INT: dict[str, Any] = {"type": "integer"}
DATE: dict[str, Any] = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"}
NDATE: dict[str, Any] = {"type": ["string", "null"], "pattern": DATE["pattern"]}


def sid(prefix: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{prefix}[0-9a-f]{{32}}$"}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": False,
    }


PASSKEYS = obj(
    {
        "relying_party": obj(
            {"id": NSTR, "name": NSTR, "origins": {"type": ["array", "null"], "items": STR}}
        ),
        "authenticator_attachment": NSTR,
        "discoverable_credentials": NSTR,
        "user_verification": NSTR,
        "attestation": STR,
        # passkeyd extensions, present only when set
        "attestation_policy": {"enum": ["any", "checked", "trusted"]},
        "counter_policy": {"enum": ["refuse", "flag"]},
        "conditional_create": {"enum": ["refuse", "allow"]},
        "aaguid_allow": {"type": "array", "items": STR},
        "aaguid_deny": {"type": "array", "items": STR},
        "top_origins": {"type": "array", "items": STR},
        "algorithms": {"type": "array", "items": INT},
        "hints": {"type": "array", "items": {"enum": ["security-key", "client-device", "hybrid"]}},
    },
    optional=(
        "attestation",
        "attestation_policy",
        "counter_policy",
        "conditional_create",
        "aaguid_allow",
        "aaguid_deny",
        "top_origins",
        "algorithms",
        "hints",
    ),
)
FACTOR_METADATA = obj(
    {
        "aaguid": STR,
        "authenticator_name": STR,
        "credential_id": STR,
        "backup_eligible": BOOL,
        "backed_up": BOOL,
        "clone_warning": BOOL,
        "backup_eligible_changed": BOOL,
        "discoverable": BOOL,
        "date_last_approved": DATE,
        "authenticator_status": {"enum": sorted(REFUSED_STATUSES)},
    },
    optional=("authenticator_name", "discoverable", "date_last_approved", "authenticator_status"),
)

FACTOR_PROPS: dict[str, Any] = {
    "sid": sid("YF"), "account_sid": sid("AC"), "service_sid": sid("VA"),
    "entity_sid": sid("YE"), "identity": STR, "date_created": DATE, "date_updated": DATE,
    "friendly_name": STR, "status": {"enum": ["unverified", "verified"]},
    "factor_type": {"const": "passkeys"}, "config": ref("Passkeys"),
    "metadata": {"oneOf": [FACTOR_METADATA, {"type": "null"}]}, "url": STR,
}  # fmt: skip
CHALLENGE_PROPS: dict[str, Any] = {
    "sid": sid("YC"), "account_sid": sid("AC"), "service_sid": sid("VA"),
    "entity_sid": {"type": "string", "pattern": "^(YE[0-9a-f]{32})?$"}, "identity": STR,
    "factor_sid": {"type": "string", "pattern": "^(YF[0-9a-f]{32})?$"},
    "date_created": DATE, "date_updated": DATE, "date_responded": NDATE,
    "expiration_date": NDATE,
    "status": {"enum": ["pending", "expired", "approved", "denied"]},
    "responded_reason": {"enum": ["none", "not_needed", "not_requested"]},
    "details": {"type": "null"}, "hidden_details": {"type": "null"},
    "metadata": {"type": "null"}, "factor_type": {"const": "passkeys"}, "url": STR,
    "links": {"type": ["object", "null"]},
}  # fmt: skip

SCHEMAS: dict[str, Any] = {
    "Error": obj(
        {
            "code": INT,
            "message": STR,
            "more_info": STR,
            "status": INT,
            # on a 429: the seconds of its Retry-After, where the SDKs can read them; on an
            # approval's 60390, whether the page may tell the browser the passkey is gone
            "details": obj(
                {"retry_after": INT, "signal_unknown_credential": {"type": "boolean"}},
                optional=("retry_after", "signal_unknown_credential"),
            ),
        },
        optional=("details",),
    ),
    "Passkeys": PASSKEYS,
    "Service": obj(
        {
            "sid": sid("VA"),
            "account_sid": sid("AC"),
            "friendly_name": STR,
            "code_length": INT,
            "lookup_enabled": BOOL,
            "psd2_enabled": BOOL,
            "skip_sms_to_landlines": BOOL,
            "dtmf_input_required": BOOL,
            "tts_name": NSTR,
            "do_not_share_warning_enabled": BOOL,
            "custom_code_enabled": BOOL,
            "push": {"type": "object"},
            "totp": {"type": "object"},
            "default_template_sid": NSTR,
            "whatsapp": {"type": "object"},
            "passkeys": ref("Passkeys"),
            "verify_event_subscription_enabled": BOOL,
            "date_created": DATE,
            "date_updated": DATE,
            "url": STR,
            "links": {"type": "object"},
        }
    ),  # fmt: skip
    "Entity": obj(
        {
            "sid": sid("YE"),
            "identity": STR,
            "account_sid": sid("AC"),
            "service_sid": sid("VA"),
            "date_created": DATE,
            "date_updated": DATE,
            "url": STR,
            "links": obj({"factors": STR, "new_factors": STR, "challenges": STR}),
        }
    ),  # fmt: skip
    "Factor": obj(FACTOR_PROPS),
    "NewFactor": obj(
        {
            **FACTOR_PROPS,
            "binding": {"type": "null"},
            "options": obj({"publicKey": {"type": "object"}}),
        }
    ),
    "Challenge": obj(CHALLENGE_PROPS),
    "PasskeysChallenge": obj(
        {**CHALLENGE_PROPS, "options": obj({"publicKey": {"type": "object"}})}
    ),
    "Webhook": obj(
        {
            "sid": sid("YW"),
            "service_sid": sid("VA"),
            "account_sid": sid("AC"),
            "friendly_name": STR,
            "event_types": {"type": "array", "items": {"enum": ["*", *EVENT_TYPES]}},
            "status": {"enum": ["enabled", "disabled"]},
            "version": {"enum": ["v1", "v2"]},
            "webhook_url": STR,
            "webhook_method": {"const": "POST"},
            "date_created": DATE,
            "date_updated": DATE,
            "url": STR,
        }
    ),  # fmt: skip
    "AuditEvent": obj(
        {
            "account_sid": sid("AC"),
            "service_sid": STR,
            "actor": STR,
            "action": STR,
            "resource": STR,
            "outcome": {"enum": ["ok", "refused"]},
            "code": {"type": ["integer", "null"]},
            "step": NSTR,
            "request_id": STR,
            "date_created": DATE,
        }
    ),
    "PageMeta": obj(
        {
            "page": INT,
            "page_size": INT,
            "first_page_url": STR,
            "previous_page_url": NSTR,
            "url": STR,
            "next_page_url": NSTR,
            "key": STR,
        }
    ),  # fmt: skip
    "PublicKeyCredential": {
        "type": "object",
        "description": "PublicKeyCredential.toJSON() from the browser",
        "properties": {
            "id": STR,
            "rawId": STR,
            "type": {"const": "public-key"},
            "authenticatorAttachment": {"enum": ["platform", "cross-platform", None]},
            "response": {
                "type": "object",
                "properties": {
                    "clientDataJSON": STR,
                    "attestationObject": STR,
                    "authenticatorData": STR,
                    "signature": STR,
                    "userHandle": NSTR,
                    "transports": {"type": "array", "items": STR},
                },
            },
        },
        "required": ["response"],
    },  # fmt: skip
}


def page(key: str, item: str) -> dict[str, Any]:
    return obj({key: {"type": "array", "items": ref(item)}, "meta": ref("PageMeta")})


def form(fields: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": fields, "required": list(required)}}}}  # fmt: skip


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    str(s): {"description": d, "content": {"application/json": {"schema": ref("Error")}}}
    for s, d in ((400, "invalid input"), (401, "authentication failed (20003)"),
                 (403, "refused (ceremony failed, replay, expiry)"), (404, "not found (20404)"),
                 (409, "conflict"), (413, "body too large"), (415, "wrong content type"),
                 (429, "too many requests"))
}  # fmt: skip


def op(summary: str, status: int, schema: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": summary}
    if schema is not None:
        ok["content"] = {"application/json": {"schema": schema}}
    return {"summary": summary, "responses": {str(status): ok, **ERRORS}, **extra}


def path_params(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": STR} for n in names]


LIST_QUERY = [
    {"name": "PageSize", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "Page", "in": "query", "schema": INT},
    {"name": "PageToken", "in": "query", "schema": STR},
]
SERVICE_FORM = form({
    "FriendlyName": STR, "Name": STR, "CodeLength": INT,
    "Passkeys.RelyingParty.Id": STR, "Passkeys.RelyingParty.Name": STR,
    "Passkeys.RelyingParty.Origins": {"description": "comma-separated, or repeated", **STR},
    "Passkeys.AuthenticatorAttachment": {"enum": ["platform", "cross-platform", "any", ""]},
    "Passkeys.DiscoverableCredentials": {"enum": ["required", "preferred", "discouraged", ""]},
    "Passkeys.UserVerification": {"enum": ["required", "preferred", "discouraged", ""]},
    "Passkeys.Attestation": {"description": "passkeyd extension",
                             "enum": ["none", "indirect", "direct", "enterprise"]},
    "Passkeys.AttestationPolicy": {"description": "passkeyd extension; empty unsets",
                                   "enum": ["any", "checked", "trusted", ""]},
    "Passkeys.AaguidAllow": {"description": "passkeyd extension; comma-separated AAGUIDs", **STR},
    "Passkeys.AaguidDeny": {"description": "passkeyd extension; comma-separated AAGUIDs", **STR},
    "Passkeys.TopOrigins": {"description": "passkeyd extension; comma-separated origins", **STR},
    "Passkeys.CounterPolicy": {"description": "passkeyd extension; empty unsets",
                               "enum": ["refuse", "flag", ""]},
    "Passkeys.Algorithms": {"description": "passkeyd extension; COSE ids or names, e.g. "
                            "-7,-8,-257,-35 or ES256,EdDSA,RS256,ES384 (also ES512, PS256, "
                            "ML-DSA-44, ML-DSA-65, ML-DSA-87, ESP256, ESP384, ESP512, "
                            "Ed25519, Ed448, ES256K, PS384, PS512, RS384, RS512, RS1)", **STR},
    "Passkeys.ConditionalCreate": {"description": "passkeyd extension; empty unsets",
                                   "enum": ["refuse", "allow", ""]},
    "Passkeys.Hints": {"description": "passkeyd extension; comma-separated WebAuthn hints "
                       "among security-key, client-device, hybrid, most preferred first", **STR},
})  # fmt: skip
WEBHOOK_FORM = form({
    "FriendlyName": STR, "EventTypes": {"type": "array", "items": STR}, "WebhookUrl": STR,
    "Status": {"enum": ["enabled", "disabled"]}, "Version": {"enum": ["v1", "v2"]},
})  # fmt: skip
PUSH_ONLY: dict[str, Any] = {
    "summary": "Push/TOTP only in Twilio; refused here (60369/60300): use the Passkeys endpoints",
    "responses": ERRORS,
}
SVC = "/v2/Services/{ServiceSid}"
ENT = SVC + "/Entities/{Identity}"


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v2/Services": {
            "post": op("Create a service", 201, ref("Service"), requestBody=SERVICE_FORM),
            "get": op("List services", 200, page("services", "Service"), parameters=LIST_QUERY),
        },
        "/v2/Services/{Sid}": {
            "parameters": path_params("Sid"),
            "get": op("Fetch a service", 200, ref("Service")),
            "post": op("Update a service (partial)", 200, ref("Service"),
                       requestBody=SERVICE_FORM),
            "delete": op("Delete a service", 204, None),
        },
        SVC + "/Passkeys/Factors": {
            "parameters": path_params("ServiceSid"),
            "post": op("Create a passkey factor and its creation options", 201, ref("NewFactor"),
                       requestBody=json_body({"type": "object", "properties": {
                           "friendly_name": STR, "identity": STR, "config": {"type": "object"}},
                           "required": ["friendly_name"]})),
        },
        SVC + "/Passkeys/VerifyFactor": {
            "parameters": path_params("ServiceSid"),
            "post": op("Verify a registration (attestation)", 200, ref("Factor"),
                       requestBody=json_body(ref("PublicKeyCredential"))),
        },
        SVC + "/Passkeys/Challenges": {
            "parameters": path_params("ServiceSid"),
            "post": op("Create an authentication challenge", 201, ref("PasskeysChallenge"),
                       requestBody=json_body({"type": "object", "properties": {
                           "identity": STR, "factor_sid": STR,
                           "user_verification": {"enum": ["required", "preferred",
                                                          "discouraged"]}}})),
        },
        SVC + "/Passkeys/ApproveChallenge": {
            "parameters": path_params("ServiceSid"),
            "post": op("Approve a challenge with an assertion", 200, ref("PasskeysChallenge"),
                       requestBody=json_body(ref("PublicKeyCredential"))),
        },
        SVC + "/Passkeys/WellKnown": {
            "parameters": path_params("ServiceSid"),
            "get": op("The /.well-known/webauthn document for the service's web origins"
                      " (passkeyd extension)", 200,
                      obj({"origins": {"type": "array", "items": STR}})),
        },
        SVC + "/Entities": {
            "parameters": path_params("ServiceSid"),
            "post": op("Create an entity", 201, ref("Entity"),
                       requestBody=form({"Identity": STR}, ("Identity",))),
            "get": op("List entities", 200, page("entities", "Entity"), parameters=LIST_QUERY),
        },
        ENT: {
            "parameters": path_params("ServiceSid", "Identity"),
            "get": op("Fetch an entity", 200, ref("Entity")),
            "delete": op("Delete an entity, its factors and challenges", 204, None),
        },
        ENT + "/Factors": {
            "parameters": path_params("ServiceSid", "Identity"),
            "get": op("List an entity's factors", 200, page("factors", "Factor"),
                      parameters=LIST_QUERY),
            "post": PUSH_ONLY,
        },
        ENT + "/Factors/{Sid}": {
            "parameters": path_params("ServiceSid", "Identity", "Sid"),
            "get": op("Fetch a factor", 200, ref("Factor")),
            "post": op("Rename a factor", 200, ref("Factor"),
                       requestBody=form({"FriendlyName": STR})),
            "delete": op("Delete a factor", 204, None),
        },
        ENT + "/Challenges": {
            "parameters": path_params("ServiceSid", "Identity"),
            "post": PUSH_ONLY,
            "get": op("List an entity's challenges", 200, page("challenges", "Challenge"),
                      parameters=[*LIST_QUERY,
                                  {"name": "FactorSid", "in": "query", "schema": STR},
                                  {"name": "Status", "in": "query", "schema": {
                                      "enum": ["pending", "expired", "approved", "denied"]}},
                                  {"name": "Order", "in": "query",
                                   "schema": {"enum": ["asc", "desc"]}}]),
        },
        ENT + "/Challenges/{Sid}": {
            "parameters": path_params("ServiceSid", "Identity", "Sid"),
            "get": op("Fetch a challenge", 200, ref("Challenge")),
            "post": PUSH_ONLY,
        },
        ENT + "/Challenges/{Sid}/Notifications": {
            "parameters": path_params("ServiceSid", "Identity", "Sid"),
            "post": PUSH_ONLY,
        },
        "/v2/AuditEvents": {
            "get": op(
                "The account's audit trail, newest first (passkeyd extension)",
                200,
                page("audit_events", "AuditEvent"),
                parameters=[*LIST_QUERY, {"name": "ServiceSid", "in": "query", "schema": STR}],
            ),
        },
        SVC + "/Webhooks": {
            "parameters": path_params("ServiceSid"),
            "post": op("Create a webhook", 201, ref("Webhook"), requestBody=WEBHOOK_FORM),
            "get": op("List webhooks", 200, page("webhooks", "Webhook"), parameters=LIST_QUERY),
        },
        SVC + "/Webhooks/{Sid}": {
            "parameters": path_params("ServiceSid", "Sid"),
            "get": op("Fetch a webhook", 200, ref("Webhook")),
            "post": op("Update a webhook (partial)", 200, ref("Webhook"),
                       requestBody=WEBHOOK_FORM),
            "delete": op("Delete a webhook", 204, None),
        },
    }  # fmt: skip
    unauthenticated: dict[str, Any] = {"security": []}
    for path, summary in (("/healthz", "Alive"), ("/readyz", "Database reachable and current"),
                          ("/metrics", "Prometheus metrics")):  # fmt: skip
        paths[path] = {"get": {"summary": summary, **unauthenticated,
                               "responses": {"200": {"description": summary}}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "passkeyd",
            "version": __version__,
            "description": "Passkey (WebAuthn) verification, wire-compatible with Twilio "
            "Verify Passkeys (Verify v2). Errors are Twilio's {code, message, more_info, "
            "status}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"basic": []}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "Account SID + auth token, or API key SID + secret",
                }
            },
        },
    }


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>passkeyd API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}
h1{margin-bottom:0}code,pre{font:13px ui-monospace,monospace}
.op{border:1px solid #ddd;border-radius:6px;margin:.6rem 0;padding:.5rem .8rem}
.m{display:inline-block;min-width:4.5rem;font-weight:700;text-transform:uppercase}
.post{color:#0a7a3f}.get{color:#1f5fbf}.delete{color:#b3261e}
details pre{background:#f6f6f6;padding:.6rem;overflow:auto;max-height:24rem}
</style></head><body>
<h1>passkeyd API</h1><p>The <a href="/openapi.json">OpenAPI document</a>, rendered.</p>
<div id="ops"></div>
<script>
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const root = document.getElementById("ops");
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === "parameters") continue;
      const box = document.createElement("div"); box.className = "op";
      const ok = Object.keys(op.responses).find(s => s.startsWith("2"));
      const head = document.createElement("div");
      head.innerHTML = `<span class="m ${method}">${method}</span> <code></code> → ${ok}`;
      head.querySelector("code").textContent = path;
      const summary = document.createElement("div"); summary.textContent = op.summary;
      const details = document.createElement("details");
      details.innerHTML = "<summary>schema</summary><pre></pre>";
      details.querySelector("pre").textContent = JSON.stringify(
        {requestBody: op.requestBody, response: op.responses[ok]}, null, 2);
      box.append(head, summary, details); root.append(box);
    }
  }
});
</script></body></html>
"""
