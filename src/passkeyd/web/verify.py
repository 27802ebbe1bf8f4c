"""The Verify v2 calls the demo's backend makes, as any customer's backend would: HTTP with the
account's credentials, which stay on the server. Every refusal becomes a `VerifyError` carrying
Twilio's code and message; a passkeyd that cannot be reached becomes `PasskeydUnreachable`."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx2

REQUEST_TIMEOUT = 10.0
# A user has a handful of passkeys; one page of passkeyd's largest size lists them all.
FACTORS_PAGE_SIZE = 1000


class VerifyError(Exception):
    """passkeyd refused a request: Twilio's `{code, message, status}`."""

    def __init__(
        self, status: int, code: int, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.details = details or {}


class PasskeydUnreachable(Exception):
    """No HTTP answer from passkeyd (connection refused, timeout, not JSON)."""


def _loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(p, safe="") for p in parts)


class VerifyClient:
    """One Verify service's Passkeys, Entities and Factors endpoints, plus Services."""

    def __init__(self, base_url: str, account_sid: str, auth_token: str) -> None:
        self._http = httpx2.AsyncClient(
            base_url=base_url,
            auth=(account_sid, auth_token),
            timeout=REQUEST_TIMEOUT,
            # A proxy from the environment must not see loopback traffic or the credentials.
            trust_env=not _loopback(base_url),
            headers={"Accept": "application/json"},
        )
        self.base_url = base_url

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def answers(self, timeout: float = REQUEST_TIMEOUT) -> bool:
        """Whether passkeyd answers HTTP at all within `timeout` seconds (`GET /healthz`,
        whatever its status)."""
        try:
            await self._http.get("/healthz", timeout=timeout)
        except httpx2.HTTPError:
            return False
        return True

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(method, path, json=json, data=form, params=params)
        except httpx2.HTTPError as exc:
            raise PasskeydUnreachable(f"{method} {path}: {str(exc) or type(exc).__name__}") from exc
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError as exc:
            raise PasskeydUnreachable(
                f"{method} {path}: HTTP {response.status_code} without a JSON body"
            ) from exc
        if response.status_code >= 400:
            if not isinstance(body, dict):
                body = {}
            details = body.get("details")
            raise VerifyError(
                response.status_code,
                int(body.get("code") or 0),
                str(body.get("message") or ""),
                details if isinstance(details, dict) else None,
            )
        return body

    # --- Services (form bodies) ------------------------------------------------------------

    async def create_service(self, form: Mapping[str, str]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/v2/Services", form=form)
        return result

    async def fetch_service(self, service_sid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", _path("v2", "Services", service_sid))
        return result

    # --- Passkeys ceremonies (JSON bodies) -------------------------------------------------

    async def create_factor(
        self,
        service_sid: str,
        *,
        identity: str,
        friendly_name: str,
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new unverified passkey factor; its `options` go to navigator.credentials.create.
        `config`: the factor's own settings (`user_verification`, `attestation`, ...)."""
        body: dict[str, Any] = {"friendly_name": friendly_name, "identity": identity}
        if config:
            body["config"] = dict(config)
        result: dict[str, Any] = await self._call(
            "POST", _path("v2", "Services", service_sid, "Passkeys", "Factors"), json=body
        )
        return result

    async def verify_factor(self, service_sid: str, credential: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            _path("v2", "Services", service_sid, "Passkeys", "VerifyFactor"),
            json=credential,
        )
        return result

    async def create_challenge(
        self, service_sid: str, *, identity: str | None, user_verification: str | None = None
    ) -> dict[str, Any]:
        """A sign-in challenge; without an identity, any discoverable passkey may answer it.
        `user_verification`: what this sign-in asks of it (`required`: a step-up)."""
        body = {"identity": identity} if identity is not None else {}
        if user_verification is not None:
            body["user_verification"] = user_verification
        result: dict[str, Any] = await self._call(
            "POST", _path("v2", "Services", service_sid, "Passkeys", "Challenges"), json=body
        )
        return result

    async def approve_challenge(self, service_sid: str, assertion: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            _path("v2", "Services", service_sid, "Passkeys", "ApproveChallenge"),
            json=assertion,
        )
        return result

    # --- an entity's factors (form bodies) -------------------------------------------------

    async def fetch_entity(self, service_sid: str, identity: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "GET", _path("v2", "Services", service_sid, "Entities", identity)
        )
        return result

    async def list_factors(self, service_sid: str, identity: str) -> list[dict[str, Any]]:
        page = await self._call(
            "GET",
            _path("v2", "Services", service_sid, "Entities", identity, "Factors"),
            params={"PageSize": str(FACTORS_PAGE_SIZE)},
        )
        factors: list[dict[str, Any]] = page.get("factors", [])
        return factors

    async def rename_factor(
        self, service_sid: str, identity: str, factor_sid: str, friendly_name: str
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            _path("v2", "Services", service_sid, "Entities", identity, "Factors", factor_sid),
            form={"FriendlyName": friendly_name},
        )
        return result

    async def delete_factor(self, service_sid: str, identity: str, factor_sid: str) -> None:
        await self._call(
            "DELETE",
            _path("v2", "Services", service_sid, "Entities", identity, "Factors", factor_sid),
        )
