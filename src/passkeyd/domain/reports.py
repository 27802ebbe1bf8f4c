"""Passkeys whose authenticator model the FIDO metadata now reports REVOKED or compromised,
found across every service (`passkeyd passkeys revoked`), and announced once each
(`--announce`): an event `factor.authenticator_reported` to the webhooks of its service
that subscribe, and a record of the status announced, so that a later run (the next
day's, another host's, or one running at the same time) does not repeat it. A passkey is
announced again only when its model is reported in another status."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from passkeyd.webauthn.trust import reported_model_keys, reported_models

from . import events
from .authentication import credential_standing, standings_on
from .clock import Clock
from .metadata import Metadata
from .models import AuditEvent, Factor
from .policy import checks_attestation
from .store import Store


@dataclass(frozen=True)
class ReportedPasskey:
    factor: Factor
    authenticator: str  # the model, as the metadata describes it
    status: str  # the status reported: REVOKED, ATTESTATION_KEY_COMPROMISE, ...
    refused_at_sign_in: bool  # its service trusts only authenticators in good standing


@dataclass
class Reports:
    store: Store
    clock: Clock
    metadata: Metadata

    def __post_init__(self) -> None:
        self.events = events.Events(self.store, self.clock)

    def reported(self, account_sid: str | None = None) -> Iterator[ReportedPasskey]:
        """The verified passkeys that a trusted service's sign-in would refuse today (as
        `credential_standing` re-checks them), of every account or of one, by seq."""
        trust_store = self.metadata.trust_store()
        today = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC).date().isoformat()
        trusted: dict[tuple[str, str], bool] = {}
        for factor in self.store.verified_factors_to_recheck(
            reported_models(trust_store, today),
            reported_model_keys(trust_store, today),
            account_sid,
        ):
            assert factor.credential is not None  # (verified)
            found = credential_standing(trust_store, factor.credential, today)
            if found is None:
                continue
            key = (factor.account_sid, factor.service_sid)
            if key not in trusted:
                service = self.store.get_service(*key)
                policy = service.passkeys.attestation_policy if service else None
                trusted[key] = checks_attestation(policy)
            entry, status = found
            yield ReportedPasskey(factor, entry.description, status, trusted[key])

    def status_of(self, factor: Factor) -> str | None:
        """The status the metadata in use reports a verified passkey's model in today, when
        a trusted service's sign-in would refuse it for that (reads of the factor show it),
        else None. Metadata that cannot be read reports none (said in the log), as a
        sign-in's re-check refuses nothing then."""
        return self.statuses()(factor)

    def statuses(self) -> Callable[[Factor], str | None]:
        """`status_of` for the factors of one answer (a page of the list): the metadata is
        looked up once."""
        standing_of = standings_on(self.metadata, self.clock())

        def status(factor: Factor) -> str | None:
            found = None if factor.credential is None else standing_of(factor.credential)
            return None if found is None else found[1]

        return status

    def announce(self, passkey: ReportedPasskey, actor: str) -> bool:
        """Announce the passkey's status unless it was announced already: True when this
        call did. The event goes to the service's webhooks that subscribe to it (none
        may), and the announcement into its account's audit trail, as made by `actor`:
        both in the transaction that records the status, so neither is without the other
        (a run killed, or whose database went away, before a buffered record was written
        left announcements no later run would audit)."""
        factor, now = passkey.factor, self.clock()
        deliveries = self.events.deliveries(
            factor.account_sid,
            factor.service_sid,
            events.AUTHENTICATOR_REPORTED,
            {
                **events.factor_fields(factor),
                "aaguid": factor.credential.aaguid if factor.credential else "",
                "authenticator": passkey.authenticator,
                "status": passkey.status,
                "refused_at_sign_in": str(passkey.refused_at_sign_in).lower(),
            },
        )
        record = AuditEvent(
            account_sid=factor.account_sid,
            service_sid=factor.service_sid,
            actor=actor,
            action="announce_authenticator_status",
            resource=factor.sid,
            outcome="ok",
            code=0,
            step="",
            request_id="",
            date_created=now,
        )
        return self.store.announce_report(
            factor.account_sid, factor.sid, passkey.status, deliveries, now, audit=[record]
        )
