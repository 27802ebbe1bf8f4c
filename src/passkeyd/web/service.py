"""The Verify service the demo signs people in with: created at start-up with the relying
party the demo serves, or an existing one named by --service-sid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import DemoConfig
from .verify import VerifyClient


@dataclass(frozen=True, slots=True)
class DemoService:
    sid: str
    rp_id: str
    origins: tuple[str, ...]
    user_verification: str
    created: bool

    @property
    def page_url(self) -> str:
        """Where a person opens the demo: an allowed origin, since WebAuthn refuses others."""
        return self.origins[0] + "/" if self.origins else ""


def service_form(config: DemoConfig, friendly_name: str = "passkeyd demo") -> dict[str, str]:
    form = {
        "FriendlyName": friendly_name,
        "Passkeys.RelyingParty.Id": config.rp_id,
        "Passkeys.RelyingParty.Name": config.rp_name,
        "Passkeys.RelyingParty.Origins": ",".join(config.origins),
        "Passkeys.AuthenticatorAttachment": "any",
        "Passkeys.DiscoverableCredentials": "preferred",
        "Passkeys.UserVerification": config.user_verification,
        "Passkeys.Attestation": config.attestation,
    }
    if config.attestation_policy is not None:
        form["Passkeys.AttestationPolicy"] = config.attestation_policy
    if config.algorithms is not None:
        form["Passkeys.Algorithms"] = ",".join(str(alg) for alg in config.algorithms)
    return form


def _from_json(service: dict[str, Any], *, created: bool) -> DemoService:
    passkeys = service.get("passkeys") or {}
    rp = passkeys.get("relying_party") or {}
    return DemoService(
        sid=str(service["sid"]),
        rp_id=str(rp.get("id") or ""),
        origins=tuple(rp.get("origins") or ()),
        user_verification=str(passkeys.get("user_verification") or ""),
        created=created,
    )


async def prepare_service(
    client: VerifyClient, config: DemoConfig, friendly_name: str = "passkeyd demo"
) -> DemoService:
    """Fetch the configured service, or create one. Raises VerifyError / PasskeydUnreachable,
    so a wrong URL or credential stops the demo at start-up rather than at the first sign-in."""
    if config.service_sid:
        return _from_json(await client.fetch_service(config.service_sid), created=False)
    form = service_form(config, friendly_name)
    return _from_json(await client.create_service(form), created=True)
