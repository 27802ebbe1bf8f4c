"""How the load generator talks to each system: whole flows over one keep-alive connection.

* `PasskeydDriver` drives passkeyd through its real Twilio-compatible API (HTTP Basic auth,
  P1 Factors + P2 VerifyFactor; P3 Challenges + P4 ApproveChallenge).
* `PeerDriver` drives the peers through the benchmark's small JSON protocol
  (bench/README.md): /registration/{options,verify}, /authentication/{options,verify}.

A flow raises `FlowError` unless every request got its expected status and body, so only
complete, successful flows are counted.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson

from .authn import ORIGIN, RP_ID, RP_NAME, Authenticator, KeyPool
from .http import Connection, RequestTemplate, basic_auth


class FlowError(Exception):
    """A request of a flow got an unexpected status or body."""


@dataclass
class User:
    """One virtual user: one connection's identity and the authenticator holding its passkey."""

    name: str
    authenticator: Authenticator = field(default_factory=Authenticator)


def _expect(step: str, response: tuple[int, bytes], status: int) -> dict[str, Any]:
    code, body = response
    if code != status:
        raise FlowError(f"{step}: HTTP {code} (want {status}): {body[:200]!r}")
    data = orjson.loads(body)
    if not isinstance(data, dict):
        raise FlowError(f"{step}: the body is not a JSON object")
    return data


class Driver(Protocol):
    name: str

    async def prepare(self, conn: Connection) -> None: ...
    async def enroll(self, conn: Connection, name: str) -> User: ...
    async def register(self, conn: Connection, user: User) -> None: ...
    async def authenticate(self, conn: Connection, user: User) -> None: ...


class PasskeydDriver:
    """passkeyd's Twilio Verify Passkeys API."""

    def __init__(self, host: str, account_sid: str, auth_token: str, name: str = "passkeyd"):
        self.name = name
        self.host = host
        self.service_sid = ""
        self._auth = {"Authorization": basic_auth(account_sid, auth_token)}
        self._keys = KeyPool()
        self._serial = itertools.count()

    async def prepare(self, conn: Connection) -> None:
        form = {
            "FriendlyName": "passkeyd benchmark",
            "Passkeys.RelyingParty.Id": RP_ID,
            "Passkeys.RelyingParty.Name": RP_NAME,
            "Passkeys.RelyingParty.Origins": ORIGIN,
            "Passkeys.AuthenticatorAttachment": "platform",
            "Passkeys.DiscoverableCredentials": "preferred",
            "Passkeys.UserVerification": "preferred",
        }
        create = RequestTemplate(
            "POST", "/v2/Services", self.host, "application/x-www-form-urlencoded", self._auth
        )
        service = _expect(
            "create service", await conn.send(create.render(urlencode(form).encode())), 201
        )
        self.use_service(service["sid"])

    def use_service(self, service_sid: str) -> None:
        self.service_sid = service_sid
        base = f"/v2/Services/{service_sid}/Passkeys"
        self._p1 = RequestTemplate("POST", base + "/Factors", self.host, headers=self._auth)
        self._p2 = RequestTemplate("POST", base + "/VerifyFactor", self.host, headers=self._auth)
        self._p3 = RequestTemplate("POST", base + "/Challenges", self.host, headers=self._auth)
        self._p4 = RequestTemplate(
            "POST", base + "/ApproveChallenge", self.host, headers=self._auth
        )

    async def enroll(self, conn: Connection, name: str) -> User:
        """A user with one verified passkey, made through the API (outside any timed loop)."""
        user = User(name)
        body = orjson.dumps({"friendly_name": name, "identity": name})
        factor = _expect("P1 Factors", await conn.send(self._p1.render(body)), 201)
        credential = user.authenticator.create(factor["options"], ORIGIN)
        verified = _expect(
            "P2 VerifyFactor", await conn.send(self._p2.render(orjson.dumps(credential))), 200
        )
        if verified.get("status") != "verified":
            raise FlowError(f"P2 VerifyFactor: status {verified.get('status')!r}")
        return user

    async def register(self, conn: Connection, user: User) -> None:
        """P1 + P2 for a new identity, `none` attestation."""
        identity = f"{user.name}-{next(self._serial)}"
        body = orjson.dumps({"friendly_name": identity, "identity": identity})
        factor = _expect("P1 Factors", await conn.send(self._p1.render(body)), 201)
        credential = self._keys.create(factor["options"], ORIGIN)
        verified = _expect(
            "P2 VerifyFactor", await conn.send(self._p2.render(orjson.dumps(credential))), 200
        )
        if verified.get("status") != "verified":
            raise FlowError(f"P2 VerifyFactor: status {verified.get('status')!r}")

    async def authenticate(self, conn: Connection, user: User) -> None:
        """P3 for the user's identity + P4 with a fresh assertion."""
        body = orjson.dumps({"identity": user.name})
        challenge = _expect("P3 Challenges", await conn.send(self._p3.render(body)), 201)
        assertion = user.authenticator.get(challenge["options"], ORIGIN)
        approved = _expect(
            "P4 ApproveChallenge", await conn.send(self._p4.render(orjson.dumps(assertion))), 200
        )
        if approved.get("status") != "approved":
            raise FlowError(f"P4 ApproveChallenge: status {approved.get('status')!r}")


class PeerDriver:
    """The peers' common protocol (no auth, JSON in and out, 200 on success)."""

    def __init__(self, host: str, name: str):
        self.name = name
        self.host = host
        self._ro = RequestTemplate("POST", "/registration/options", host)
        self._rv = RequestTemplate("POST", "/registration/verify", host)
        self._ao = RequestTemplate("POST", "/authentication/options", host)
        self._av = RequestTemplate("POST", "/authentication/verify", host)
        self._keys = KeyPool()
        self._serial = itertools.count()

    async def prepare(self, conn: Connection) -> None:
        return None

    async def _register(self, conn: Connection, username: str, user: User | None) -> None:
        body = orjson.dumps({"username": username})
        started = _expect("registration/options", await conn.send(self._ro.render(body)), 200)
        options = started["options"]
        if user is not None:
            credential = user.authenticator.create(options, ORIGIN)
        else:
            credential = self._keys.create(options, ORIGIN)
        body = orjson.dumps({"session": started["session"], "credential": credential})
        done = _expect("registration/verify", await conn.send(self._rv.render(body)), 200)
        if done.get("verified") is not True:
            raise FlowError(f"registration/verify: {done!r}")

    async def enroll(self, conn: Connection, name: str) -> User:
        user = User(name)
        await self._register(conn, name, user)
        return user

    async def register(self, conn: Connection, user: User) -> None:
        await self._register(conn, f"{user.name}-{next(self._serial)}", None)

    async def authenticate(self, conn: Connection, user: User) -> None:
        body = orjson.dumps({"username": user.name})
        started = _expect("authentication/options", await conn.send(self._ao.render(body)), 200)
        assertion = user.authenticator.get(started["options"], ORIGIN)
        body = orjson.dumps({"session": started["session"], "credential": assertion})
        done = _expect("authentication/verify", await conn.send(self._av.render(body)), 200)
        if done.get("verified") is not True:
            raise FlowError(f"authentication/verify: {done!r}")


class EchoDriver:
    """The HTTP floor: one trivial JSON POST per 'flow'."""

    name = "bare-starlette"

    def __init__(self, host: str):
        self._echo = RequestTemplate("POST", "/echo", host)
        self._body = orjson.dumps({"challenge": uuid.uuid4().hex, "n": 1})

    async def echo(self, conn: Connection, user: User) -> None:
        code, body = await conn.send(self._echo.render(self._body))
        if code != 200:
            raise FlowError(f"echo: HTTP {code}: {body[:200]!r}")
