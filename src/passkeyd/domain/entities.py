"""Entities, and the factors and challenges listed under them."""

from __future__ import annotations

from dataclasses import dataclass

from . import events
from .clock import Clock
from .errors import EntityExists, InvalidParam, NotFound
from .events import Events
from .identity import check_identity
from .ids import new_sid
from .models import Challenge, ChallengeStatus, Delivery, Entity, Factor, Page, PageRequest
from .policy import check_friendly_name
from .store import StorageUnavailable, Store

# Deletions of an entity tried again when a factor of it is made meanwhile (see `delete`).
DELETE_ATTEMPTS = 5


def _not_found(path: str) -> NotFound:
    return NotFound(f"The requested resource {path} was not found")


@dataclass
class Entities:
    store: Store
    clock: Clock

    def __post_init__(self) -> None:
        self.events = Events(self.store, self.clock)

    def _service_exists(self, account_sid: str, service_sid: str) -> None:
        if self.store.get_service(account_sid, service_sid) is None:
            raise _not_found(f"/Services/{service_sid}")

    def create(self, account_sid: str, service_sid: str, identity: str) -> Entity:
        self._service_exists(account_sid, service_sid)
        check_identity(identity)
        now = self.clock()
        entity = Entity(new_sid("YE"), account_sid, service_sid, identity, now, now)
        if not self.store.insert_entity(entity):
            self._service_exists(account_sid, service_sid)  # deleted meanwhile: 404
            raise EntityExists("Entity already exists")
        return entity

    def get(self, account_sid: str, service_sid: str, identity: str, under: str = "") -> Entity:
        """The entity; or 404 naming the resource requested: the entity, or `under` it (a
        list of its factors, one of its challenges)."""
        requested = f"/Services/{service_sid}/Entities/{identity}{under}"
        if self.store.get_service(account_sid, service_sid) is None:
            raise _not_found(requested)
        entity = self.store.get_entity(account_sid, service_sid, identity)
        if entity is None:
            raise _not_found(requested)
        return entity

    def list(self, account_sid: str, service_sid: str, page: PageRequest) -> Page:
        self._service_exists(account_sid, service_sid)
        return self.store.list_entities(account_sid, service_sid, page)

    def delete(self, account_sid: str, service_sid: str, identity: str) -> str:
        """The entity and its factors, each factor's deletion announced; its SID is
        returned. A factor made between the read of the factors and the deletion (on
        PostgreSQL, where they are not under one lock) would go unannounced, and an entity
        deleted and made again meanwhile would have the first one's factors announced and
        SID returned: the deletion is then made again, read anew."""
        for _ in range(DELETE_ATTEMPTS):
            entity = self.get(account_sid, service_sid, identity)
            deleted: list[Delivery] = []
            page = self.store.list_factors(account_sid, service_sid, entity.sid, PageRequest(1000))
            for factor in page.items:
                deleted += self.events.deliveries(
                    account_sid, service_sid, events.FACTOR_DELETED, events.factor_fields(factor)
                )
            done = self.store.delete_entity(
                account_sid,
                service_sid,
                identity,
                deleted,
                self.clock(),
                factor_sids=None if page.has_more else {f.sid for f in page.items},
                entity_sid=entity.sid,
            )
            if done is None:  # a factor was made meanwhile, or the entity made again
                continue
            if not done:
                raise _not_found(f"/Services/{service_sid}/Entities/{identity}")
            return entity.sid
        raise StorageUnavailable("the entity kept changing; try again")

    # --- factors under an entity ----------------------------------------------------------

    def list_factors(
        self, account_sid: str, service_sid: str, identity: str, page: PageRequest
    ) -> Page:
        entity = self.get(account_sid, service_sid, identity, "/Factors")
        return self.store.list_factors(account_sid, service_sid, entity.sid, page)

    def get_factor(self, account_sid: str, service_sid: str, identity: str, sid: str) -> Factor:
        entity = self.get(account_sid, service_sid, identity, f"/Factors/{sid}")
        factor = self.store.get_factor(account_sid, service_sid, sid)
        if factor is None or factor.entity_sid != entity.sid:
            raise _not_found(f"/Services/{service_sid}/Entities/{identity}/Factors/{sid}")
        return factor

    def rename_factor(
        self, account_sid: str, service_sid: str, identity: str, sid: str, friendly_name: str
    ) -> Factor:
        factor = self.get_factor(account_sid, service_sid, identity, sid)
        check_friendly_name(friendly_name, InvalidParam)
        now = self.clock()
        self.store.rename_factor(factor.sid, friendly_name, now)
        return self.get_factor(account_sid, service_sid, identity, sid)

    def delete_factor(self, account_sid: str, service_sid: str, identity: str, sid: str) -> None:
        factor = self.get_factor(account_sid, service_sid, identity, sid)
        deleted = self.events.deliveries(
            account_sid, service_sid, events.FACTOR_DELETED, events.factor_fields(factor)
        )
        if not self.store.delete_factor(
            account_sid, service_sid, factor.sid, deleted, self.clock()
        ):
            # deleted meanwhile, by another request: as if before
            raise _not_found(f"/Services/{service_sid}/Entities/{identity}/Factors/{sid}")

    # --- challenges under an entity -------------------------------------------------------

    def list_challenges(
        self,
        account_sid: str,
        service_sid: str,
        identity: str,
        page: PageRequest,
        *,
        factor_sid: str | None,
        status: ChallengeStatus | None,
    ) -> Page:
        entity = self.get(account_sid, service_sid, identity, "/Challenges")
        return self.store.list_challenges(
            account_sid,
            service_sid,
            entity.sid,
            page,
            factor_sid=factor_sid,
            status=status,
            now=self.clock(),
        )

    def get_challenge(
        self, account_sid: str, service_sid: str, identity: str, sid: str
    ) -> Challenge:
        entity = self.get(account_sid, service_sid, identity, f"/Challenges/{sid}")
        challenge = self.store.get_challenge(account_sid, service_sid, sid)
        if challenge is None or challenge.entity_sid != entity.sid:
            raise _not_found(f"/Services/{service_sid}/Entities/{identity}/Challenges/{sid}")
        return challenge
