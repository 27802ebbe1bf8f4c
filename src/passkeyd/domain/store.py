"""The storage interface: what the domain needs of a database, which `passkeyd.storage`
implements. Only storage backends speak SQL; the domain speaks this.

Every method that changes state is one transaction. The ceremony-finishing methods
(`complete_registration`, `approve_challenge`) are conditional updates, so that a
challenge is consumed exactly once however many processes race for it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from .models import (
    Account,
    ApiKey,
    AuditEvent,
    Challenge,
    ChallengeStatus,
    ClaimedDelivery,
    Credential,
    Delivery,
    Entity,
    Factor,
    Page,
    PageRequest,
    RateHit,
    Service,
    Webhook,
)

T = TypeVar("T")


class StorageUnavailable(Exception):
    """The database cannot be reached. The message names no credentials."""


class NotCached(Exception):
    """Inside `Store.cached_only()`: the configuration read needs the database."""


class CredentialConflict(Exception):
    """The credential id is already registered in this service."""


class InsertOutcome(enum.Enum):
    INSERTED = "inserted"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_PENDING = "too_many_pending"
    ENTITY_EXISTS = "entity_exists"  # the entity to create with it was created meanwhile
    ENTITY_FULL = "entity_full"  # the entity has its most factors already
    # the existing entity it was for (or the factor a challenge names) was deleted meanwhile
    ENTITY_GONE = "entity_gone"
    SERVICE_GONE = "service_gone"  # its service was deleted meanwhile


class ApproveOutcome(enum.Enum):
    APPROVED = "approved"
    NOT_PENDING = "not_pending"  # consumed, spent or expired meanwhile
    COUNTER_RACE = "counter_race"  # another approval moved the counter past ours
    FACTOR_GONE = "factor_gone"  # the factor was deleted (or is no longer verified) meanwhile


class FailureOutcome(enum.Enum):
    COUNTED = "counted"
    SPENT = "spent"  # it was the challenge's last allowed failure: the challenge is denied
    OVER_LIMIT = "over_limit"  # a capped rate-limit hit would pass its limit: nothing written
    NOT_PENDING = "not_pending"  # answered, spent or deleted meanwhile: nothing written


class Store(Protocol):
    runs_in_threads: bool  # True when queries block on network I/O (run them off the loop)
    concurrency: int  # how many threads can use the store at once (its connections)

    def submit(self, call: Callable[[], T]) -> Future[T]: ...

    # schema
    def migrate(self) -> list[int]: ...
    def pending_migrations(self) -> list[int]: ...
    def unknown_migrations(self) -> list[int]: ...
    def applied_migrations(self) -> set[int]: ...
    def ping(self) -> None: ...
    def start_group_commit(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def stop_group_commit(self) -> None: ...
    def refresh_config(self) -> None: ...
    def forget_config(self) -> None: ...
    def cached_only(self) -> AbstractContextManager[None]: ...
    def request_started(self) -> None: ...
    def request_finished(self) -> None: ...
    @property
    def requests_in_progress(self) -> int: ...
    def drain(self) -> None: ...
    async def reserve(self) -> None: ...
    async def settle(self) -> None: ...
    def close(self) -> None: ...

    # accounts and keys
    def put_account(
        self, account: Account, *, same_token_only: bool = False, sealed_as: Any = ...
    ) -> bool: ...
    def get_account(self, sid: str) -> Account | None: ...
    def read_account(self, sid: str) -> Account | None: ...  # never from the cache
    def list_accounts(self) -> list[Account]: ...
    def put_api_key(self, key: ApiKey) -> None: ...
    def get_api_key(self, sid: str) -> ApiKey | None: ...
    def list_api_keys(self, account_sid: str) -> list[ApiKey]: ...
    def revoke_api_key(self, account_sid: str, sid: str) -> bool: ...

    # services
    def insert_service(self, service: Service) -> None: ...
    # The row as stored when the write locks it, changed by `change` (which may raise:
    # nothing is written), written back; None when there is no such service.
    def update_service(
        self, account_sid: str, sid: str, change: Callable[[Service], Service]
    ) -> Service | None: ...
    def get_service(self, account_sid: str, sid: str) -> Service | None: ...
    def list_services(self, account_sid: str, page: PageRequest) -> Page: ...
    def delete_service(self, account_sid: str, sid: str) -> bool: ...

    def page_token_key(self) -> bytes: ...

    # entities
    def insert_entity(self, entity: Entity) -> bool: ...
    def get_entity(self, account_sid: str, service_sid: str, identity: str) -> Entity | None: ...
    def has_entity(self, account_sid: str, service_sid: str, entity_sid: str) -> bool: ...
    def list_entities(self, account_sid: str, service_sid: str, page: PageRequest) -> Page: ...
    def delete_entity(
        self,
        account_sid: str,
        service_sid: str,
        identity: str,
        deliveries: Sequence[Delivery] = (),
        now: int = 0,
        factor_sids: Collection[str] | None = None,
        entity_sid: str | None = None,
    ) -> bool | None: ...

    # factors
    def insert_factor(
        self,
        factor: Factor,
        deliveries: Sequence[Delivery] = (),
        rate: RateHit | None = None,
        *,
        entity: Entity | None = None,
        max_factors: int | None = None,
    ) -> InsertOutcome: ...
    def get_factor(self, account_sid: str, service_sid: str, sid: str) -> Factor | None: ...
    def find_factor_by_registration(
        self, account_sid: str, service_sid: str, challenge: bytes
    ) -> Factor | None: ...
    def list_factors(
        self, account_sid: str, service_sid: str, entity_sid: str, page: PageRequest
    ) -> Page: ...
    def verified_factors(
        self, account_sid: str, service_sid: str, entity_sid: str
    ) -> list[Factor]: ...
    def verified_factors_of_identity(
        self, account_sid: str, service_sid: str, identity: str
    ) -> list[Factor]: ...
    def verified_factors_to_recheck(
        self, aaguids: Sequence[str], models: Collection[str], account_sid: str | None = None
    ) -> Iterator[Factor]: ...  # these models' (claimed; trusted: vouched for); by seq
    def announce_report(
        self,
        account_sid: str,
        factor_sid: str,
        status: str,
        deliveries: Sequence[Delivery] = (),
        now: int = 0,
        audit: Sequence[AuditEvent] = (),
    ) -> bool: ...  # recorded (with its deliveries and audit) unless it was: True if this call did
    def rename_factor(self, factor_sid: str, friendly_name: str, now: int) -> None: ...
    def delete_factor(
        self,
        account_sid: str,
        service_sid: str,
        sid: str,
        deliveries: Sequence[Delivery] = (),
        now: int = 0,
    ) -> bool: ...
    def complete_registration(
        self,
        factor_sid: str,
        credential: Credential,
        now: int,
        deliveries: Sequence[Delivery] = (),
    ) -> bool: ...

    # challenges
    def insert_challenge(
        self,
        challenge: Challenge,
        *,
        rate: RateHit | None = None,
        max_pending: int | None = None,
    ) -> InsertOutcome: ...
    def get_challenge(self, account_sid: str, service_sid: str, sid: str) -> Challenge | None: ...
    def find_challenge_and_factor(
        self, account_sid: str, service_sid: str, value: bytes, credential_id: bytes
    ) -> tuple[Challenge | None, Factor | None]: ...
    def list_challenges(
        self,
        account_sid: str,
        service_sid: str,
        entity_sid: str,
        page: PageRequest,
        *,
        factor_sid: str | None,
        status: ChallengeStatus | None,
        now: int,
    ) -> Page: ...
    def approve_challenge(
        self,
        challenge: Challenge,
        factor: Factor,
        *,
        new_sign_count: int,
        backed_up: bool,
        now: int,
        deliveries: Sequence[Delivery] = (),
        on_flag: Sequence[Delivery] = (),
        on_backup_change: Sequence[Delivery] = (),
        backup_eligible_changed: bool = False,
        flag_counter_regression: bool = False,
        discovered: bool = False,
    ) -> ApproveOutcome: ...
    def record_failed_attempt(
        self,
        challenge_sid: str,
        *,
        max_attempts: int | None,
        now: int,
        deliveries: Sequence[Delivery] = (),
        on_spent: Sequence[Delivery] = (),
        rate_hits: Sequence[RateHit] = (),
        capped: bool = False,
    ) -> FailureOutcome: ...

    # webhooks and their outbox
    def insert_webhook(self, webhook: Webhook) -> bool: ...  # False: its service is gone
    def update_webhook(  # as update_service
        self, account_sid: str, service_sid: str, sid: str, change: Callable[[Webhook], Webhook]
    ) -> Webhook | None: ...
    def get_webhook(self, account_sid: str, service_sid: str, sid: str) -> Webhook | None: ...
    def list_webhooks(self, account_sid: str, service_sid: str, page: PageRequest) -> Page: ...
    def enabled_webhooks(self, account_sid: str, service_sid: str) -> list[Webhook]: ...
    def delete_webhook(self, account_sid: str, service_sid: str, sid: str) -> bool: ...
    def claim_deliveries(
        self, *, now: int, lease_seconds: int, limit: int, per_account: int | None = None
    ) -> list[ClaimedDelivery]: ...
    def finish_delivery(
        self,
        seq: int,
        *,
        now: int,
        delivered: bool,
        retry_at: int | None,
        error: str | None,
        lease_until: int | None = None,
        attempt_spent: bool = True,
    ) -> bool: ...
    def delivery_backlog(self) -> int: ...

    # housekeeping
    def purge_expired(
        self,
        before: int,
        *,
        audit_before: int | None = None,
        rate_before: int | None = None,
        batch: int = 1000,
    ) -> int: ...

    # limits and audit
    def rate_limit_count(self, key: str, window_start: int) -> int: ...
    def first_pending_expiry(self, entity_sid: str, now: int) -> int | None: ...
    def active_factors(
        self, account_sid: str, service_sid: str, entity_sid: str, now: int
    ) -> list[Factor]: ...
    def append_audit(self, events: Sequence[AuditEvent]) -> None: ...
    def list_audit(
        self, account_sid: str, page: PageRequest, *, service_sid: str | None = None
    ) -> Page: ...
