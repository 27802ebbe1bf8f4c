"""`Domain`: every use-case, bound to one store, one clock and the metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

from passkeyd.metadata import OfflineMetadata
from passkeyd.sealing import SecretBox

from .accounts import Accounts
from .audit import AuditLog
from .authentication import Authentications
from .clock import Clock, system_clock
from .entities import Entities
from .limits import (
    DEFAULT_RULES,
    MAX_FACTORS_PER_ENTITY,
    MAX_PENDING_CHALLENGES_PER_ENTITY,
    RateLimiter,
    Rule,
)
from .metadata import Metadata
from .registration import Registrations
from .reports import Reports
from .services import Services
from .store import Store
from .webhooks import Webhooks


@dataclass
class Domain:
    """Every use-case, bound to one store, one clock and the authenticator metadata."""

    store: Store
    clock: Clock = system_clock
    box: SecretBox | None = None  # seals auth tokens so webhooks can be signed with them
    allow_private_webhooks: bool = False
    rate_limits: dict[str, Rule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    max_factors_per_entity: int = MAX_FACTORS_PER_ENTITY
    max_pending_challenges_per_entity: int = MAX_PENDING_CHALLENGES_PER_ENTITY
    # Failed approvals that spend a challenge (`denied`); 0: none does, as at Twilio.
    max_failed_attempts_per_challenge: int = 0
    metadata: Metadata = field(default_factory=OfflineMetadata)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(
            self.store,
            self.clock,
            self.rate_limits,
            max_factors=self.max_factors_per_entity,
            max_pending_challenges=self.max_pending_challenges_per_entity,
        )
        self.audit = AuditLog(self.store)
        self.accounts = Accounts(self.store, self.clock, self.box)
        self.webhooks = Webhooks(self.store, self.clock, self.allow_private_webhooks)
        self.services = Services(self.store, self.clock)
        self.entities = Entities(self.store, self.clock)
        self.registrations = Registrations(self.store, self.clock, self.limiter, self.metadata)
        self.authentications = Authentications(
            self.store,
            self.clock,
            self.limiter,
            self.max_failed_attempts_per_challenge,
            self.metadata,
        )
        self.reports = Reports(self.store, self.clock, self.metadata)
