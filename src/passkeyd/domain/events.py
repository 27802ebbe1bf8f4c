"""Webhook events: which change emits what, and to which of a service's webhooks.

The deliveries built here are handed to the storage call that makes the change, which
writes them to the outbox in the same transaction (so an event exists if and only if its
change was committed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .clock import Clock, iso
from .models import Challenge, Delivery, Factor
from .store import Store

FACTOR_CREATED = "factor.created"
FACTOR_VERIFIED = "factor.verified"
FACTOR_DELETED = "factor.deleted"
CHALLENGE_APPROVED = "challenge.approved"
CHALLENGE_DENIED = "challenge.denied"
# passkeyd's own:
BACKUP_STATE_CHANGED = "factor.backup_state_changed"
COUNTER_REGRESSED = "factor.counter_regressed"
AUTHENTICATOR_REFUSED = "factor.authenticator_refused"
AUTHENTICATOR_REPORTED = "factor.authenticator_reported"

EVENT_TYPES = (
    FACTOR_CREATED,
    FACTOR_VERIFIED,
    FACTOR_DELETED,
    CHALLENGE_APPROVED,
    CHALLENGE_DENIED,
    BACKUP_STATE_CHANGED,
    COUNTER_REGRESSED,
    AUTHENTICATOR_REFUSED,
    AUTHENTICATOR_REPORTED,
)


def factor_fields(factor: Factor) -> dict[str, str]:
    return {
        "entity_identity": factor.identity,
        "factor_sid": factor.sid,
        "factor_type": "passkeys",
        "factor_friendly_name": factor.friendly_name,
    }


def challenge_fields(challenge: Challenge, factor: Factor, status: str) -> dict[str, str]:
    return {**factor_fields(factor), "challenge_sid": challenge.sid, "challenge_status": status}


@dataclass
class Events:
    store: Store
    clock: Clock

    def any_enabled(self, account_sid: str, service_sid: str) -> bool:
        """Whether the service has an enabled webhook (from the configuration cache): with
        none, a use-case need not build its events' fields."""
        return bool(self.store.enabled_webhooks(account_sid, service_sid))

    def deliveries(
        self, account_sid: str, service_sid: str, event_type: str, fields: dict[str, str]
    ) -> list[Delivery]:
        """One delivery per enabled webhook of the service that subscribes to `event_type`."""
        hooks = [
            w
            for w in self.store.enabled_webhooks(account_sid, service_sid)
            if "*" in w.event_types or event_type in w.event_types
        ]
        if not hooks:
            return []
        event_id = str(uuid.uuid4())
        payload = {
            "uuid": event_id,
            "type": event_type,
            "account_sid": account_sid,
            "service_sid": service_sid,
            **fields,
            "date_created": iso(self.clock()) or "",
        }
        return [
            Delivery(event_id, event_type, w.sid, account_sid, w.webhook_url, payload)
            for w in hooks
        ]
