"""Peer 1: what a developer would write by hand, FastAPI + py_webauthn + SQLite.

It speaks the benchmark's peer protocol (see bench/README.md):

    POST /registration/options    {"username"}                  -> {"session", "options"}
    POST /registration/verify     {"session", "credential"}     -> {"verified": true}
    POST /authentication/options  {"username"}                  -> {"session", "options"}
    POST /authentication/verify   {"session", "credential"}     -> {"verified": true, "username"}
    GET  /healthz

Challenges are single use (deleted when read back) and expire; credentials and users are
rows in SQLite (WAL, synchronous=NORMAL, as passkeyd runs it), one connection per worker.
Handlers are `async def` calling sqlite3 inline (passkeyd does the same), which is cheaper
than FastAPI's threadpool for `def` handlers: the peer gets its best case.

Run: BENCH_PEER_DB=/tmp/peer.db uvicorn fastapi_rp:app --app-dir bench/peers
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from webauthn.helpers import base64url_to_bytes
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)

RP_ID = os.environ.get("BENCH_RP_ID", "example.com")
RP_NAME = "Example"
ORIGIN = os.environ.get("BENCH_ORIGIN", "https://example.com")
TIMEOUT_S = 600

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, handle BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS credentials (
    id BLOB PRIMARY KEY, username TEXT NOT NULL, public_key BLOB NOT NULL,
    sign_count INTEGER NOT NULL, transports TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS credentials_user ON credentials(username);
CREATE TABLE IF NOT EXISTS challenges (
    session TEXT PRIMARY KEY, challenge BLOB NOT NULL, username TEXT NOT NULL,
    kind TEXT NOT NULL, expires INTEGER NOT NULL);
"""


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(
        os.environ.get("BENCH_PEER_DB", "peer.db"), isolation_level=None, check_same_thread=False
    )
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.executescript(SCHEMA)
    return db


db = connect()
app = FastAPI()


class OptionsIn(BaseModel):
    username: str


class VerifyIn(BaseModel):
    session: str
    credential: dict[str, Any]


def new_session(challenge: bytes, username: str, kind: str) -> str:
    session = secrets.token_urlsafe(16)
    db.execute(
        "INSERT INTO challenges VALUES (?, ?, ?, ?, ?)",
        (session, challenge, username, kind, int(time.time()) + TIMEOUT_S),
    )
    return session


def take_session(session: str, kind: str) -> tuple[bytes, str]:
    row = db.execute(
        "DELETE FROM challenges WHERE session = ? AND kind = ? RETURNING challenge, username,"
        " expires",
        (session, kind),
    ).fetchone()
    if row is None or row[2] < time.time():
        raise HTTPException(400, "no such challenge")
    return row[0], row[1]


def descriptors(username: str) -> list[PublicKeyCredentialDescriptor]:
    rows = db.execute("SELECT id FROM credentials WHERE username = ?", (username,)).fetchall()
    return [PublicKeyCredentialDescriptor(id=r[0]) for r in rows]


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/registration/options")
async def registration_options(body: OptionsIn) -> dict[str, Any]:
    db.execute(
        "INSERT OR IGNORE INTO users VALUES (?, ?)", (body.username, secrets.token_bytes(16))
    )
    (handle,) = db.execute("SELECT handle FROM users WHERE name = ?", (body.username,)).fetchone()
    options = generate_registration_options(
        rp_id=RP_ID,
        rp_name=RP_NAME,
        user_name=body.username,
        user_id=handle,
        exclude_credentials=descriptors(body.username),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    session = new_session(options.challenge, body.username, "registration")
    return {"session": session, "options": json.loads(options_to_json(options))}


@app.post("/registration/verify")
async def registration_verify(body: VerifyIn) -> dict[str, Any]:
    challenge, username = take_session(body.session, "registration")
    try:
        verified = verify_registration_response(
            credential=body.credential,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
        )
    except Exception as exc:
        raise HTTPException(400, f"registration refused: {exc}") from exc
    transports = body.credential.get("response", {}).get("transports", [])
    try:
        db.execute(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?)",
            (
                verified.credential_id,
                username,
                verified.credential_public_key,
                verified.sign_count,
                json.dumps(transports),
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise HTTPException(400, "credential already registered") from exc
    return {"verified": True}


@app.post("/authentication/options")
async def authentication_options(body: OptionsIn) -> dict[str, Any]:
    allow = descriptors(body.username)
    if not allow:
        raise HTTPException(404, "no passkey for this user")
    options = generate_authentication_options(
        rp_id=RP_ID,
        allow_credentials=allow,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    session = new_session(options.challenge, body.username, "authentication")
    return {"session": session, "options": json.loads(options_to_json(options))}


@app.post("/authentication/verify")
async def authentication_verify(body: VerifyIn) -> dict[str, Any]:
    challenge, username = take_session(body.session, "authentication")
    try:
        credential_id = base64url_to_bytes(body.credential["rawId"])
    except (KeyError, ValueError, TypeError) as exc:
        raise HTTPException(400, "rawId missing") from exc
    row = db.execute(
        "SELECT public_key, sign_count FROM credentials WHERE id = ? AND username = ?",
        (credential_id, username),
    ).fetchone()
    if row is None:
        raise HTTPException(400, "unknown credential")
    try:
        verified = verify_authentication_response(
            credential=body.credential,
            expected_challenge=challenge,
            expected_rp_id=RP_ID,
            expected_origin=ORIGIN,
            credential_public_key=row[0],
            credential_current_sign_count=row[1],
        )
    except Exception as exc:
        raise HTTPException(400, f"authentication refused: {exc}") from exc
    db.execute(
        "UPDATE credentials SET sign_count = ? WHERE id = ?",
        (verified.new_sign_count, credential_id),
    )
    return {"verified": True, "username": username}
