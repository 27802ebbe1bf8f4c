"""Row <-> model conversion shared by the SQL backends."""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
from collections.abc import Sequence
from typing import Any

import orjson

from passkeyd.domain.models import (
    Challenge,
    ChallengeStatus,
    Credential,
    Factor,
    FactorStatus,
    PasskeyPolicy,
    PasskeySettings,
)

log = logging.getLogger("passkeyd.storage")

FACTOR_COLUMNS = (
    "seq, sid, account_sid, service_sid, entity_sid, identity, friendly_name, status, policy,"
    " registration_challenge, registration_expires, credential_id, public_key, algorithm,"
    " sign_count, transports, aaguid, fmt, backup_eligible, backed_up, attachment,"
    " date_last_approved, date_created, date_updated, authenticator_name, clone_warning,"
    " backup_eligible_changed, attested, discoverable"
)
CHALLENGE_COLUMNS = (
    "seq, sid, account_sid, service_sid, entity_sid, identity, factor_sid, challenge, rp_id,"
    " user_verification, options, allowed_credentials, status, failed_attempts, date_created,"
    " date_updated, date_responded, expiration_date"
)


def dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def settings_to_json(settings: PasskeySettings, *, replacing: str | None = None) -> str:
    """`replacing`: the stored text this replaces. Settings a newer release stored there,
    which this one does not have, are kept: an update made here during a rolling upgrade
    must not undo them."""
    text = dump_json(settings)  # orjson writes dataclasses (fields in order) itself
    if replacing is None:
        return text
    later = {k: v for k, v in orjson.loads(replacing).items() if k not in _SETTINGS_FIELDS}
    return dump_json({**orjson.loads(text), **later}) if later else text


_TUPLE_SETTINGS = (
    "rp_origins", "aaguid_allow", "aaguid_deny", "top_origins", "algorithms", "hints"
)  # fmt: skip


_unknown_seen: set[str] = set()


def _known(data: dict[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """What this release knows of a stored object. A newer release may store settings this
    one does not have (during a rolling upgrade, or after a rollback): they are left out, as
    the settings did not exist for this code, rather than failing every read of the row.
    This process does not apply them, and says so once for each."""
    if data.keys() <= names:
        return data
    for key in data.keys() - names - _unknown_seen:
        _unknown_seen.add(key)
        log.warning(
            "a newer release stored the setting %r, which this one does not have: it is not"
            " applied by this process (upgrade it)",
            key[:100],
        )
    return {k: v for k, v in data.items() if k in names}


_SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(PasskeySettings))
_POLICY_FIELDS = frozenset(f.name for f in dataclasses.fields(PasskeyPolicy))
_POLICY_FIELDS_BUT_HINTS = tuple(
    f.name for f in dataclasses.fields(PasskeyPolicy) if f.name != "hints"
)


def settings_from_json(text: str) -> PasskeySettings:
    data = _known(orjson.loads(text), _SETTINGS_FIELDS)
    for name in _TUPLE_SETTINGS:
        value = data.get(name)
        if value is not None:
            data[name] = tuple(value)
    return PasskeySettings(**data)


def policy_to_json(policy: PasskeyPolicy) -> str:
    """Without `hints` when there are none (`policy_from_json` reads them as none): a
    process of a release before them would say of every factor's that it does not apply
    a setting of a newer release, which for no hints is not so."""
    if policy.hints:
        return dump_json(policy)
    return dump_json({name: getattr(policy, name) for name in _POLICY_FIELDS_BUT_HINTS})


@functools.lru_cache(maxsize=4096)
def policy_from_json(text: str) -> PasskeyPolicy:
    """Immutable, and shared by many factors: each distinct text is decoded once."""
    data = _known(orjson.loads(text), _POLICY_FIELDS)
    for name in ("rp_origins", "top_origins", "algorithms", "hints"):
        if name in data:  # policies stored before a field existed take its default
            data[name] = tuple(data[name])
    if "origins_from_service" in data and "user_verification_from_service" not in data:
        # Stored between 3c79840 (the first flag) and d97480e (the second). From c8d13c5 on,
        # those passkeys obeyed a service's `required` user verification, and they go on
        # doing so (the few stored before c8d13c5 and never signed in under it: stricter
        # than they were, which is what their service asks).
        data["user_verification_from_service"] = True
    return PasskeyPolicy(**data)


def factor_from_row(row: Sequence[Any]) -> Factor:
    credential = None
    if row[11] is not None:
        credential = Credential(
            credential_id=bytes(row[11]),
            public_key=bytes(row[12]),
            algorithm=row[13],
            sign_count=row[14],
            transports=tuple(orjson.loads(row[15] or "[]")),
            aaguid=row[16],
            fmt=row[17],
            backup_eligible=bool(row[18]),
            backed_up=bool(row[19]),
            authenticator_attachment=row[20],
            authenticator_name=row[24],
            clone_warning=bool(row[25]),
            backup_eligible_changed=bool(row[26]),
            **(_attested(row[27]) if row[27] is not None else {}),
            discoverable=bool(row[28]) if row[28] is not None else None,
        )
    return Factor(
        seq=row[0],
        sid=row[1],
        account_sid=row[2],
        service_sid=row[3],
        entity_sid=row[4],
        identity=row[5],
        friendly_name=row[6],
        status=FactorStatus(row[7]),
        policy=policy_from_json(row[8]),
        registration_challenge=bytes(row[9]) if row[9] is not None else None,
        registration_expires=row[10],
        credential=credential,
        date_last_approved=row[21],
        date_created=row[22],
        date_updated=row[23],
    )


def factor_to_row(f: Factor) -> tuple[Any, ...]:
    """Values for every FACTOR_COLUMNS column but seq."""
    c = f.credential
    return (
        f.sid,
        f.account_sid,
        f.service_sid,
        f.entity_sid,
        f.identity,
        f.friendly_name,
        f.status.value,
        policy_to_json(f.policy),
        f.registration_challenge,
        f.registration_expires,
        c.credential_id if c else None,
        c.public_key if c else None,
        c.algorithm if c else None,
        c.sign_count if c else 0,
        dump_json(list(c.transports)) if c else None,
        c.aaguid if c else None,
        c.fmt if c else None,
        c.backup_eligible if c else None,
        c.backed_up if c else None,
        c.authenticator_attachment if c else None,
        f.date_last_approved,
        f.date_created,
        f.date_updated,
        c.authenticator_name if c else None,
        c.clone_warning if c else False,
        c.backup_eligible_changed if c else False,
        attested_to_json(c),
        c.discoverable if c else None,
    )


@functools.lru_cache(maxsize=4096)
def attested_fields(text: str) -> tuple[str | None, tuple[str, ...]]:
    """The `attested` column read back. A value this release cannot read (another release's
    shape, after a rollback; a hand edit) is not a 500 for every read of its passkey: it is
    said in the log, and the passkey is re-checked as one registered otherwise (by the
    AAGUID it claims)."""
    try:
        data = orjson.loads(text)
        model, certificates = data["model"], data["certificates"]
        if (
            isinstance(model, str)
            and isinstance(certificates, list)
            and all(isinstance(c, str) for c in certificates)
        ):
            return model, tuple(certificates)
    except (orjson.JSONDecodeError, TypeError, KeyError):
        pass
    log.warning(
        "a passkey's attestation record cannot be read (%.80r): re-checked by its AAGUID", text
    )
    return None, ()


def _attested(text: str) -> dict[str, Any]:
    model, certificates = attested_fields(text)
    return {"attested_model": model, "attested_certificates": certificates}


def attested_to_json(c: Credential | None) -> str | None:
    """The `attested` column: what vouched for a passkey registered under trusted attestation."""
    if c is None or c.attested_model is None:
        return None
    return dump_json({"model": c.attested_model, "certificates": list(c.attested_certificates)})


def credentials_to_json(ids: Sequence[bytes]) -> str:
    return dump_json([base64.b64encode(i).decode() for i in ids])


def challenge_from_row(row: Sequence[Any]) -> Challenge:
    return Challenge(
        seq=row[0],
        sid=row[1],
        account_sid=row[2],
        service_sid=row[3],
        entity_sid=row[4],
        identity=row[5],
        factor_sid=row[6],
        challenge=bytes(row[7]),
        rp_id=row[8],
        user_verification=row[9],
        options=orjson.loads(row[10]),
        allowed_credentials=tuple(base64.b64decode(i) for i in orjson.loads(row[11])),
        status=ChallengeStatus(row[12]),
        failed_attempts=row[13],
        date_created=row[14],
        date_updated=row[15],
        date_responded=row[16],
        expiration_date=row[17],
    )


def challenge_to_row(c: Challenge) -> tuple[Any, ...]:
    return (
        c.sid,
        c.account_sid,
        c.service_sid,
        c.entity_sid,
        c.identity,
        c.factor_sid,
        c.challenge,
        c.rp_id,
        c.user_verification,
        dump_json(c.options),
        credentials_to_json(c.allowed_credentials),
        c.status.value,
        c.failed_attempts,
        c.date_created,
        c.date_updated,
        c.date_responded,
        c.expiration_date,
    )
