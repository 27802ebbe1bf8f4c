"""Metadata statements of the operator's own (PASSKEYD_MDS_STATEMENTS): for authenticators the
FIDO metadata does not list (a company's own keys, the conformance tools' test ones)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from passkeyd.api import create_app
from passkeyd.metadata import OfflineMetadata, read_statements
from tests import pki
from tests.authenticator import Authenticator
from tests.conftest import ORIGIN, Api

VENDOR = "5ca1ab1e-0000-4000-8000-00000000c0de"
TRUU = "ba86dc56-635f-4141-aef6-00227b1b9af6"  # REVOKED in the packaged metadata


def statement(root: pki.Issued, aaguid: str = VENDOR, **more: object) -> dict[str, object]:
    return {
        "aaguid": aaguid,
        "description": "Example Corp Badge Key",
        "attestationRootCertificates": [base64.b64encode(root.der).decode()],
        "schema": 3,
        **more,
    }


def write(directory: Path, name: str, content: object) -> None:
    directory.mkdir(exist_ok=True)
    text = content if isinstance(content, str) else json.dumps(content)
    (directory / name).write_text(text)


def test_statements_are_read_and_unusable_ones_are_said(tmp_path: Path) -> None:
    root = pki.ca("Example Corp Root")
    write(tmp_path, "good.json", statement(root))
    write(tmp_path, "u2f.json", {**statement(root, aaguid=None),
                                 "attestationCertificateKeyIdentifiers": ["ab" * 20]})  # fmt: skip
    write(tmp_path, "not-json.json", "{")
    write(tmp_path, "list.json", [statement(root)])
    write(tmp_path, "no-model.json", statement(root, aaguid=None))
    write(tmp_path, "no-roots.json", {**statement(root), "attestationRootCertificates": []})
    write(tmp_path, "bad-root.json", {**statement(root), "attestationRootCertificates": ["*"]})
    write(tmp_path, "notes.txt", "not a statement, not read")
    entries, problems = read_statements(tmp_path)
    assert sorted(e.description for e in entries) == ["Example Corp Badge Key"] * 2
    assert {e.aaguid for e in entries} == {VENDOR, None}
    said = {p.split(":")[0] for p in problems}
    assert said == {"not-json.json", "list.json", "no-model.json", "no-roots.json",
                    "bad-root.json"}  # fmt: skip
    assert read_statements(tmp_path / "missing")[1][0].endswith("No such file or directory")


def test_a_surrogate_only_statement_lists_no_root_and_is_read(tmp_path: Path) -> None:
    """MDS3 §4: a model that attests only itself (basic_surrogate) has an empty
    attestationRootCertificates, as the FIDO conformance tools' self-attesting test
    authenticators' statements do: it is read (one of them must not stop `serve`), and
    an empty list is still refused for a model that claims full attestation."""
    surrogate = {
        "aaguid": VENDOR,
        "description": "Example Corp Platform Key",
        "schema": 3,
        "attestationTypes": ["basic_surrogate"],
        "attestationRootCertificates": [],
    }
    write(tmp_path, "surrogate.json", surrogate)
    write(tmp_path, "full-no-roots.json",
          {**surrogate, "aaguid": "5ca1ab1e-0000-4000-8000-00000000beef",
           "attestationTypes": ["basic_full"]})  # fmt: skip
    write(tmp_path, "no-list.json",
          {k: v for k, v in surrogate.items() if k != "attestationRootCertificates"}
          | {"aaguid": "5ca1ab1e-0000-4000-8000-00000000cafe"})  # fmt: skip
    entries, problems = read_statements(tmp_path)
    assert [(e.aaguid, e.root_certificates) for e in entries] == [(VENDOR, ())]
    assert sorted(p.split(":")[0] for p in problems) == ["full-no-roots.json", "no-list.json"]


def test_a_surrogate_only_model_self_attests_and_presents_no_chain(
    domain, db_path, tmp_path: Path
) -> None:
    aaguid = bytes.fromhex(VENDOR.replace("-", ""))
    write(tmp_path, "surrogate.json",
          {"aaguid": VENDOR, "description": "Example Corp Platform Key",
           "attestationTypes": ["basic_surrogate"], "attestationRootCertificates": []})  # fmt: skip
    leaf = pki.attestation_leaf(pki.ca("Anyone's Root"), aaguid)
    with checked_with(domain, db_path, tmp_path) as api:
        registered = api.register(authenticator=Authenticator(attestation="packed", aaguid=aaguid))
        assert registered["metadata"]["authenticator_name"] == "Example Corp Platform Key"
        full = Authenticator(attestation="packed", aaguid=aaguid, x5c=[leaf.der],
                             attestation_key=leaf.key)  # fmt: skip
        r = api.verify_factor(full.create(api.create_factor("user-0002")["options"], ORIGIN))
        assert r.status_code == 403 and "lists no root" in r.json()["message"], r.text


@contextlib.contextmanager
def checked_with(domain, db_path, statements: Path):
    metadata = OfflineMetadata(statements_path=statements)
    with TestClient(create_app(dataclasses.replace(domain, metadata=metadata))) as client:
        account, token = domain.accounts.create_account("statements")
        api = Api(client, db_path, account.sid, (account.sid, token))
        api.create_service(**{"Passkeys.AttestationPolicy": "checked"})
        yield api


def test_an_authenticator_of_a_statement_registers_under_checked_and_trusted(
    domain, db_path, tmp_path: Path
) -> None:
    root = pki.ca("Example Corp Root")
    aaguid = bytes.fromhex(VENDOR.replace("-", ""))
    leaf = pki.attestation_leaf(root, aaguid)
    badge = Authenticator(attestation="packed", aaguid=aaguid, x5c=[leaf.der],
                          attestation_key=leaf.key)  # fmt: skip
    unlisted = bytes.fromhex("5ca1ab1e00004000800000000000beef")
    other_leaf = pki.attestation_leaf(root, unlisted)
    other_model = Authenticator(attestation="packed", aaguid=unlisted, x5c=[other_leaf.der],
                                attestation_key=other_leaf.key)  # fmt: skip
    write(tmp_path / "mine", "badge.json", statement(root))
    with checked_with(domain, db_path, tmp_path / "mine") as api:
        factor = api.create_factor("user-0003")  # the control: a model no statement names
        r = api.verify_factor(other_model.create(factor["options"], ORIGIN))
        assert r.status_code == 403 and "not listed" in r.json()["message"], r.text
        registered = api.register(authenticator=badge)
        assert registered["metadata"]["authenticator_name"] == "Example Corp Badge Key"
        assert api.post_form(api.svc, {"Passkeys.AttestationPolicy": "trusted"}).status_code == 200
        factor = api.create_factor("user-0002")
        other = Authenticator(attestation="packed", aaguid=aaguid, x5c=[leaf.der],
                              attestation_key=leaf.key)  # fmt: skip
        assert api.verify_factor(other.create(factor["options"], ORIGIN)).status_code == 200
        challenge = api.challenge(identity="user-0001")
        assert api.approve(badge.get(challenge["options"], ORIGIN)).json()["status"] == ("approved")


def test_a_statement_does_not_override_what_the_signed_metadata_says(
    domain, db_path, tmp_path: Path
) -> None:
    """A statement for an AAGUID the FIDO metadata lists (the TruU model, REVOKED there) is
    not the one used: the signed entry and its status reports win."""
    root = pki.ca("Not TruU's Root")
    aaguid = bytes.fromhex(TRUU.replace("-", ""))
    leaf = pki.attestation_leaf(root, aaguid)
    write(tmp_path, "truu.json", statement(root, aaguid=TRUU))
    impostor = Authenticator(attestation="packed", aaguid=aaguid, x5c=[leaf.der],
                             attestation_key=leaf.key)  # fmt: skip
    with checked_with(domain, db_path, tmp_path) as api:
        factor = api.create_factor()
        r = api.verify_factor(impostor.create(factor["options"], ORIGIN))
        assert r.status_code == 403, r.text
        assert "does not lead to a root of" in r.json()["message"]


def test_check_config_and_serve_say_which_statement_cannot_be_used(tmp_path: Path) -> None:
    root = pki.ca("Example Corp Root")
    write(tmp_path / "statements", "badge.json", statement(root))
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_MDS_STATEMENTS": str(tmp_path / "statements")}
    db = f"sqlite:///{tmp_path}/cli.db"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", "passkeyd.cli", *args, "--database-url", db],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip

    r = run("check-config")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["metadata"]["statements"]["read"] == 1
    write(tmp_path / "statements", "broken.json", "{")
    r = run("check-config")
    assert r.returncode == 3, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert not report["ok"]
    assert report["metadata"]["statements"]["left_out"][0].startswith("broken.json:")
    r = run("serve", "--port", "0")
    assert r.returncode == 3 and "PASSKEYD_MDS_STATEMENTS: broken.json" in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["PASSKEYD_MDS_STATEMENTS"])
def test_the_setting_is_in_the_readme_table(name: str) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"| `{name}` |" in readme


def test_a_statement_file_is_a_small_regular_file_naming_a_real_aaguid(tmp_path: Path) -> None:
    """A FIFO named *.json held `serve` (and check-config) at start, reading it; a symlink
    to /dev/zero read until memory ran out. An aaguid that is no UUID, or the zero AAGUID
    (every U2F key's, and many passkeys' without attestation: it would name them all), is
    refused; an uppercase one is read as the lowercase it is."""
    import os

    root = pki.ca("Example Corp Root")
    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    write(tmp_path, "big.json", {**statement(root), "pad": "x" * (2 * 1024 * 1024)})
    write(
        tmp_path, "zero-aaguid.json", statement(root, aaguid="00000000-0000-0000-0000-000000000000")
    )
    write(tmp_path, "not-uuid.json", statement(root, aaguid="example"))
    write(tmp_path, "upper.json", statement(root, aaguid=VENDOR.upper()))
    entries, problems = read_statements(tmp_path)
    assert [e.aaguid for e in entries] == [VENDOR]
    said = {p.split(":")[0] for p in problems}
    assert said == {"fifo.json", "zero.json", "big.json", "zero-aaguid.json", "not-uuid.json"}


def test_an_operator_key_id_does_not_hide_the_signed_entry_a_u2f_certificate_names() -> None:
    """A U2F registration's model is found by its leaf's key id, else by the AAGUID its
    certificate names; a statement of the operator's listing the key id was used before the
    signed entry of that AAGUID, whose REVOKED report then did not apply (review)."""
    from passkeyd.webauthn import MetadataEntry, StatusReport, TrustStore
    from passkeyd.webauthn.trust import ZERO_AAGUID, key_identifier

    root = pki.ca("Vendor Root")
    leaf = pki.attestation_leaf(root, bytes.fromhex(VENDOR.replace("-", "")))
    signed = MetadataEntry("Signed model", VENDOR, root_certificates=(root.der,),
                           status_reports=(StatusReport("REVOKED", "2020-01-01"),))  # fmt: skip
    mine = MetadataEntry("Operator's statement", None, root_certificates=(root.der,),
                         key_identifiers=(key_identifier(leaf.certificate),),
                         from_operator=True)  # fmt: skip
    assert TrustStore([mine, signed]).find(ZERO_AAGUID, leaf.certificate) is signed
    assert TrustStore([mine]).find(ZERO_AAGUID, leaf.certificate) is mine  # none signed
    signed_key_id = dataclasses.replace(mine, description="Signed key id", from_operator=False)
    assert TrustStore([signed_key_id, signed]).find(ZERO_AAGUID, leaf.certificate) is (
        signed_key_id
    )


def test_a_compound_attestation_is_trusted_by_its_statement_the_metadata_vouches_for(
    domain, db_path, tmp_path: Path
) -> None:
    """WebAuthn §8.9 through the API: a compound attestation whose packed statement chains
    to the operator's statement registers under `trusted`, is named by it, and signs in
    (re-checked by what vouched for it); one whose statements present no chain is refused."""
    root = pki.ca("Example Corp Root")
    aaguid = bytes.fromhex(VENDOR.replace("-", ""))
    leaf = pki.attestation_leaf(root, aaguid)
    write(tmp_path, "badge.json", statement(root))
    badge = Authenticator(attestation="compound", compound=("self", "packed"), aaguid=aaguid,
                          x5c=[leaf.der], attestation_key=leaf.key)  # fmt: skip
    with checked_with(domain, db_path, tmp_path) as api:
        assert api.post_form(api.svc, {"Passkeys.AttestationPolicy": "trusted"}).status_code == 200
        registered = api.register(authenticator=badge)
        assert registered["status"] == "verified"
        assert registered["metadata"]["authenticator_name"] == "Example Corp Badge Key"
        challenge = api.challenge(identity="user-0001")
        assert api.approve(badge.get(challenge["options"], ORIGIN)).json()["status"] == "approved"
        unattested = Authenticator(attestation="compound", compound=("self", "none"), aaguid=aaguid)
        factor = api.create_factor("user-0002")
        before = api.snapshot()
        r = api.verify_factor(unattested.create(factor["options"], ORIGIN))
        assert r.status_code == 403, r.text
        assert "no statement of the compound attestation is trusted" in r.json()["message"]
        assert api.snapshot() == before  # nothing was stored
