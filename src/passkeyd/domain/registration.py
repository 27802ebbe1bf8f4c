"""Registration: create a passkey factor (P1), then verify it (P2)."""

from __future__ import annotations

import datetime
import secrets
from dataclasses import dataclass, replace
from typing import Any

from passkeyd.webauthn import (
    TIMEOUT_MS,
    CeremonyError,
    OriginPolicy,
    Step,
    VerificationFailed,
    creation_options,
    parse_registration,
    verify_registration,
)
from passkeyd.webauthn.trust import fingerprint, model_aaguid, model_key

from . import events
from .authentication import standings_on
from .clock import Clock
from .errors import (
    ChallengeExpired,
    ChallengeNotFound,
    IllegalFactorStatus,
    InvalidParam,
    NotFound,
    RegistrationRefused,
    TooManyRequests,
    UserDisplayNameMissing,
)
from .events import Events
from .identity import check_identity, new_identity
from .ids import new_sid
from .limits import RateLimiter
from .metadata import Metadata
from .models import Credential, Entity, Factor, FactorStatus, PasskeySettings
from .policy import (
    MAX_NAME_LENGTH,
    check_authenticator_lists,
    checks_attestation,
    resolve_policy,
)
from .steps import Steps, finish
from .store import CredentialConflict, InsertOutcome, StorageUnavailable, Store

CHALLENGE_BYTES = 32
# Writes of a new factor tried while its user's entity changes under it (see below).
ENTITY_ATTEMPTS = 5


@dataclass
class Registrations:
    store: Store
    clock: Clock
    limiter: RateLimiter
    metadata: Metadata

    def __post_init__(self) -> None:
        self.events = Events(self.store, self.clock)

    def create_factor(
        self,
        account_sid: str,
        service_sid: str,
        *,
        friendly_name: object,
        identity: object,
        config: PasskeySettings,
    ) -> tuple[Factor, dict[str, Any]]:
        """A new unverified factor and the creation options for navigator.credentials.create."""
        return finish(
            self.create_factor_steps(
                account_sid,
                service_sid,
                friendly_name=friendly_name,
                identity=identity,
                config=config,
            )
        )

    def create_factor_steps(
        self,
        account_sid: str,
        service_sid: str,
        *,
        friendly_name: object,
        identity: object,
        config: PasskeySettings,
        attempt: int = 1,
    ) -> Steps[tuple[Factor, dict[str, Any]]]:
        """`create_factor` in steps (see `steps`): it yields before its write."""
        service = self.store.get_service(account_sid, service_sid)
        if service is None:
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
        if friendly_name is not None and not isinstance(friendly_name, str):
            raise InvalidParam("Invalid parameter: friendly_name must be a string")
        if friendly_name is None or not friendly_name.strip():
            raise UserDisplayNameMissing("User display name not provided: friendly_name")
        if len(friendly_name) > MAX_NAME_LENGTH:
            raise InvalidParam(
                f"Invalid parameter: friendly_name is over {MAX_NAME_LENGTH} characters"
            )
        ident = new_identity() if identity is None else check_identity(identity)
        policy = resolve_policy(config, service.passkeys)
        now = self.clock()
        entity = self.store.get_entity(account_sid, service_sid, ident)
        new_entity = None
        if entity is None:  # created with the factor, in its write
            entity = new_entity = Entity(new_sid("YE"), account_sid, service_sid, ident, now, now)
        # One read for both the size limit and excludeCredentials (none for a new entity).
        active = (
            []
            if new_entity
            else self.store.active_factors(account_sid, service_sid, entity.sid, now)
        )
        if len(active) >= self.limiter.max_factors:
            raise _entity_full(self.limiter.max_factors, active, now)
        existing = [f for f in active if f.status is FactorStatus.VERIFIED]
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        factor = Factor(
            sid=new_sid("YF"),
            account_sid=account_sid,
            service_sid=service_sid,
            entity_sid=entity.sid,
            identity=entity.identity,
            friendly_name=friendly_name,
            status=FactorStatus.UNVERIFIED,
            policy=policy,
            registration_challenge=challenge,
            registration_expires=now + TIMEOUT_MS // 1000,
            credential=None,
            date_last_approved=None,
            date_created=now,
            date_updated=now,
        )
        created = self.events.deliveries(
            account_sid, service_sid, events.FACTOR_CREATED, events.factor_fields(factor)
        )
        rate = self.limiter.pending_hit("factor", f"{service_sid}:{ident}")
        yield
        outcome = self.store.insert_factor(
            factor, created, rate, entity=new_entity, max_factors=self.limiter.max_factors
        )
        if outcome is InsertOutcome.SERVICE_GONE:  # deleted meanwhile
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
        if outcome in (InsertOutcome.ENTITY_EXISTS, InsertOutcome.ENTITY_GONE):
            # A concurrent request created this identity's entity first: join it. Or the
            # entity read above was deleted meanwhile (with its passkeys): start a new one.
            # Each refusal means that another request changed this user (on PostgreSQL,
            # where requests for one user write at once: deleted, then made again by one
            # of several racing to register it): tried again a few times, not for ever.
            if attempt >= ENTITY_ATTEMPTS:
                raise StorageUnavailable("the entity kept changing; try again")
            return (
                yield from self.create_factor_steps(
                    account_sid,
                    service_sid,
                    friendly_name=friendly_name,
                    identity=ident,
                    config=config,
                    attempt=attempt + 1,
                )
            )
        if outcome is InsertOutcome.ENTITY_FULL:  # concurrent requests filled it meanwhile
            raise _entity_full(self.limiter.max_factors, [*active, factor], now)
        if outcome is not InsertOutcome.INSERTED:
            rule = self.limiter.rules["factor"]
            raise TooManyRequests(
                f"Too many requests to create factors for this entity: at most {rule.limit}"
                f" per {rule.window} s",
                retry_after=self.limiter.retry_after("factor"),
                code=60326,
            )
        options = creation_options(
            rp_id=policy.rp_id,
            rp_name=policy.rp_name,
            user_id=entity.sid.encode("ascii"),
            user_name=friendly_name,
            challenge=challenge,
            exclude=[
                (f.credential.credential_id, f.credential.transports)
                for f in existing
                if f.credential is not None and f.policy.rp_id == policy.rp_id
            ],
            authenticator_attachment=policy.authenticator_attachment,
            resident_key=policy.discoverable_credentials,
            user_verification=policy.user_verification,
            algorithms=policy.algorithms,
            attestation=policy.attestation,
            hints=policy.hints,
        )
        return factor, options

    def verify_factor(self, account_sid: str, service_sid: str, body: Any) -> Factor:
        return finish(self.verify_factor_steps(account_sid, service_sid, body))

    def verify_factor_steps(self, account_sid: str, service_sid: str, body: Any) -> Steps[Factor]:
        """Finish registration: find the factor by its challenge and verify the attestation.

        The factor's policy (relying party, origins, algorithms) is the one its options were
        made with; the service's attestation policy and AAGUID lists are read now, so a
        change to them applies at once. In steps (see `steps`): the attestation is verified
        before it yields, once, before its write."""
        service = self.store.get_service(account_sid, service_sid)
        if service is None:
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
        try:
            response = parse_registration(body)
        except CeremonyError as exc:
            raise RegistrationRefused(exc) from exc
        factor = self.store.find_factor_by_registration(
            account_sid, service_sid, response.client_data.challenge
        )
        if factor is None or factor.registration_challenge is None:
            raise ChallengeNotFound("Challenge not found: no factor awaits this challenge")
        if factor.status is FactorStatus.VERIFIED:
            raise IllegalFactorStatus("Illegal factor status: the factor is already verified")
        now = self.clock()
        if now >= factor.registration_expires:
            raise ChallengeExpired("Challenge expired: create a new factor")
        policy = factor.policy
        attestation_policy = service.passkeys.attestation_policy
        checked = checks_attestation(attestation_policy)
        try:
            registered = verify_registration(
                response,
                expected_challenge=factor.registration_challenge,
                expected_rp_id=policy.rp_id,
                expected_origins=OriginPolicy.build(
                    rp_id=policy.rp_id, origins=policy.rp_origins, top_origins=policy.top_origins
                ),
                require_user_verification=policy.user_verification == "required",
                # Read from the service now, as its other security policies are.
                require_user_presence=service.passkeys.conditional_create != "allow",
                expected_algorithms=policy.algorithms,
                trust_store=self.metadata.trust_store() if checked else None,
                # (`checked` accepts none and self attestation: no chain to check)
                require_attestation_chain=attestation_policy == "trusted",
                verification_time=datetime.datetime.fromtimestamp(now, datetime.UTC),
            )
            model = registered.aaguid
            if registered.metadata is not None:  # trusted: the model the chain vouches for
                model = model_aaguid(
                    registered.statement_fmt,
                    model,
                    registered.attestation_chain,
                    registered.metadata,
                )
            check_authenticator_lists(service.passkeys, model)
        except CeremonyError as exc:
            raise RegistrationRefused(exc) from exc
        attested_model: str | None = None
        attested_certificates: tuple[str, ...] = ()
        if registered.metadata is not None:  # what its sign-ins re-check (`standing`)
            chain = registered.attestation_chain
            attested_model = model_key(registered.metadata, chain, registered.aaguid)
            attested_certificates = tuple(
                sorted({fingerprint(der) for der in (*chain, *registered.trusted_path)})
            )
        credential = Credential(
            credential_id=registered.credential_id,
            public_key=registered.public_key,
            algorithm=registered.algorithm,
            sign_count=registered.sign_count,
            transports=response.transports,
            aaguid=registered.aaguid,
            fmt=registered.fmt,
            backup_eligible=registered.backup_eligible,
            backed_up=registered.backed_up,
            authenticator_attachment=response.authenticator_attachment,
            authenticator_name=self.metadata.authenticator_name(model)
            or (registered.metadata.description if registered.metadata else None),
            attested_model=attested_model,
            attested_certificates=attested_certificates,
            # (`required`: the browser made a discoverable one or none at all)
            discoverable=True
            if policy.discoverable_credentials == "required"
            else response.resident_key,
        )
        if checked and registered.metadata is None:
            # None or self attestation under `checked`: its sign-ins re-check the model it
            # claims (`credential_standing`), so a model the metadata already reports REVOKED
            # or compromised is refused now, not registered to have every sign-in refused.
            found = standings_on(self.metadata, now)(credential)
            if found is not None:
                entry, status = found
                raise RegistrationRefused(
                    VerificationFailed(
                        Step.ATTESTATION_TRUST,
                        f"the FIDO Metadata Service reports {entry.description} as {status}",
                    )
                )
        try:
            verified_events = self.events.deliveries(
                account_sid, service_sid, events.FACTOR_VERIFIED, events.factor_fields(factor)
            )
            yield
            completed = self.store.complete_registration(
                factor.sid, credential, now, verified_events
            )
        except CredentialConflict as exc:
            error = VerificationFailed(
                Step.CREDENTIAL_REGISTERED, "this passkey is already registered"
            )
            raise RegistrationRefused(error) from exc
        if not completed:  # verified by another request, expired or deleted meanwhile
            current = self.store.get_factor(account_sid, service_sid, factor.sid)
            if current is None:
                raise ChallengeNotFound("Challenge not found: no factor awaits this challenge")
            if current.status is not FactorStatus.VERIFIED:
                raise ChallengeExpired("Challenge expired: create a new factor")
            raise IllegalFactorStatus("Illegal factor status: the factor is already verified")
        # What complete_registration stored (a registered credential is not yet flagged).
        return replace(
            factor, status=FactorStatus.VERIFIED, credential=credential, date_updated=now
        )


def _entity_full(limit: int, active: list[Factor], now: int) -> TooManyRequests:
    """The entity holds `limit` passkeys: answered as Twilio answers too many factors for one
    entity (60326, 429). There is room again when an unverified one's registration expires;
    with none, only once one is deleted (Retry-After a day, Twilio's window for its limit)."""
    expiries = [f.registration_expires for f in active if f.status is FactorStatus.UNVERIFIED]
    return TooManyRequests(
        f"Too many requests to create factors for the entity: it holds {limit} passkeys"
        " (verified or awaiting registration), the most one entity may; delete one"
        + (", or retry when an unverified one's registration expires" if expiries else ""),
        retry_after=min(expiries) - now if expiries else 24 * 3600,
        code=60326,
    )
