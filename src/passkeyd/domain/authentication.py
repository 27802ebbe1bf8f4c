"""Authentication: create a challenge (P3), then approve it with an assertion (P4)."""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from passkeyd.webauthn import (
    TIMEOUT_MS,
    AuthenticationResponse,
    CeremonyError,
    OriginPolicy,
    Step,
    VerificationFailed,
    parse_authentication,
    request_options,
    verify_authentication,
)
from passkeyd.webauthn.trust import (
    MetadataEntry,
    ModelRefused,
    TrustStore,
    standing,
)

from . import events
from .clock import Clock
from .errors import (
    AssertionRefused,
    ChallengeAlreadyResponded,
    ChallengeExpired,
    ChallengeNotFound,
    DomainError,
    EntityNotFound,
    FactorNotFound,
    FactorRelyingPartyMismatch,
    FactorSidInvalid,
    FactorUnverified,
    InvalidParam,
    NotFound,
    TooManyRequests,
)
from .events import Events
from .identity import check_identity
from .ids import is_sid, new_sid
from .limits import RateLimiter
from .metadata import Metadata
from .models import (
    Challenge,
    ChallengeStatus,
    Credential,
    Delivery,
    Factor,
    FactorStatus,
    PageRequest,
    PasskeySettings,
    RateHit,
    Service,
)
from .policy import (
    USER_VERIFICATION,
    checks_attestation,
    origins_in_force,
    service_requires_user_verification,
    usernameless_request,
)
from .steps import Steps, finish
from .store import ApproveOutcome, FailureOutcome, InsertOutcome, Store

CHALLENGE_BYTES = 32


def _asked_user_verification(factors: list[Factor], service: PasskeySettings) -> str:
    """What a challenge for these passkeys asks of user verification. The approval requires
    UV when the challenge asked `required`, or the answering passkey's own setting or the
    service's current one requires it of that passkey (§7.2 step 17 may require only what
    was asked). So: `required` when every passkey requires it; `preferred` when some do (an
    authenticator that can verify the user then does, and one that cannot, registered
    under a laxer setting, still signs in); otherwise the strictest of the others."""
    settings = {
        "required"
        if service_requires_user_verification(f.policy, service)
        else f.policy.user_verification
        for f in factors
    }
    if settings == {"required"}:
        return "required"
    if "required" in settings or "preferred" in settings:
        return "preferred"
    return "discouraged"


log = logging.getLogger("passkeyd.domain")


def credential_standing(
    trust_store: TrustStore, credential: Credential, today: str
) -> tuple[MetadataEntry, str] | None:
    """`standing` of a stored passkey: by what vouched for it when it registered under
    trusted attestation, else by the AAGUID it claims (a sign-in's re-check, and
    `passkeyd passkeys revoked`)."""
    return standing(
        trust_store,
        credential.aaguid,
        today,
        model=credential.attested_model,
        certificates=credential.attested_certificates,
    )


Standing = Callable[[Credential], "tuple[MetadataEntry, str] | None"]


def standings_on(metadata: Metadata, now: int) -> Standing:
    """`credential_standing` against the metadata in use, on the day `now` falls on, for the
    passkeys of one request (a sign-in, a challenge, a page of factors): the metadata is
    looked up once. Metadata that cannot be read or judged (a packaged file that is gone or
    cut short, read again at each look-up; a report that is not what MDS3 says) reports
    nothing: said once in the log, not a 500."""
    today = datetime.datetime.fromtimestamp(now, datetime.UTC).date().isoformat()
    try:
        trust_store = metadata.trust_store()
    except Exception:
        log.exception("a passkey's model could not be looked up in the FIDO metadata")
        return lambda credential: None
    said = False

    def standing_of(credential: Credential) -> tuple[MetadataEntry, str] | None:
        nonlocal said
        try:
            return credential_standing(trust_store, credential, today)
        except Exception:
            if not said:
                said = True
                log.exception("a passkey's model could not be looked up in the FIDO metadata")
            return None

    return standing_of


@dataclass
class Authentications:
    store: Store
    clock: Clock
    limiter: RateLimiter
    # Failed approvals that spend a challenge (`denied`; PASSKEYD_MAX_FAILED_ATTEMPTS_PER_
    # CHALLENGE). 0, the default: a failed approval leaves it pending until it expires, as
    # Twilio's Passkeys API does; the rate limits on failures bound the guessing.
    max_failed_attempts: int = 0
    # The FIDO metadata a trusted service's sign-ins re-check the passkey's model against.
    metadata: Metadata | None = None

    def __post_init__(self) -> None:
        self.events = Events(self.store, self.clock)

    def _factors_for(
        self, account_sid: str, service_sid: str, identity: object, factor_sid: object
    ) -> tuple[str, str, list[Factor]]:
        """(entity_sid, identity, verified factors) the challenge is restricted to."""
        if factor_sid is not None and not is_sid(factor_sid, "YF"):
            raise FactorSidInvalid("Factor SID invalid or not provided")
        if identity is None and factor_sid is None:
            return "", "", []
        if factor_sid is None:  # the common case: one read when the identity has passkeys
            found = self.store.verified_factors_of_identity(
                account_sid, service_sid, check_identity(identity)
            )
            if found:
                return found[0].entity_sid, found[0].identity, found
        entity = None
        if identity is not None:
            entity = self.store.get_entity(account_sid, service_sid, check_identity(identity))
            if entity is None:
                raise EntityNotFound("Entity not found")
        if factor_sid is not None:
            assert isinstance(factor_sid, str)
            factor = self.store.get_factor(account_sid, service_sid, factor_sid)
            if factor is None or (entity is not None and factor.entity_sid != entity.sid):
                raise FactorNotFound("Factor not found")
            if factor.status is not FactorStatus.VERIFIED:
                raise FactorUnverified("Factor is unverified")
            return factor.entity_sid, factor.identity, [factor]
        assert entity is not None
        factors = self.store.verified_factors(account_sid, service_sid, entity.sid)
        if not factors:
            any_factor = self.store.list_factors(
                account_sid, service_sid, entity.sid, PageRequest(page_size=1)
            )
            if not any_factor.items:
                raise EntityNotFound("Entity not found: the entity has no passkeys")
            raise FactorUnverified("Factor is unverified: the entity has no verified passkey")
        return entity.sid, entity.identity, factors

    def create_challenge(
        self,
        account_sid: str,
        service_sid: str,
        *,
        identity: object,
        factor_sid: object,
        user_verification: object = None,
    ) -> Challenge:
        return finish(
            self.create_challenge_steps(
                account_sid,
                service_sid,
                identity=identity,
                factor_sid=factor_sid,
                user_verification=user_verification,
            )
        )

    def create_challenge_steps(
        self,
        account_sid: str,
        service_sid: str,
        *,
        identity: object,
        factor_sid: object,
        user_verification: object = None,
    ) -> Steps[Challenge]:
        """`create_challenge` in steps (see `steps`): it yields before its one write.

        `user_verification` (a passkeyd extension) is what this sign-in asks of user
        verification: `required` makes the approval require it (a step-up before a payment,
        say), whatever the passkeys and the service ask; `preferred` or `discouraged` only
        change what the browser is asked, and never lower a challenge that would ask
        `required` (every one of the user's passkeys requires it)."""
        if user_verification is not None and user_verification not in USER_VERIFICATION:
            raise InvalidParam(
                "Invalid parameter: user_verification must be one of "
                + ", ".join(USER_VERIFICATION)
            )
        service = self.store.get_service(account_sid, service_sid)
        if service is None:
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
        entity_sid, ident, factors = self._factors_for(
            account_sid, service_sid, identity, factor_sid
        )
        if (
            len(factors) > 1
            and checks_attestation(service.passkeys.attestation_policy)
            and self.metadata
        ):
            # Not the passkeys this service's sign-in would refuse for their model's status,
            # so that the browser offers the others; unless no other is left (then the user
            # is told why, not asked by the browser for a passkey they do not have).
            standing_of = standings_on(self.metadata, self.clock())
            usable = [f for f in factors if f.credential is None or not standing_of(f.credential)]
            factors = usable or factors
        if factors:
            # One rpId per request: the service's own when some passkey is for it (a site
            # that moved asks for its passkeys at the new id), else the newest passkey's.
            rp_id = service.passkeys.rp_id
            if not any(f.policy.rp_id == rp_id for f in factors):
                rp_id = factors[-1].policy.rp_id
            factors = [f for f in factors if f.policy.rp_id == rp_id]
            rp_id, rp_name = factors[-1].policy.rp_id, factors[-1].policy.rp_name
            asked = _asked_user_verification(factors, service.passkeys)
        else:  # usernameless: the service's relying party
            rp_id, rp_name, asked = usernameless_request(service.passkeys)
        if user_verification is not None and asked != "required":
            asked = str(user_verification)
            if asked == "discouraged" and any(
                f.policy.user_verification == "required"
                or service_requires_user_verification(f.policy, service.passkeys)
                for f in factors
            ):
                # Not below `preferred` while an allowed passkey requires UV: its
                # authenticator, told `discouraged`, skips UV, and its approval is refused.
                asked = "preferred"
        challenge_bytes = secrets.token_bytes(CHALLENGE_BYTES)
        allow = [
            (f.credential.credential_id, f.credential.transports)
            for f in factors
            if f.credential is not None
        ]
        now = self.clock()
        challenge = Challenge(
            sid=new_sid("YC"),
            account_sid=account_sid,
            service_sid=service_sid,
            entity_sid=entity_sid,
            identity=ident,
            factor_sid=factor_sid if isinstance(factor_sid, str) else "",
            challenge=challenge_bytes,
            rp_id=rp_id,
            user_verification=asked,
            options=request_options(
                rp_id=rp_id,
                rp_name=rp_name,
                challenge=challenge_bytes,
                allow=allow,
                user_verification=asked,
                hints=service.passkeys.hints or (),
            ),
            allowed_credentials=tuple(a[0] for a in allow),
            status=ChallengeStatus.PENDING,
            failed_attempts=0,
            date_created=now,
            date_updated=now,
            date_responded=None,
            expiration_date=now + TIMEOUT_MS // 1000,
        )
        # The rate-limit hit and the pending-challenge bound are checked in the insert's
        # own transaction: one write per challenge.
        # Counted per user, whether asked for by identity or by one of its factors.
        rule = "usernameless" if not entity_sid else "challenge"
        if rule == "usernameless":  # nobody's: one budget for the service
            rate = self.limiter.pending_hit(rule, service_sid)
        else:
            rate = self.limiter.pending_hit(rule, f"{service_sid}:{ident}")
        yield
        outcome = self.store.insert_challenge(
            challenge, rate=rate, max_pending=self.limiter.max_pending_challenges
        )
        if outcome is InsertOutcome.SERVICE_GONE:  # deleted meanwhile
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
        if outcome is InsertOutcome.ENTITY_GONE:  # the user was deleted meanwhile
            if factor_sid is not None:
                raise FactorNotFound("Factor not found")
            raise EntityNotFound("Entity not found")
        if outcome is InsertOutcome.RATE_LIMITED:
            limit = rate.limit if rate else 0
            what = (
                "usernameless challenges per service"
                if rule == "usernameless"
                else "challenges per identity"
            )
            raise TooManyRequests(
                f"Too many requests: at most {limit} {what} in {self.limiter.rules[rule].window} s",
                retry_after=self.limiter.retry_after(rule),
            )
        if outcome is InsertOutcome.TOO_MANY_PENDING:
            # Room comes back when the first of them expires (or is answered before).
            first = self.store.first_pending_expiry(entity_sid, now)
            raise TooManyRequests(
                f"Too many pending challenges: at most {self.limiter.max_pending_challenges}"
                " per entity; answer or let one expire",
                retry_after=max(1, (now if first is None else first) + 1 - now),
            )
        return challenge

    def approve_challenge(self, account_sid: str, service_sid: str, body: Any) -> Challenge:
        return finish(self.approve_challenge_steps(account_sid, service_sid, body))

    def approve_challenge_steps(
        self, account_sid: str, service_sid: str, body: Any
    ) -> Steps[Challenge]:
        """`approve_challenge` in steps (see `steps`): the assertion is read and verified
        before the first yield; it yields before each write."""
        service = self.store.get_service(account_sid, service_sid)
        if service is None:
            raise NotFound(f"The requested resource /Services/{service_sid} was not found")
        # Read now, so a change applies to existing passkeys at once (with the origins).
        flag_counter = service.passkeys.counter_policy == "flag"
        try:
            response = parse_authentication(body)
        except CeremonyError as exc:
            raise AssertionRefused(exc) from exc
        challenge, factor = self.store.find_challenge_and_factor(
            account_sid, service_sid, response.client_data.challenge, response.credential_id
        )
        if challenge is None:
            raise ChallengeNotFound("Challenge not found")
        try:
            return (
                yield from self._approve(
                    account_sid, service, challenge, factor, response, flag_counter=flag_counter
                )
            )
        except DomainError as refusal:
            # The audit names the challenge refused, not only its service.
            refusal.concerns = challenge.sid
            raise

    def _approve(
        self,
        account_sid: str,
        service: Service,
        challenge: Challenge,
        factor: Factor | None,
        response: AuthenticationResponse,
        *,
        flag_counter: bool,
    ) -> Steps[Challenge]:
        service_sid = service.sid
        now = self.clock()
        self._check_pending(challenge, now)
        if not _owner_attempt(challenge, factor):
            # A passkey the service does not know, or not one this challenge asked for: such
            # failures share one budget per account. A user offering their own passkey is
            # never refused by it, so a flood of foreign assertions locks out no one.
            self.limiter.check("failed_auth", account_sid)
        try:
            if factor is None or factor.credential is None:
                unknown = FactorNotFound("Factor not found: no passkey has this credential id")
                if self._a_user_of(account_sid, service_sid, response.user_handle):
                    # The passkey names a user of this service, and none of its passkeys is
                    # this one (deleted, or never verified): the page may tell the browser to
                    # stop offering it. One made for another service with this RP id (the
                    # same site's staging, every app on localhost) must not be: the browser
                    # would delete a passkey that works there.
                    unknown.details = {"signal_unknown_credential": True}
                raise unknown
            if factor.status is not FactorStatus.VERIFIED:
                raise FactorUnverified("Factor is unverified")
            if challenge.allowed_credentials and factor.credential.credential_id not in (
                challenge.allowed_credentials
            ):
                raise AssertionRefused(
                    VerificationFailed(
                        Step.CREDENTIAL_ALLOWED, "this passkey was not allowed for this challenge"
                    )
                )
            if not _identified_owner(challenge, factor):
                raise AssertionRefused(
                    VerificationFailed(
                        Step.CREDENTIAL_OWNER,
                        "this passkey belongs to another user than the one this challenge is for",
                    )
                )
            if factor.policy.rp_id != challenge.rp_id:
                raise FactorRelyingPartyMismatch(
                    "Factor does not match the relying party of the challenge"
                )
            origins, top_origins = origins_in_force(factor.policy, service.passkeys)
            try:
                verified = verify_authentication(
                    response,
                    expected_challenge=challenge.challenge,
                    expected_rp_id=challenge.rp_id,
                    expected_origins=OriginPolicy.build(
                        rp_id=factor.policy.rp_id, origins=origins, top_origins=top_origins
                    ),
                    expected_user_handle=factor.entity_sid.encode("ascii"),
                    credential_public_key=factor.credential.public_key,
                    stored_sign_count=factor.credential.sign_count,
                    # The strictest of the challenge's, the passkey's own and the
                    # service's current policy.
                    require_user_verification="required"
                    in (challenge.user_verification, factor.policy.user_verification)
                    or service_requires_user_verification(factor.policy, service.passkeys),
                    require_user_handle=not challenge.allowed_credentials,
                    counter_must_grow=not flag_counter,
                )
                if (
                    checks_attestation(service.passkeys.attestation_policy)
                    and self.metadata is not None
                ):
                    self._check_standing(factor.credential, now)
            except CeremonyError as exc:
                refusal = AssertionRefused(exc)
                # What follows reads the challenge and the budget as the write sees them.
                yield
                # The identity's failure budget refuses only assertions that fail: one that
                # verifies is approved even when the budget is spent, so nobody can lock a
                # user out by failing in their name (credential ids are not secret). So it
                # is read only here, once the assertion has failed.
                over_budget: TooManyRequests | None = None
                try:
                    self.limiter.check("approve", f"{service_sid}:{factor.entity_sid}")
                except TooManyRequests as budget:
                    over_budget = budget
                if over_budget is not None:
                    # Answered 429, and counted on the challenge like any failure (its fifth
                    # spends it). Replays racing their approved twin are replays (60322).
                    latest = self.store.get_challenge(account_sid, service_sid, challenge.sid)
                    self._check_pending(latest or challenge, now)
                    self._record_failure(challenge, factor, refusal, now)
                    raise over_budget from exc
                raise refusal from exc
        except (
            AssertionRefused,
            FactorNotFound,
            FactorUnverified,
            FactorRelyingPartyMismatch,
        ) as refusal:
            # A concurrent request may have approved this very challenge while this one was
            # verifying (and moved the counter): then the answer is "already responded".
            # Read with the write lock held, so that it is still so when the failure is
            # written.
            yield
            latest = self.store.get_challenge(account_sid, service_sid, challenge.sid)
            if latest is not None:
                self._check_pending(latest, now)
            self._record_failure(challenge, factor, refusal, now)
            raise
        approved: list[Delivery] = []
        backup_changed: list[Delivery] = []
        on_flag: list[Delivery] = []
        if self.events.any_enabled(account_sid, service_sid):  # (else none is built)
            approved = self.events.deliveries(
                account_sid,
                service_sid,
                events.CHALLENGE_APPROVED,
                events.challenge_fields(challenge, factor, "approved"),
            )
            # Whether the backup state (BS) changed is decided where it is written too: an
            # approval racing this one (the passkey synced to a second device) may have
            # changed it since the factor was read. The store sends this only if it did.
            backup_changed = self.events.deliveries(
                account_sid,
                service_sid,
                events.BACKUP_STATE_CHANGED,
                {**events.factor_fields(factor), "backed_up": str(verified.backed_up).lower()},
            )
            # CounterPolicy=flag: approved, flagged, announced. Whether the counter grew is
            # decided where it is written, not only here: a concurrent approval (another
            # worker, the clone) may have moved the stored counter up to or past this one
            # since it was read, and the write then flags the factor. So the announcement
            # goes with the flag, written by the store only when it flags.
            if flag_counter:
                on_flag = self.events.deliveries(
                    account_sid,
                    service_sid,
                    events.COUNTER_REGRESSED,
                    {
                        **events.factor_fields(factor),
                        "challenge_sid": challenge.sid,
                        "outcome": "approved",
                    },
                )
        # A BE flag that changed since registration is recorded, not refused: iCloud Keychain
        # passkeys made with BE=0 report BE=1 later (go-webauthn#335).
        yield
        outcome = self.store.approve_challenge(
            challenge,
            factor,
            new_sign_count=verified.sign_count,
            backed_up=verified.backed_up,
            now=now,
            deliveries=approved,
            on_flag=on_flag,
            on_backup_change=backup_changed,
            backup_eligible_changed=verified.backup_eligible != factor.credential.backup_eligible,
            flag_counter_regression=flag_counter,
            # A challenge that allowed no credential (usernameless) is answered only by a
            # discoverable passkey: known now, if its browser did not say at registration.
            discovered=not challenge.allowed_credentials
            and factor.credential.discoverable is not True,
        )
        if outcome is ApproveOutcome.NOT_PENDING:
            latest = self.store.get_challenge(account_sid, service_sid, challenge.sid)
            if latest is None:  # deleted meanwhile, with its user: as if deleted before
                raise ChallengeNotFound("Challenge not found")
            self._check_pending(latest, now)
            raise ChallengeAlreadyResponded("Challenge already responded")
        if outcome is ApproveOutcome.COUNTER_RACE:
            race = AssertionRefused(
                VerificationFailed(Step.SIGN_COUNT, "the signature counter did not increase")
            )
            yield
            self._record_failure(challenge, factor, race, now)
            raise race
        if outcome is ApproveOutcome.FACTOR_GONE:  # deleted while the assertion was verified
            gone = FactorNotFound("Factor not found: no passkey has this credential id")
            yield
            # Counted as a foreign passkey's failure (its passkey is gone), but never refused
            # by that budget: the request offered its owner's passkey.
            self._record_failure(challenge, None, gone, now, capped=False)
            raise gone
        return replace(
            challenge,
            status=ChallengeStatus.APPROVED,
            entity_sid=factor.entity_sid,
            identity=factor.identity,
            factor_sid=factor.sid,
            date_updated=now,
            date_responded=now,
        )

    def _check_standing(self, credential: Credential, now: int) -> None:
        """`standings_on` the metadata in use, raising the refusal. Metadata that cannot be
        read or judged refuses no sign-in, as metadata that does not verify does not."""
        assert self.metadata is not None
        found = standings_on(self.metadata, now)(credential)
        if found is not None:
            raise ModelRefused(*found)

    def _a_user_of(self, account_sid: str, service_sid: str, user_handle: bytes | None) -> bool:
        """Whether an assertion's user handle is an entity of this service (its SID, as the
        creation options' `user.id`)."""
        sid = (user_handle or b"").decode("ascii", "replace")
        return is_sid(sid, "YE") and self.store.has_entity(account_sid, service_sid, sid)

    def _record_failure(
        self,
        challenge: Challenge,
        factor: Factor | None,
        refusal: Exception,
        now: int,
        *,
        capped: bool | None = None,
    ) -> None:
        """Count the failure; a counter that went backwards, a passkey whose model the
        metadata now refuses and a challenge spent by its last allowed failure are events.
        A foreign passkey's failure that would pass the account's budget is counted nowhere
        and answered 429 instead: concurrent ones all passed the budget's first check,
        before any of them was counted. (`capped`: whether that budget may refuse it; by
        default, when the passkey is not its owner's.)"""
        account_sid, service_sid = challenge.account_sid, challenge.service_sid
        announced: list[Delivery] = []
        if (
            factor is not None
            and isinstance(refusal, AssertionRefused)
            and refusal.error.step is Step.SIGN_COUNT
        ):
            announced = self.events.deliveries(
                account_sid,
                service_sid,
                events.COUNTER_REGRESSED,
                {
                    **events.factor_fields(factor),
                    "challenge_sid": challenge.sid,
                    "outcome": "refused",  # CounterPolicy=refuse: once per such assertion
                },
            )
        if (
            factor is not None
            and isinstance(refusal, AssertionRefused)
            and isinstance(refusal.error, ModelRefused)
        ):
            announced += self.events.deliveries(
                account_sid,
                service_sid,
                events.AUTHENTICATOR_REFUSED,
                {
                    **events.factor_fields(factor),
                    "challenge_sid": challenge.sid,
                    "authenticator": refusal.error.authenticator,
                    "status": refusal.error.status,
                },
            )
        spent = self.events.deliveries(
            account_sid,
            service_sid,
            events.CHALLENGE_DENIED,
            {
                "entity_identity": factor.identity if factor else challenge.identity,
                "factor_sid": factor.sid if factor else challenge.factor_sid,
                "factor_type": "passkeys",
                "factor_friendly_name": factor.friendly_name if factor else "",
                "challenge_sid": challenge.sid,
                "challenge_status": "denied",
            },
        )
        outcome = self.store.record_failed_attempt(
            challenge.sid,
            max_attempts=self.max_failed_attempts or None,
            now=now,
            deliveries=announced,
            on_spent=spent,
            rate_hits=self._failure_hits(account_sid, challenge, factor),
            capped=not _owner_attempt(challenge, factor) if capped is None else capped,
        )
        if outcome is FailureOutcome.NOT_PENDING:
            # Answered, spent or deleted since it was read (on PostgreSQL the read above and
            # this write are not under one lock): answered as an attempt after that is.
            latest = self.store.get_challenge(account_sid, service_sid, challenge.sid)
            if latest is None:
                raise ChallengeNotFound("Challenge not found")
            self._check_pending(latest, now)
        if outcome is FailureOutcome.OVER_LIMIT:
            rule = self.limiter.rules["failed_auth"]
            raise TooManyRequests(
                f"Too many requests: at most {rule.limit} per {rule.window} s",
                retry_after=self.limiter.retry_after("failed_auth"),
            )

    def _failure_hits(
        self, account_sid: str, challenge: Challenge, factor: Factor | None
    ) -> list[RateHit]:
        """What a failed approval attempt counts, in its own transaction: a failure for
        the identity whose own passkey it offered, or else one for the account (foreign
        passkeys). An approval counts nothing."""
        if _owner_attempt(challenge, factor):
            assert factor is not None
            hit = self.limiter.pending_hit("approve", f"{factor.service_sid}:{factor.entity_sid}")
        else:
            hit = self.limiter.pending_hit("failed_auth", account_sid)
        return [hit] if hit is not None else []

    @staticmethod
    def _check_pending(challenge: Challenge, now: int) -> None:
        status = challenge.effective_status(now)
        if status is ChallengeStatus.EXPIRED:
            raise ChallengeExpired("Challenge expired")
        if status is ChallengeStatus.DENIED:  # spent by failed attempts: say so
            raise ChallengeAlreadyResponded(
                "Challenge already responded: it was denied after"
                f" {challenge.failed_attempts} failed attempts; create a new challenge"
            )
        if status is not ChallengeStatus.PENDING:
            raise ChallengeAlreadyResponded("Challenge already responded")


def _owner_attempt(challenge: Challenge, factor: Factor | None) -> bool:
    """The assertion names a verified passkey that this challenge accepts: its owner's
    attempt (someone else's passkey offered to the challenge is not)."""
    return (
        factor is not None
        and factor.credential is not None
        and factor.status is FactorStatus.VERIFIED
        and (
            not challenge.allowed_credentials
            or factor.credential.credential_id in challenge.allowed_credentials
        )
        and _identified_owner(challenge, factor)
    )


def _identified_owner(challenge: Challenge, factor: Factor) -> bool:
    """§7.2.6: a challenge made for a user (an identity, or one of its factors) accepts
    only that user's passkeys; a usernameless one, anyone's. The credential id alone does
    not say so: a passkey deleted while its challenge was pending leaves its id free, and
    another user of the service may register a credential under it (ids are not secret,
    and a `none` attestation signs nothing)."""
    if challenge.entity_sid and factor.entity_sid != challenge.entity_sid:
        return False
    return not challenge.factor_sid or factor.sid == challenge.factor_sid
