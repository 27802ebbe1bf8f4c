"""Tenant isolation: account B, with its own credentials (auth token and API key), calls
every operation of /openapi.json naming account A's services, entities, factors,
challenges, webhooks, credentials and assertions.

Each answer is a not-found (20404 for a path, 60390/60391/60392 for an object named in a
body), indistinguishable from the answer for an object that never existed, and carries
nothing of A's that B did not put in the URL itself. Afterwards A's stored rows are
unchanged and A's webhook receiver got nothing.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from passkeyd.webauthn import b64url_decode
from tests.authenticator import Authenticator, b64url
from tests.conftest import ORIGIN, Api
from tests.receiver import receiver

from .conftest import Server
from .support import assert_twilio_error, report

PUBLIC = {"/healthz", "/readyz", "/metrics"}
SHARED = "shared-user-01"  # an identity both accounts use, each in its own service
WAIT_SECONDS = 10.0


def wait_for(predicate: Any, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@dataclass
class Tenant:
    api: Api
    services: list[str] = field(default_factory=list)
    identities: dict[str, str] = field(default_factory=dict)
    factors: dict[str, str] = field(default_factory=dict)
    challenges: dict[str, str] = field(default_factory=dict)
    webhooks: dict[str, str] = field(default_factory=dict)
    markers: set[str] = field(default_factory=set)  # every value that is this tenant's


def _tenant_a(api: Api, hook_url: str) -> tuple[Tenant, dict[str, Any]]:
    """A with two services, entities, verified and pending passkeys, pending and approved
    challenges, webhooks; and, never sent, a registration and assertions of A's."""
    tag = secrets.token_hex(4)
    a = Tenant(api)
    a.services.append(api.create_service(**{"Passkeys.RelyingParty.Name": f"rp-{tag}"})["sid"])
    hook = api.post_form(
        f"{api.svc}/Webhooks",
        {"FriendlyName": f"hook-{tag}", "WebhookUrl": hook_url, "EventTypes": "*"},
    )
    off = api.post_form(
        f"{api.svc}/Webhooks",
        {"FriendlyName": "off", "WebhookUrl": hook_url + "/off", "EventTypes": "*",
         "Status": "disabled"},
    )  # fmt: skip
    assert hook.status_code == off.status_code == 201, (hook.text, off.text)
    a.webhooks = {"on": hook.json()["sid"], "off": off.json()["sid"]}
    a.identities = {
        "alice": f"alice-{tag}",
        "pending": f"bob-{tag}",
        "plain": f"carol-{tag}",
        "shared": SHARED,
    }
    alice = api.register(a.identities["alice"])
    pending = api.create_factor(a.identities["pending"])
    shared = api.register(SHARED)
    plain = api.post_form(f"{api.svc}/Entities", {"Identity": a.identities["plain"]})
    assert plain.status_code == 201, plain.text
    a.factors = {"alice": alice["sid"], "pending": pending["sid"], "shared": shared["sid"]}
    alice_credential = next(iter(api.authenticator.credentials))
    approved = api.challenge(identity=a.identities["alice"])
    r = api.approve(api.authenticator.get(approved["options"], ORIGIN, alice_credential))
    assert r.status_code == 200, r.text
    pending_challenge = api.challenge(identity=a.identities["alice"])
    usernameless = api.challenge()
    a.challenges = {
        "approved": approved["sid"],
        "pending": pending_challenge["sid"],
        "usernameless": usernameless["sid"],
    }
    # Never sent by A: what B might have got hold of.
    unsent = api.create_factor(f"dave-{tag}")
    a.factors["unsent"] = unsent["sid"]
    loot = {
        "registration": Authenticator().create(unsent["options"], ORIGIN),
        "assertion": api.authenticator.get(pending_challenge["options"], ORIGIN, alice_credential),
        "usernameless_assertion": api.authenticator.get(
            usernameless["options"], ORIGIN, alice_credential
        ),
        "authenticator": api.authenticator,
        "credential_id": alice_credential,
    }
    a.services.append(api.create_service()["sid"])
    api.service_sid = a.services[0]
    a.markers = {
        api.account_sid,
        *a.services,
        *a.factors.values(),
        *a.challenges.values(),
        *a.webhooks.values(),
        *(i for i in a.identities.values() if i != SHARED),
        f"dave-{tag}",
        f"rp-{tag}",
        f"hook-{tag}",
        hook_url,
    }
    for credential_id in [
        *api.authenticator.credentials,
        b64url_decode(loot["registration"]["id"]),
    ]:
        a.markers |= {b64url(credential_id), credential_id.hex()}
    for challenge in (approved, pending_challenge, usernameless):
        a.markers.add(challenge["options"]["publicKey"]["challenge"])
    entities = api.get(f"{api.svc}/Entities").json()["entities"]
    a.markers |= {e["sid"] for e in entities}
    return a, loot


@dataclass(frozen=True)
class Probe:
    method: str
    path: str
    form: dict[str, str] | None = None
    json: Any = None
    status: int = 404
    codes: tuple[int, ...] = (20404,)
    own_trail: bool = False  # B's audit trail: may show what B itself sent in any probe


def _matrix(
    a: Tenant, b_service: str, loot: dict[str, Any], b_challenge: dict[str, Any]
) -> list[Probe]:
    """Every operation of the document, as B, naming A's objects (and B's own service with
    A's objects inside it)."""
    svc_a = [f"/v2/Services/{s}" for s in a.services]
    svc_b = f"/v2/Services/{b_service}"
    ident = a.identities
    probes: list[Probe] = []
    for svc in svc_a:
        probes += [
            Probe("GET", svc),
            Probe("POST", svc, form={"FriendlyName": "pwned"}),
            Probe("DELETE", svc),
            Probe("POST", f"{svc}/Passkeys/Factors",
                  json={"friendly_name": "x", "identity": ident["alice"]}),
            Probe("POST", f"{svc}/Passkeys/VerifyFactor", json=loot["registration"]),
            Probe("POST", f"{svc}/Passkeys/Challenges", json={"identity": ident["alice"]}),
            Probe("POST", f"{svc}/Passkeys/Challenges", json={"factor_sid": a.factors["alice"]}),
            Probe("POST", f"{svc}/Passkeys/Challenges", json={}),
            Probe("POST", f"{svc}/Passkeys/ApproveChallenge", json=loot["assertion"]),
            Probe("POST", f"{svc}/Passkeys/ApproveChallenge",
                  json=loot["usernameless_assertion"]),
            Probe("POST", f"{svc}/Entities", form={"Identity": "mallory-0001"}),
            Probe("GET", f"{svc}/Entities"),
            Probe("POST", f"{svc}/Webhooks",
                  form={"FriendlyName": "x", "WebhookUrl": "http://127.0.0.1:9/evil",
                        "EventTypes": "*"}),
            Probe("GET", f"{svc}/Webhooks"),
            Probe("GET", f"{svc}/Passkeys/WellKnown"),
        ]  # fmt: skip
        for hook in a.webhooks.values():
            probes += [
                Probe("GET", f"{svc}/Webhooks/{hook}"),
                Probe(
                    "POST", f"{svc}/Webhooks/{hook}", form={"WebhookUrl": "http://127.0.0.1:9/e"}
                ),
                Probe("DELETE", f"{svc}/Webhooks/{hook}"),
            ]
    # Entities, factors and challenges: under A's service, and under B's own service (where
    # B has an entity with the same identity as one of A's).
    for svc, who in [(svc_a[0], ident["alice"]), (svc_a[0], SHARED), (svc_a[1], ident["alice"]),
                     (svc_b, ident["alice"]), (svc_b, SHARED)]:  # fmt: skip
        ent = f"{svc}/Entities/{who}"
        if svc != svc_b or who != SHARED:  # B's own entity is B's to read
            probes += [
                Probe("GET", ent),
                Probe("DELETE", ent),
                Probe("GET", f"{ent}/Factors"),
                Probe("POST", f"{ent}/Factors", form={"FactorType": "passkeys"}),
                Probe("GET", f"{ent}/Challenges"),
                Probe("POST", f"{ent}/Challenges", form={"FactorSid": a.factors["alice"]}),
            ]
        for factor in a.factors.values():
            probes += [
                Probe("GET", f"{ent}/Factors/{factor}"),
                Probe("POST", f"{ent}/Factors/{factor}", form={"FriendlyName": "pwned"}),
                Probe("DELETE", f"{ent}/Factors/{factor}"),
            ]
        # Push-only operations on B's own entity refuse whatever the SID (60300), the same
        # for A's challenge as for one that never existed (checked by the twin request).
        push = {"status": 400, "codes": (60300,)} if (svc, who) == (svc_b, SHARED) else {}
        for challenge in a.challenges.values():
            probes += [
                Probe("GET", f"{ent}/Challenges/{challenge}"),
                Probe("POST", f"{ent}/Challenges/{challenge}", form={"AuthPayload": "1"}, **push),
                Probe("POST", f"{ent}/Challenges/{challenge}/Notifications", form={"Ttl": "6"},
                      **push),
            ]  # fmt: skip
    for hook in a.webhooks.values():
        probes += [
            Probe("GET", f"{svc_b}/Webhooks/{hook}"),
            Probe("POST", f"{svc_b}/Webhooks/{hook}", form={"Status": "enabled"}),
            Probe("DELETE", f"{svc_b}/Webhooks/{hook}"),
        ]
    # A's objects named in bodies sent to B's own service.
    factor_missing, challenge_missing, entity_missing = (60390,), (60391,), (60392,)
    probes += [
        Probe("POST", f"{svc_b}/Passkeys/VerifyFactor", json=loot["registration"],
              codes=challenge_missing),
        Probe("POST", f"{svc_b}/Passkeys/ApproveChallenge", json=loot["assertion"],
              codes=challenge_missing),
        Probe("POST", f"{svc_b}/Passkeys/ApproveChallenge", json=loot["usernameless_assertion"],
              codes=challenge_missing),
        # B's own usernameless challenge, signed with A's passkey (same RP id): A's
        # credential is not a passkey of B's service.
        Probe("POST", f"{svc_b}/Passkeys/ApproveChallenge", json=b_challenge, codes=factor_missing),
        Probe("POST", f"{svc_b}/Passkeys/Challenges", json={"factor_sid": a.factors["alice"]},
              codes=factor_missing),
        Probe("POST", f"{svc_b}/Passkeys/Challenges",
              json={"identity": SHARED, "factor_sid": a.factors["shared"]}, codes=factor_missing),
        Probe("POST", f"{svc_b}/Passkeys/Challenges", json={"identity": ident["alice"]},
              codes=entity_missing),
    ]  # fmt: skip
    # B's own lists, filtered by A's SIDs, and B's lists of services: B's, and empty of A.
    shared_b = f"{svc_b}/Entities/{SHARED}"
    ok: dict[str, Any] = {"status": 200, "codes": ()}
    probes += [
        Probe("GET", "/v2/Services", status=200, codes=()),
        Probe("POST", "/v2/Services", form={"FriendlyName": "b2"}, status=201, codes=()),
        Probe("GET", f"{shared_b}/Challenges?FactorSid={a.factors['shared']}", **ok),
        Probe("GET", f"{svc_b}/Entities", status=200, codes=()),
        Probe("GET", f"{svc_b}/Webhooks", status=200, codes=()),
        Probe("GET", f"/v2/AuditEvents?ServiceSid={a.services[0]}", **ok, own_trail=True),
        Probe("GET", "/v2/AuditEvents", **ok, own_trail=True),
    ]  # fmt: skip
    return probes


def _stand_in(text: str, a: Tenant) -> str:
    """`text` with A's SIDs and identities replaced by ones that never existed."""
    for value in [*a.services, *a.factors.values(), *a.challenges.values(), *a.webhooks.values()]:
        text = text.replace(value, value[:2] + "f" * 32)
    for key, value in a.identities.items():
        if key != "shared":
            text = text.replace(value, "nobody-0000")
    return text


def _rows_not_of_b(db_path: Any, b_account: str, b_services: set[str]) -> dict[str, list]:
    """Every stored row (all columns) except B's own: rows whose account is B, and rate
    limit windows keyed by B's account or services. B may change those; nothing else.
    (The shared configuration counter moves with B's own services and webhooks, and the
    tables' AUTOINCREMENT counters with B's own rows.)"""
    db = sqlite3.connect(db_path)
    try:
        out: dict[str, list] = {}
        tables = db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        for (table,) in tables:
            if table in ("config_version", "sqlite_sequence"):
                continue
            cursor = db.execute(f"SELECT * FROM {table} ORDER BY 1")
            names = [c[0] for c in cursor.description]
            rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

            def of_b(row: dict[str, Any], table: str = table) -> bool:
                if row.get("account_sid") == b_account or (
                    table == "accounts" and row.get("sid") == b_account
                ):
                    return True
                key = str(row.get("key", "")) if table == "rate_limits" else ""
                return any(m in key for m in (b_account, *b_services))

            out[table] = [r for r in rows if not of_b(r)]
        return out
    finally:
        db.close()


def test_another_account_reaches_nothing_of_this_one(limited_server: Server):
    server = limited_server
    with receiver() as rx:
        a, loot = _tenant_a(server.account("tenant-a"), rx.url)
        wait_for(lambda: len(rx.requests) >= 7)  # 4 created, 2 verified, 1 approved

        b_api = server.account("tenant-b")
        b_api.authenticator = Authenticator()
        b_service = b_api.create_service()["sid"]
        b_api.register(SHARED)
        b_api.post_form(
            f"{b_api.svc}/Webhooks",
            {"FriendlyName": "b", "WebhookUrl": "http://127.0.0.1:9/b", "EventTypes": "*",
             "Status": "disabled"},
        )  # fmt: skip
        key, secret = server.domain.accounts.create_api_key(b_api.account_sid, "b-key")
        b_own = b_api.challenge()  # usernameless, in B's service, same RP id as A's
        b_challenge = loot["authenticator"].get(b_own["options"], ORIGIN, loot["credential_id"])

        document = b_api.client.get("/openapi.json").json()
        probes = _matrix(a, b_service, loot, b_challenge)
        explicit = len(probes)
        probes += _generic_probes(document, probes, a)  # operations added since this was written
        _assert_every_operation_is_probed(document, probes)

        def rows() -> dict[str, list]:
            services = {s["sid"] for s in b_api.get("/v2/Services").json()["services"]}
            return _rows_not_of_b(b_api.db_path, b_api.account_sid, services)

        time.sleep(0.2)  # let the dispatcher finish anything due
        received = len(rx.requests)
        before = rows()
        sent = 0
        sent_by_b = " ".join(p.path + json.dumps(p.form or p.json) for p in probes)
        for auth in [b_api.auth, (key.sid, secret)]:
            for probe in probes:
                sent += _probe(b_api, auth, probe, a, sent_by_b)
        time.sleep(0.2)  # anything B caused would now be due, and sent
        after = rows()
        assert after == before, _diff(before, after)
        sent += _b_audit_trail_is_b_only(b_api, a, probes)
        assert len(rx.requests) == received, rx.requests[received:]
    report(
        f"isolation matrix: {len(probes)} probes x 2 credentials (auth token, API key) ="
        f" {2 * len(probes)} cases, {sent} requests (each not-found also sent for objects"
        f" that never existed: same answer),"
        f" {len(_operations(document))} operations ({len(probes) - explicit} probes generated"
        f" for operations added since); A's rows unchanged, no A webhook fired"
    )


def _b_audit_trail_is_b_only(b_api: Api, a: Tenant, probes: list[Probe]) -> int:
    """Every event of B's audit trail (passkeyd extension) is B's, whatever it names."""
    r = b_api.get("/v2/AuditEvents?PageSize=1000")
    assert r.status_code == 200, r.text
    events = r.json()["audit_events"]
    assert events and all(e["account_sid"] == b_api.account_sid for e in events)
    return 1


def _generic_probes(document: dict[str, Any], probes: list[Probe], a: Tenant) -> list[Probe]:
    """A probe for each operation the matrix above does not name: A's objects in every path
    parameter (a not-found), or, for a path without parameters, B's own view (no A in it)."""
    covered = _covered(document, probes)
    extra = []
    for method, template in sorted(_operations(document) - covered):
        path = template
        path = re.sub(r"\{(Sid|ServiceSid)\}", a.services[0], path, count=1)
        path = path.replace("{Identity}", a.identities["alice"])
        path = path.replace("/Factors/{Sid}", "/Factors/" + a.factors["alice"])
        path = path.replace("/Challenges/{Sid}", "/Challenges/" + a.challenges["pending"])
        path = path.replace("/Webhooks/{Sid}", "/Webhooks/" + a.webhooks["on"])
        path = re.sub(r"\{[^}]+\}", a.services[0], path)
        body: dict[str, Any] = {}
        if path == template:  # nothing of A's in the path: B's own collection
            if method == "GET":
                query = f"?ServiceSid={a.services[0]}"
                extra.append(Probe(method, path + query, status=200, codes=()))
            continue
        extra.append(Probe(method, path, form=body if method == "POST" else None))
    return extra


def _covered(document: dict[str, Any], probes: list[Probe]) -> set[tuple[str, str]]:
    templates = {
        (m, p): re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$")
        for m, p in _operations(document)
    }
    return {
        (m, p)
        for (m, p), rx in templates.items()
        for probe in probes
        if probe.method == m and rx.match(probe.path.split("?")[0])
    }


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path not in PUBLIC
        for method in item
        if method != "parameters"
    }


def _assert_every_operation_is_probed(document: dict[str, Any], probes: list[Probe]) -> None:
    missing = _operations(document) - _covered(document, probes)
    assert not missing, sorted(missing)


def _send(api: Api, auth: tuple[str, str], probe: Probe, path: str, body: Any) -> Any:
    if probe.form is not None:
        return api.client.request(probe.method, path, data=body, auth=auth)
    if probe.json is not None:
        return api.client.request(probe.method, path, json=body, auth=auth)
    return api.client.request(probe.method, path, auth=auth)


def _probe(api: Api, auth: tuple[str, str], probe: Probe, a: Tenant, sent_by_b: str) -> int:
    body = probe.form if probe.form is not None else probe.json
    r = _send(api, auth, probe, probe.path, body)
    where = f"{probe.method} {probe.path}"
    assert r.status_code == probe.status, (where, r.status_code, r.text[:300])
    if probe.codes:
        error = assert_twilio_error(r)
        assert error["code"] in probe.codes, (where, r.text[:300])
    # Nothing of A's, except what B itself put in the URL (a 20404 names the path).
    shown = r.text + json.dumps(dict(r.headers))
    sent = sent_by_b if probe.own_trail else probe.path
    leaked = {m for m in a.markers if m in shown and m not in sent}
    assert not leaked, (where, leaked, r.text[:500])
    if not probe.codes:
        return 1
    # The same request naming objects that never existed: the same answer.
    twin_path = _stand_in(probe.path, a)
    twin_body = json.loads(_stand_in(json.dumps(body), a)) if body is not None else None
    twin = _send(api, auth, probe, twin_path, twin_body)
    assert twin.status_code == r.status_code, (where, twin.text)
    assert twin.json()["code"] == r.json()["code"], (where, r.text, twin.text)
    assert _stand_in(r.json()["message"], a) == twin.json()["message"], (where, r.text, twin.text)
    return 2


def _diff(before: dict, after: dict) -> str:
    out = []
    for table in sorted(set(before) | set(after)):
        gone = [r for r in before.get(table, []) if r not in after.get(table, [])]
        new = [r for r in after.get(table, []) if r not in before.get(table, [])]
        if gone or new:
            out.append(f"{table}: removed {gone[:3]} added {new[:3]}")
    return "\n".join(out)
